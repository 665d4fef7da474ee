// `lvsflow audit`: the recorded history, in order, filtered by virtual service, real, node, event
// type, incident and time; a table for people, NDJSON for tools (`--json`, `audit export`).
import { createWriteStream } from "node:fs";
import { Redis } from "ioredis";
import { Event } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { redisAuthFromEnv } from "../../shared/secrets.ts";
import { parseCommon } from "./options.ts";
import { describe } from "./describe.ts";

/** "2026-11-25T14:31:00Z", "14:31" (today, local), "now", or relative "10m", "2h", "30s" ago. */
export function parseTime(s: string, now = Date.now()): number {
  if (s === "now") return now;
  const rel = /^(\d+)(ms|s|m|h|d)$/.exec(s);
  if (rel) return now - Number(rel[1]) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as "s"];
  const hm = /^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(s);
  if (hm) { const d = new Date(now); d.setHours(+hm[1]!, +hm[2]!, +(hm[3] ?? 0), +(hm[4] ?? "0").padEnd(3, "0")); return d.getTime(); }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`cannot read time "${s}" (use ISO 8601, HH:MM[:SS], now, or 10m/2h ago)`);
  return t;
}

export interface AuditFilter {
  since?: number;
  until?: number;
  /** Virtual service id or a part of it ("198.51.100.50:80"); also matches groups holding that address. */
  vip?: string;
  real?: string;
  node?: string;
  /** Event types or prefixes, comma-separated ("decision", "health.result,executor.applied"). */
  type?: string;
  /** Events of one incident (correlation id), or the event with that id. */
  correlation?: string;
  /** With vip/real: also the events caused by the ones that match (the kernel changes of a decision). */
  followCauses?: boolean;
}

/** Stream ids follow event time but never go back: an event may sit up to this much after its time. */
const ID_SLACK_MS = 60_000;

export function redisFor(url: string): Redis {
  const auth = redisAuthFromEnv();
  const r = url.startsWith("unix://") ? new Redis({ path: url.slice(7), lazyConnect: true, maxRetriesPerRequest: 1, ...auth }) : new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, ...auth });
  r.on("error", () => undefined); // reported by the command that fails
  return r;
}

