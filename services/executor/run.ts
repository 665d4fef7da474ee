// Runs one kernel tool. Never through a shell: argv is an array, input goes to stdin.
import { spawn } from "node:child_process";
import { constants } from "node:os";

export interface CmdResult { code: number; stdout: string; stderr: string }
export interface CmdOptions { input?: string; timeoutMs?: number; netns?: string }

const NETNS_RE = /^[A-Za-z0-9_.-]+$/;
/** Output beyond this is dropped: a runaway tool must not exhaust the executor's memory. */
const MAX_OUTPUT = 64 * 1024 * 1024;

export function validateNetns(ns: string): string {
  if (!NETNS_RE.test(ns) || ns === "." || ns === ".." || ns.length > 64) throw new Error(`invalid network namespace name: ${JSON.stringify(ns)}`);
  return ns;
}

/** The argv actually executed: `ip netns exec <ns>` lets tests drive a namespace from the root one. */
export function withNetns(argv: string[], netns?: string): string[] {
  return netns ? ["ip", "netns", "exec", validateNetns(netns), ...argv] : argv;
}

/**
 * Resolves with the exit code: 124 on timeout (like timeout(1)), 127 when the program cannot be
 * started, 128+n when killed by signal n. Rejects only on invalid argv or netns name.
 */
export function runCmd(argv: string[], opts: CmdOptions = {}): Promise<CmdResult> {
  if (argv.length === 0 || argv.some((a) => typeof a !== "string" || a.includes("\0"))) {
    return Promise.reject(new Error("runCmd: argv must be non-empty strings without NUL"));
  }
  let full: string[];
  try { full = withNetns(argv, opts.netns); } catch (e) { return Promise.reject(e); }
  const timeoutMs = opts.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    const child = spawn(full[0], full.slice(1), { stdio: ["pipe", "pipe", "pipe"], shell: false });
    let stdout = "", stderr = "", timedOut = false, done = false;
    const finish = (r: CmdResult) => { if (!done) { done = true; clearTimeout(timer); resolve(r); } };
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (d: string) => { if (stdout.length < MAX_OUTPUT) stdout += d; });
    child.stderr.setEncoding("utf8").on("data", (d: string) => { if (stderr.length < MAX_OUTPUT) stderr += d; });
    child.on("error", (e) => finish({ code: 127, stdout, stderr: stderr + String(e.message) }));
    const onTimeout = () => finish({ code: 124, stdout, stderr: stderr + `\n${full[0]} killed after ${timeoutMs} ms timeout` });
    // After a timeout, "exit" is enough: a surviving grandchild may hold the pipes open forever.
    child.on("exit", () => { if (timedOut) onTimeout(); });
    child.on("close", (code, signal) => {
      if (timedOut) onTimeout();
      else finish({ code: code ?? 128 + (signal ? constants.signals[signal] ?? 0 : 0), stdout, stderr });
    });
    // EPIPE when the tool exits before reading its input shows up as its own exit status.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}
