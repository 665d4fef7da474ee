// Where the IPVS driver runs its tools: this machine (optionally inside a network namespace), or
// anything else that can run an argument vector — the kernel test's VM agent implements it too.
import { readFile, writeFile } from "node:fs/promises";
import { runCmd, type CmdResult } from "../run.ts";

export interface IpvsHost {
  readonly label: string;
  run(argv: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CmdResult>;
  /** null when the file does not exist. */
  readFile(path: string): Promise<string | null>;
  writeFile(path: string, value: string): Promise<void>;
}

/** Paths this host may read or write: /proc only, no traversal. */
export function checkProcPath(path: string): string {
  if (!/^\/proc\/[A-Za-z0-9_./-]+$/.test(path) || path.includes("..")) throw new Error(`refused path ${JSON.stringify(path)}`);
  return path;
}

/** Reading and writing through cat/tee keeps files inside a namespace (netns-scoped /proc/sys/net). */
export function hostFromRunner(label: string, run: IpvsHost["run"]): IpvsHost {
  return {
    label,
    run,
    async readFile(path) {
      const r = await run(["cat", checkProcPath(path)]);
      if (r.code === 0) return r.stdout;
      if (/No such file/.test(r.stderr)) return null;
      throw new Error(`cat ${path} failed (${r.code}): ${r.stderr.trim()}`);
    },
    async writeFile(path, value) {
      const r = await run(["tee", checkProcPath(path)], { input: value });
      if (r.code !== 0) throw new Error(`writing ${path} failed (${r.code}): ${r.stderr.trim()}`);
    },
  };
}

export function localHost(netns?: string): IpvsHost {
  const run: IpvsHost["run"] = (argv, opts = {}) => runCmd(argv, { netns, input: opts.input, timeoutMs: opts.timeoutMs ?? 10_000 });
  if (netns) return hostFromRunner(`netns ${netns}`, run);
  return {
    label: "local",
    run,
    async readFile(path) {
      try { return await readFile(checkProcPath(path), "utf8"); } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw e;
      }
    },
    writeFile: (path, value) => writeFile(checkProcPath(path), value),
  };
}