/** Connects, or fails with a message that names the Redis URL. */
export async function connectRedis(redis: Redis, url: string): Promise<void> {
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${url.replace(/\/\/[^@/]*@/, "//…@")}: ${e instanceof Error ? e.message : String(e)} (--redis URL or LVSFLOW_REDIS)`);
  }
}

function matches(m: Record<string, string>, f: AuditFilter, types: string[] | null): boolean {
  if (f.vip && !(m.vs ?? "").includes(f.vip) && !(m.group ?? "") .includes(f.vip) && !(m.addr ?? "").split(",").some((a) => f.vip === a || f.vip!.startsWith(a + ":"))) return false;
  if (f.real && !(m.real ?? "").split(",").some((r) => r === f.real || r.startsWith(f.real + ":") || r.includes(f.real!))) return false;
  if (f.node && m.node !== f.node) return false;
  if (types && !types.some((t) => m.type?.startsWith(t))) return false;
  if (f.correlation && m.corr !== f.correlation && m.id !== f.correlation && m.cause !== f.correlation) return false;
  return true;
}

/** Reads the history in order, page by page; `onEvent` returning false stops early. */
export async function scanHistory(redis: Redis, site: string, f: AuditFilter, onEvent: (ev: Event) => boolean | void, key = keys.events(site)): Promise<number> {
  const end = f.until !== undefined ? String(f.until + ID_SLACK_MS) : "+";
  let cursor = f.since !== undefined ? String(f.since) : "-";
  const types = f.type ? f.type.split(",").map((t) => t.trim()).filter(Boolean) : null;
  const follow = f.followCauses && (f.vip || f.real) ? new Set<string>() : null;
  let n = 0;
  for (;;) {
    const rows = await redis.xrange(key, cursor, end, "COUNT", 1000);
    for (const [, fields] of rows) {
      const m: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) m[fields[i]!] = fields[i + 1]!;
      const t = Date.parse(m.time ?? "");
      if (f.since !== undefined && t < f.since) continue;
      if (f.until !== undefined && t > f.until) continue;
      const direct = matches(m, f, types);
      const caused = !direct && follow !== null && m.cause !== undefined && follow.has(m.cause) && matches(m, { ...f, vip: undefined, real: undefined }, types);
      if (!direct && !caused) continue;
      const p = Event.safeParse(JSON.parse(m.json ?? "null"));
      if (!p.success) continue;
      follow?.add(p.data.id);
      n++;
      if (onEvent(p.data) === false) return n;
    }
    if (rows.length < 1000) break;
    cursor = "(" + rows.at(-1)![0];
  }
  return n;
}

export async function readHistory(redis: Redis, site: string, f: AuditFilter, limit = 100_000): Promise<Event[]> {
  const out: Event[] = [];
  await scanHistory(redis, site, f, (ev) => { out.push(ev); return out.length < limit; });
  return out;
}

export function tableLine(ev: Event): string {
  return `${ev.time}  ${ev.type.padEnd(16)} ${`${ev.source.service}@${ev.source.node}`.padEnd(20)} ${describe(ev)}`;
}

const USAGE = `usage: lvsflow audit [filters] [--json]           the history as a table, or NDJSON with --json
       lvsflow audit export [filters] [--out FILE]  NDJSON (one event per line) for other tools
filters:
  --since T --until T     time range: ISO 8601, HH:MM[:SS] (today), now, or 10m / 2h / 1d ago
  --vs V  (--vip V)       virtual service or VIP ("tcp:198.51.100.50:80" exactly; "198.51.100.50:80" or
                          "198.51.100.50" also with the ownership of the group holding that address)
  --real R                real server ("203.0.113.11:80" or "203.0.113.11")
  --node N                LB node (or prober / service instance)
  --type T[,T]            event types or prefixes: health, decision, decision.pool, executor.applied, config…
  --correlation ID        every event of one incident
  --limit N               at most N events (default 100000)
  --site S --redis URL    (or LVSFLOW_SITE / LVSFLOW_REDIS)
With --vs or --real the kernel changes their decisions caused are listed too.`;

export async function auditCommand(args: string[]): Promise<number> {
  const exporting = args[0] === "export";
  const { opts, values } = parseCommon(exporting ? args.slice(1) : args, {
    since: { type: "string" }, until: { type: "string" }, vip: { type: "string" }, vs: { type: "string" }, real: { type: "string" }, type: { type: "string" },
    correlation: { type: "string" }, limit: { type: "string" }, out: { type: "string" }, ndjson: { type: "boolean" },
  });
  if (values.help) { process.stdout.write(USAGE + "\n"); return 0; }
  const site = opts.site ?? "default";
  const redis = redisFor(opts.redis);
  try {
    const f: AuditFilter = {
      since: values.since ? parseTime(String(values.since)) : undefined, until: values.until ? parseTime(String(values.until)) : undefined,
      vip: (values.vs ?? values.vip) as string | undefined, real: values.real as string | undefined, node: values.node as string | undefined,
      type: values.type as string | undefined, correlation: values.correlation as string | undefined, followCauses: true,
    };
    const limit = values.limit ? Number(values.limit) : 100_000;
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`--limit must be a positive whole number, not "${values.limit}"`);
    await connectRedis(redis, opts.redis);
    const json = exporting || values.json || values.ndjson;
    const out = exporting && values.out ? createWriteStream(String(values.out)) : process.stdout;
    let n = 0;
    await scanHistory(redis, site, f, (ev) => {
      out.write(json ? JSON.stringify(ev) + "\n" : tableLine(ev) + "\n");
      return ++n < limit;
    });
    if (out !== process.stdout) await new Promise<void>((r) => (out as ReturnType<typeof createWriteStream>).end(r));
    if (!json || exporting) process.stderr.write(`${n} event(s) from ${keys.events(site)}${exporting && values.out ? ` written to ${values.out}` : ""}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`lvsflow audit: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}
