// Configuration versions in Redis. Every accepted configuration is kept as a version: its
// content hash, every source text (includes too), the files as given, who stored it and when.
//
//   lvsflow:<site>:config:<version>   JSON of StoredVersion, written once (SET NX)
//   lvsflow:<site>:config:versions    Stream, one entry per acceptance: version, at, by, trigger, files
//
// A version is appended to the history only when it differs from the newest entry, in one Lua
// script, so the three services of a node that all reload the same file record it once.
// Services start from the newest entry when they are given no file.
import type { Redis } from "ioredis";
import { keys } from "../redis.ts";
import { loadConfigSources, type ConfigFormat, type LoadedConfig, type LoadOptions } from "./load.ts";

export interface StoredVersion {
  version: string;
  /** The top-level files as given (the order matters: it is the load order). */
  files: string[];
  /** Every source read, includes too, by resolved path. */
  sources: { path: string; text: string }[];
  format: ConfigFormat | null;
  strict: boolean;
}
export interface VersionEntry {
  /** Stream entry id (ms-seq): the order of acceptances. */
  id: string;
  version: string;
  at: string;
  by: string;
  trigger: string;
  files: string[];
}
export interface StoreMeta { files: string[]; by: string; trigger: string; format?: ConfigFormat | null; strict?: boolean; now?: Date }

/** Appends `version` unless it already is the newest entry; writes its blob once. Returns 1 if appended. */
const STORE = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local f = last[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'version' and f[i + 1] == ARGV[1] then return 0 end
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'version', ARGV[1], 'at', ARGV[3], 'by', ARGV[4], 'trigger', ARGV[5], 'files', ARGV[6])
return 1
`;

export class VersionStore {
  constructor(private readonly redis: Redis, readonly site: string) {}

  async store(loaded: LoadedConfig, meta: StoreMeta): Promise<boolean> {
    const blob: StoredVersion = { version: loaded.version, files: meta.files, sources: loaded.sources, format: meta.format ?? null, strict: meta.strict ?? false };
    const r = await this.redis.eval(STORE, 2, keys.configVersions(this.site), keys.configBlob(this.site, loaded.version),
      loaded.version, JSON.stringify(blob), (meta.now ?? new Date()).toISOString(), meta.by, meta.trigger, JSON.stringify(meta.files));
    return r === 1;
  }

  /** Newest first. */
  async history(limit = 50): Promise<VersionEntry[]> {
    const rows = await this.redis.xrevrange(keys.configVersions(this.site), "+", "-", "COUNT", limit);
    return rows.map(([id, f]) => {
      const m: Record<string, string> = {};
      for (let i = 0; i < f.length; i += 2) m[f[i]!] = f[i + 1]!;
      let files: string[] = [];
      try { files = JSON.parse(m.files ?? "[]") as string[]; } catch { /* an entry written by hand */ }
      return { id, version: m.version ?? "", at: m.at ?? "", by: m.by ?? "", trigger: m.trigger ?? "", files };
    });
  }

  async newest(): Promise<VersionEntry | null> {
    return (await this.history(1))[0] ?? null;
  }

  /** A version given as its hash, a unique prefix of it (≥ 4 digits), `latest`, or `latest~N`. */
  async resolve(ref: string): Promise<string | null> {
    const rel = /^(?:latest|HEAD)(?:~(\d+))?$/.exec(ref);
    if (rel) {
      const n = Number(rel[1] ?? 0);
      const h = await this.history(n + 1);
      return h[n]?.version ?? null;
    }
    if (!/^[0-9a-f]{4,16}$/.test(ref)) return null;
    if (ref.length === 16) return (await this.redis.exists(keys.configBlob(this.site, ref))) ? ref : null;
    const matches = new Set((await this.history(10_000)).map((e) => e.version).filter((v) => v.startsWith(ref)));
    if (matches.size > 1) throw new Error(`version prefix ${ref} is ambiguous: ${[...matches].join(", ")}`);
    return [...matches][0] ?? null;
  }

  async get(version: string): Promise<StoredVersion | null> {
    const raw = await this.redis.get(keys.configBlob(this.site, version));
    if (!raw) return null;
    return JSON.parse(raw) as StoredVersion;
  }
}

/** Loads a stored version exactly as it was accepted: includes are read from the stored sources, not the disk. */
export function loadStored(v: StoredVersion, opts: Pick<LoadOptions, "supports"> = {}): LoadedConfig {
  const byPath = new Map(v.sources.map((s) => [s.path, s.text]));
  const readFile = (p: string) => {
    const t = byPath.get(p);
    if (t === undefined) throw Object.assign(new Error(`not in stored version ${v.version}`), { code: "ENOENT" });
    return t;
  };
  const top = v.files.map((f) => ({ path: f, text: readFile(f) }));
  return loadConfigSources(top, { strict: v.strict, format: v.format ?? undefined, readFile, supports: opts.supports });
}

/** Sites that have stored versions (for services started with neither --config nor --site). */
export async function sitesWithVersions(redis: Redis): Promise<string[]> {
  const sites = new Set<string>();
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", "lvsflow:*:config:versions", "COUNT", 1000);
    cursor = next;
    for (const k of found) sites.add(k.split(":")[1]!);
  } while (cursor !== "0");
  return [...sites].sort();
}
