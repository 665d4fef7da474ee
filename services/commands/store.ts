// The controller's copy of the operator overrides on its own disk, so they survive a restart of
// the controller (and of every node at once) without Redis or any peer. Written atomically.
import { readFileSync, writeFileSync, renameSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import { OverrideEntry } from "../../shared/schemas/events.ts";
import type { OverrideMap } from "./overrides.ts";

const File = z.object({ version: z.literal(1), entries: z.array(OverrideEntry) });

export const overridesPath = (stateDir: string, node: string) => join(stateDir, `overrides-${node}.json`);

/** Reads the file; a missing file is an empty map, an unreadable one an error the caller logs. */
export function loadOverrides(path: string): { map: OverrideMap; error: string | null } {
  let text: string;
  try { text = readFileSync(path, "utf8"); } catch { return { map: new Map(), error: null }; }
  try {
    const f = File.parse(JSON.parse(text));
    return { map: new Map(f.entries.map((e) => [e.key, e])), error: null };
  } catch (e) {
    return { map: new Map(), error: `${path}: ${e instanceof Error ? e.message.slice(0, 300) : String(e)}` };
  }
}

export function saveOverrides(path: string, map: OverrideMap): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path + ".tmp", JSON.stringify({ version: 1, entries: [...map.values()] }));
  renameSync(path + ".tmp", path);
}
