// `lvsflow audit`: the recorded history, in order, filtered.
import { Redis } from "ioredis";
import { Event } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { redisAuthFromEnv } from "../../shared/secrets.ts";
import { parseCommon } from "./options.ts";
import { describe } from "./describe.ts";

/** "2026-11-25T14:31:00Z", "14:31" (today, local), or relative "10m", "2h", "30s". */
export function parseTime(s: string, now = Date.now()): number {
  const rel = /^(\d+)(s|m|h|d)$/.exec(s);
  if (rel) return now - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as "s" | "m" | "h" | "d"];
  const hm = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(s);
  if (hm) { const d = new Date(now); d.setHours(+hm[1]!, +hm[2]!, +(hm[3] ?? 0), 0); return d.getTime(); }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`cannot read time "${s}" (use ISO 8601, HH:MM or 10m/2h)`);
  return t;
}

export interface AuditFilter { since?: number; until?: number; vip?: string; real?: string; node?: string; type?: string }

export async function readHistory(redis: Redis, site: string, f: AuditFilter, limit = 100_000): Promise<Event[]> {
  const start = f.since ? String(f.since) : "-";
  const end = f.until ? String(f.until) : "+";
  const out: Event[] = [];
  let cursor = start;
  for (;;) {
    const rows = await redis.xrange(keys.events(site), cursor, end, "COUNT", 1000);
    for (const [id, fields] of rows) {
      const m: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) m[fields[i]!] = fields[i + 1]!;
      if (f.vip && !(m.vs ?? "").includes(f.vip) && !(m.group ?? "").includes(f.vip)) continue;
      if (f.real && !(m.real ?? "").includes(f.real)) continue;
      if (f.node && m.node !== f.node) continue;
      if (f.type && !m.type?.startsWith(f.type)) continue;
      const p = Event.safeParse(JSON.parse(m.json ?? "null"));
      if (p.success) out.push(p.data);
      cursor = "(" + id;
    }
    if (rows.length < 1000 || out.length >= limit) break;
    cursor = "(" + rows.at(-1)![0];
  }
  return out;
}

export async function auditCommand(args: string[]): Promise<number> {
  const { opts, values } = parseCommon(args, { since: { type: "string" }, until: { type: "string" }, vip: { type: "string" }, real: { type: "string" }, type: { type: "string" } });
  if (values.help) { process.stdout.write("usage: lvsflow audit [--since T] [--until T] [--vip V] [--real R] [--node N] [--type T] [--json]\n"); return 0; }
  const site = opts.site ?? "default";
  const auth = redisAuthFromEnv(); // LVSFLOW_REDIS_USER / LVSFLOW_REDIS_PASS_FILE: the read-only cli user
  const redis = opts.redis.startsWith("unix://") ? new Redis({ path: opts.redis.slice(7), lazyConnect: true, ...auth }) : new Redis(opts.redis, { lazyConnect: true, ...auth });
  try {
    await redis.connect();
    const evs = await readHistory(redis, site, {
      since: values.since ? parseTime(String(values.since)) : undefined, until: values.until ? parseTime(String(values.until)) : undefined,
      vip: values.vip as string | undefined, real: values.real as string | undefined, node: (values.node as string | undefined), type: values.type as string | undefined,
    });
    for (const ev of evs) {
      process.stdout.write(values.json ? JSON.stringify(ev) + "\n" : `${ev.time}  ${ev.type.padEnd(16)} ${ev.source.service}@${ev.source.node}  ${describe(ev)}\n`);
    }
    if (!values.json) process.stderr.write(`${evs.length} event(s) in lvsflow:${site}:events\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`lvsflow audit: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}
