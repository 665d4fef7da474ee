// checktype connect: the real accepts a TCP connection within the connect timeout.
import { openSocket } from "./session.ts";
import { pass, type ProbeContext, type ProtoResult } from "./types.ts";

export async function connectCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const sock = await openSocket({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, signal: ctx.signal, label: "connect" });
  // RST instead of FIN: no TIME_WAIT left behind for every check (thousands per second at scale).
  sock.resetAndDestroy();
  return pass();
}
