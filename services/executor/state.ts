// The executor's small local memory: which terms it holds groups under. Kept on disk so a
// restarted executor reports the right term for addresses still in the kernel (fail static).
import { readFileSync, writeFileSync, renameSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

export interface ExecutorState { terms: Record<string, number>; appliedGeneration: number }

export function loadState(path: string): ExecutorState {
  try {
    const s = JSON.parse(readFileSync(path, "utf8")) as ExecutorState;
    return { terms: s.terms ?? {}, appliedGeneration: s.appliedGeneration ?? 0 };
  } catch {
    return { terms: {}, appliedGeneration: 0 };
  }
}

export function saveState(path: string, s: ExecutorState): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path + ".tmp", JSON.stringify(s));
  renameSync(path + ".tmp", path); // atomic: a crash never leaves half a file
}
