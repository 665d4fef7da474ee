// One UDP request/response exchange with the real, bounded by the check's signal. Only datagrams
// from the real's own address and port are considered; `accept` picks the reply to this request.
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { CheckFailure, reasonText } from "./types.ts";

export function udpRequest(host: string, port: number, payload: Buffer, signal: AbortSignal, label: string,
  accept: (msg: Buffer) => boolean = () => true, onLocal?: (address: string, port: number) => Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
    let done = false;
    const stop = (err: Error | null, msg?: Buffer) => {
      if (done) return;
      done = true;
      signal.removeEventListener("abort", onAbort);
      try { sock.close(); } catch { /* already closed */ }
      if (err) reject(err); else resolve(msg!);
    };
    const at = `${label} ${host}:${port}/udp`;
    const onAbort = () => stop(new CheckFailure(`${at}: ${reasonText(signal)}`));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    // ICMP port unreachable shows up as ECONNREFUSED on a connected socket: a clear "down".
    sock.on("error", (e: NodeJS.ErrnoException) => stop(new CheckFailure(`${at}: ${e.code ?? e.message}`)));
    sock.on("message", (msg) => { if (accept(msg)) stop(null, msg); });
    sock.connect(port, host, () => {
      const local = sock.address();
      sock.send(onLocal ? onLocal(local.address, local.port) : payload);
    });
  });
}
