// checktype external (ldirectord: checkcommand run with `vip-or-fwmark vport rip rport`, exit 0 =
// up, killed at checktimeout). The command line is split into words (white space, quotes and
// backslashes, nothing else) and run without a shell: no text from the configuration is ever
// interpreted by one.
import { runBounded } from "./process.ts";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

/**
 * Splits a command line into words the way a shell would for plain words and quotes ('…', "…",
 * backslash escapes) — and nothing else: no variables, globs, pipes or command substitution.
 */
export function splitWords(command: string): string[] {
  const words: string[] = [];
  let cur = "", inWord = false, quote: "'" | '"' | null = null;
  for (let i = 0; i < command.length; i++) {
    const ch = command[i];
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === "\\" && quote === '"' && (command[i + 1] === '"' || command[i + 1] === "\\")) cur += command[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') { quote = ch; inWord = true; }
    else if (ch === "\\" && i + 1 < command.length) { cur += command[++i]; inWord = true; }
    else if (/\s/.test(ch)) { if (inWord) words.push(cur); cur = ""; inWord = false; }
    else { cur += ch; inWord = true; }
  }
  if (quote) throw new CheckFailure("checkcommand has an unterminated quote");
  if (inWord) words.push(cur);
  return words;
}

export function externalArgv(command: string, ctx: Pick<ProbeContext, "target">): { file: string; args: string[] } {
  const words = splitWords(command);
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
