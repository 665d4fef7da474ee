// checktype connect: the real accepts a TCP connection within the connect timeout. This is the
// check that runs by the ten thousand per second, so it has its own lean path: one timer, no
// AbortSignal listener (the caller's deadline and stop are covered by that timer), no Error stacks.
import { connect as tcpConnect, type Socket } from "node:net";
import { where } from "./session.ts";

/** Connects and resets; resolves with null when the real accepted, else with the error text. */
export function connectOnce(host: string, port: number, timeoutMs: number, connectTimeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const limit = Math.min(timeoutMs, connectTimeoutMs);
    let sock: Socket | null = null;
    let done = false;
    const finish = (err: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // RST instead of FIN: no TIME_WAIT left behind for every check.
      if (err === null) sock!.resetAndDestroy();
      else sock?.destroy();
      resolve(err);
    };
    const timer = setTimeout(() => finish(`connect ${where(host, port)}: ${limit < timeoutMs ? "connect timeout" : "timeout"} after ${limit / 1000}s`), limit);
    sock = tcpConnect({ host, port });
    sock.once("connect", () => finish(null));
    // `on`, not `once`: a late second error on a destroyed socket must not become an uncaught one.
    sock.on("error", (e: NodeJS.ErrnoException) => finish(`connect ${where(host, port)}: ${e.code ?? e.message}`));
  });
}
