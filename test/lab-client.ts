// Runs the lab's bounded probe client inside a namespace and collects its results.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { nsExec, listNamespaces } from "../services/lab/topology.ts";

const CLIENT = fileURLToPath(new URL("../services/lab/probe-client.ts", import.meta.url));
export interface ProbeResult { t: number; ms: number; ok: boolean; rs?: string; err?: string }

export function runProbeLoop(ns: string, url: string, o: { intervalMs: number; timeoutMs: number; count: number; durationMs: number }): Promise<ProbeResult[]> {
  return new Promise((resolve, reject) => {
    const argv = nsExec(ns, [process.execPath, "--import", "tsx", CLIENT, url, String(o.intervalMs), String(o.timeoutMs), String(o.count), String(o.durationMs)]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const kill = setTimeout(() => child.kill("SIGKILL"), o.durationMs + 15_000);
    child.on("error", reject);
    child.on("exit", () => {
      clearTimeout(kill);
      resolve(out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as ProbeResult).sort((a, b) => a.t - b.t));
    });
  });
}

/** Client-visible gap: the largest interval between the starts of two successful probes, less one interval. */
export function largestGap(rs: ProbeResult[], intervalMs: number): number {
  const ok = rs.filter((r) => r.ok).map((r) => r.t);
  let gap = 0;
  for (let i = 1; i < ok.length; i++) gap = Math.max(gap, ok[i]! - ok[i - 1]! - intervalMs);
  return gap;
}

/**
 * A lab test's after(): tears the lab down, removes its directory (kept, and named, with
 * LVSFLOW_KEEP_TEST_DIR=1 for a look at the logs) and fails if a namespace of its prefix is left.
 */
export async function tearDownLab(down: () => Promise<void>, prefix: string, dir: string): Promise<void> {
  await down();
  const left = (await listNamespaces()).filter((n) => n.startsWith(prefix));
  if (process.env.LVSFLOW_KEEP_TEST_DIR) console.log(`# kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(left, [], "every namespace removed");
}

