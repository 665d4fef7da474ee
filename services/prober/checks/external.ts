// checktype external (ldirectord: checkcommand run with `vip-or-fwmark vport rip rport`, exit 0 =
// up, killed at checktimeout). The command line is split on white space into a program and its
// first arguments and run without a shell, so no text from the configuration is ever shell-parsed.
import { runBounded } from "./process.ts";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

export function externalArgv(command: string, ctx: Pick<ProbeContext, "target">): { file: string; args: string[] } {
  const words = command.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) throw new CheckFailure("external check without a checkcommand");
  const { vs, real } = ctx.target;
  const vip = vs.protocol === "fwm" ? String(vs.fwmark) : String(vs.address);
  return { file: words[0], args: [...words.slice(1), vip, String(vs.port), real.address, String(real.port)] };
}

export async function externalCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const { file, args } = externalArgv(ctx.check.command ?? "/bin/true", ctx);
  const r = await runBounded(file, args, ctx.signal, "checkcommand");
  const tail = r.output ? `: ${r.output.split("\n").at(-1)!.slice(0, 160)}` : "";
  if (r.code === 0) return pass({ matched: r.output ? r.output.slice(0, 200) : null });
  return fail(`checkcommand ${file} ${r.code !== null ? `exited ${r.code}` : `killed by ${r.signal}`}${tail}`);
}
