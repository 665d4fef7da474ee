// Runs a program with an argument vector (never a shell), bounded by the check's signal: at the
// deadline the program and everything it started in its process group get SIGKILL.
import { spawn } from "node:child_process";
import { CheckFailure, reasonText } from "./types.ts";

export interface ProcResult { code: number | null; signal: string | null; output: string }

const MAX_OUTPUT = 4096;

export function runBounded(file: string, args: string[], signal: AbortSignal, label: string): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CheckFailure(`${label}: ${reasonText(signal)}`));
    // detached: its own process group, so a script's children die with it at the deadline.
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    const take = (b: Buffer) => { if (output.length < MAX_OUTPUT) output += b.toString("utf8").slice(0, MAX_OUTPUT - output.length); };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    let killed = false;
    const onAbort = () => {
      killed = true;
      try { if (child.pid) process.kill(-child.pid, "SIGKILL"); } catch { child.kill("SIGKILL"); }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    child.once("error", (e: NodeJS.ErrnoException) => {
      signal.removeEventListener("abort", onAbort);
      reject(new CheckFailure(e.code === "ENOENT" ? `${label}: ${file} not found` : `${label}: ${e.code ?? e.message}`));
    });
    child.once("close", (code, sig) => {
      signal.removeEventListener("abort", onAbort);
      if (killed) return reject(new CheckFailure(`${label}: killed at the deadline (${reasonText(signal)})`));
      resolve({ code, signal: sig, output: output.trim() });
    });
  });
}
