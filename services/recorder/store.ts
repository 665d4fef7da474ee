// Writes recorded events to Redis Streams: exactly once per event id (re-sent decisions carry the
// same id) and, when they come from the durable buffer, exactly once per buffer sequence: the
// cursor is advanced in the same script as the append, so a crash between the two cannot happen.
// Stream ids follow the event's own time (never going backwards), so `audit --since` finds an
// event that was written late, after a Redis outage, at the time it happened.
import type { Redis } from "ioredis";
import type { Event } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { indexFields } from "./fields.ts";
import type { Retention, StreamRetention } from "./retention.ts";

/**
 * KEYS: stream, seen-key, cursor. ARGV: seq (0 = no cursor), event time ms, dedup seconds,
 * max entries, then the entry's fields. Returns 0 (sequence already written), 1 (duplicate id), 2 (appended).
 */
const APPEND = `
local seq = tonumber(ARGV[1])
if seq > 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  if seq <= cur then return 0 end
  redis.call('SET', KEYS[3], ARGV[1])
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[3])) then return 1 end
local ms = tonumber(ARGV[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local l = tonumber(string.match(last[1][1], '^(%d+)'))
  if l > ms then ms = l end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], string.format('%.0f', ms) .. '-*', unpack(ARGV, 5))
return 2`;

/** KEYS: cursor. ARGV: seq. Moves the cursor past messages that are not recorded (other types, invalid). */
const SKIP = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`;

export interface Item { seq: number; ev: Event | null }
export interface WriteResult { appended: Event[]; duplicates: number; alreadyWritten: number; skipped: number }

export class AuditStore {
  constructor(private readonly redis: Redis, private readonly site: string, private readonly retention: Retention, private readonly dedupSeconds = 86_400) {}

  streamOf(ev: Event): { key: string; policy: StreamRetention } {
    return ev.type === "controller.inputs" ? { key: keys.inputs(this.site), policy: this.retention.inputs } : { key: keys.events(this.site), policy: this.retention.events };
  }

  /** Writes items in order in one pipeline; throws (writing nothing more) when Redis fails. */
  async write(items: Item[]): Promise<WriteResult> {
    const r: WriteResult = { appended: [], duplicates: 0, alreadyWritten: 0, skipped: 0 };
    if (!items.length) return r;
    const p = this.redis.pipeline();
    const cursor = keys.recorderCursor(this.site);
    for (const { seq, ev } of items) {
      if (!ev) { p.eval(SKIP, 1, cursor, seq); continue; }
      const { key, policy } = this.streamOf(ev);
      const fields = ev.type === "controller.inputs"
        ? ["id", ev.id, "type", ev.type, "time", ev.time, "node", ev.data.node, "boot", ev.data.boot, "seq", String(ev.data.seq), "start", ev.data.start ? "1" : "0", "json", JSON.stringify(ev)]
        : [...indexFields(ev), "json", JSON.stringify(ev)];
      p.eval(APPEND, 3, key, keys.seen(this.site, ev.id), cursor, seq, Date.parse(ev.time), this.dedupSeconds, policy.maxEntries, ...fields);
    }
    const res = await p.exec();
    if (!res) throw new Error("redis pipeline aborted");
    items.forEach(({ ev }, i) => {
      const [err, v] = res[i]!;
      if (err) throw err;
      if (!ev) r.skipped++;
      else if (v === 2) r.appended.push(ev);
      else if (v === 1) r.duplicates++;
      else r.alreadyWritten++;
    });
    return r;
  }

  async cursor(): Promise<number> {
    return Number((await this.redis.get(keys.recorderCursor(this.site))) ?? 0);
  }

  async setCursor(seq: number): Promise<void> {
    await this.redis.set(keys.recorderCursor(this.site), String(seq));
  }

  /** Applies the age and size limits; returns how many entries each stream lost. */
  async trim(now = Date.now()): Promise<{ events: number; inputs: number }> {
    const out = { events: 0, inputs: 0 };
    for (const [name, key, policy] of [["events", keys.events(this.site), this.retention.events], ["inputs", keys.inputs(this.site), this.retention.inputs]] as const) {
      let n = Number(await this.redis.xtrim(key, "MINID", "~", String(Math.max(0, now - policy.maxAgeMs))));
      if (policy.maxBytes > 0) {
        const used = Number((await this.redis.call("MEMORY", "USAGE", key, "SAMPLES", "100")) ?? 0);
        if (used > policy.maxBytes) {
          const len = await this.redis.xlen(key);
          const keep = Math.floor((len * policy.maxBytes) / used * 0.95);
          n += Number(await this.redis.xtrim(key, "MAXLEN", "~", String(keep)));
        }
      }
      out[name] = n;
    }
    return out;
  }
}
