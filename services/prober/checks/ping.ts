// checktype ping, and connect on a udp virtual service (ldirectord pings then): one ICMP echo
// with Debian's ping (iputils-ping), run with an argument vector; killed at the check's deadline.
import { isIP } from "node:net";
import { runBounded } from "./process.ts";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

export function pingArgs(host: string, timeoutMs: number): string[] {
  const fam = isIP(host);
  if (fam === 0) throw new CheckFailure(`ping needs an IP address, not ${JSON.stringify(host)}`);
  // -W: seconds to wait for the reply (fractions allowed); -n: no reverse DNS; -q: summary only.
  const secs = Math.max(0.1, timeoutMs / 1000).toFixed(1);
  return [fam === 6 ? "-6" : "-4", "-n", "-q", "-c", "1", "-W", secs, host];
}

export async function pingCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const r = await runBounded("ping", pingArgs(ctx.host, ctx.timeoutMs), ctx.signal, "ping");
  if (r.code === 0) return pass();
  const line = r.output.split("\n").find((l) => /packet loss|unreachable|error|not permitted|unknown/i.test(l)) ?? r.output.split("\n").at(-1) ?? "";
  return fail(`ping ${ctx.host}: ${r.code === 1 ? "no reply" : `exit ${r.code ?? r.signal}`}${line ? ` (${line.trim().slice(0, 120)})` : ""}`);
}
