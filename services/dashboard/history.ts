// The audit history as the dashboard shows it: recent events from the Redis Stream
// lvsflow:<site>:events, kept in memory with the events that arrive live on the bus, and the
// "why" of any event: its causes (causationId, upwards to the root) and its effects (the events
// that name it as their cause, downwards).
import type { Redis } from "ioredis";
import { Event } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { describe } from "../cli/describe.ts";

export interface TimelineItem { id: string; time: string; type: string; source: string; text: string; causationId: string | null; correlationId: string | null }

export const item = (ev: Event): TimelineItem => ({
  id: ev.id, time: ev.time, type: ev.type, source: `${ev.source.service}@${ev.source.node}`, text: describe(ev), causationId: ev.causationId, correlationId: ev.correlationId,
});

function parseEntry(fields: string[]): Event | null {
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] !== "json") continue;
    try { const p = Event.safeParse(JSON.parse(fields[i + 1]!)); return p.success ? p.data : null; } catch { return null; }
  }
  return null;
}

/** Newest first, at most `count`, older than stream id `before` when given. */
export async function readRecent(redis: Redis, site: string, count: number, before?: string): Promise<{ events: Event[]; last: string | null }> {
  const rows = await redis.xrevrange(keys.events(site), before ? `(${before}` : "+", "-", "COUNT", count);
  const events: Event[] = [];
  for (const [, fields] of rows) { const ev = parseEntry(fields); if (ev) events.push(ev); }
  return { events, last: rows.length ? rows.at(-1)![0] : null };
}

/** Events by id and by cause, bounded; the oldest are forgotten first. */
export class EventIndex {
  private byId = new Map<string, Event>();
  private children = new Map<string, Set<string>>();
  constructor(private readonly max = 50_000) {}

  add(ev: Event): boolean {
    if (this.byId.has(ev.id)) return false;
    this.byId.set(ev.id, ev);
    if (ev.causationId) {
      let c = this.children.get(ev.causationId);
      if (!c) this.children.set(ev.causationId, (c = new Set()));
      c.add(ev.id);
    }
    if (this.byId.size > this.max) {
      const old = this.byId.keys().next().value!;
      const o = this.byId.get(old)!;
      this.byId.delete(old);
      if (o.causationId) this.children.get(o.causationId)?.delete(old);
    }
    return true;
  }
  get(id: string): Event | undefined { return this.byId.get(id); }
  effects(id: string): Event[] { return [...(this.children.get(id) ?? [])].map((c) => this.byId.get(c)!).filter(Boolean); }
  get size() { return this.byId.size; }
  /** Every event held, oldest first. */
  all(): Event[] { return [...this.byId.values()].sort((a, b) => a.time.localeCompare(b.time)); }
}

export interface WhyChain { event: TimelineItem | null; causes: TimelineItem[]; effects: (TimelineItem & { depth: number })[]; missing: string | null }

/**
 * The causal chain of one event. Causes walk causationId up to the root (an id not in the history
 * ends it, and is reported); effects walk down breadth-first, bounded in depth and count.
 */
export function whyChain(index: EventIndex, id: string, o: { maxDepth?: number; maxEffects?: number } = {}): WhyChain {
  const ev = index.get(id);
  if (!ev) return { event: null, causes: [], effects: [], missing: id };
  const causes: TimelineItem[] = [];
  const seen = new Set([id]);
  let cur = ev, missing: string | null = null;
  while (cur.causationId && !seen.has(cur.causationId) && causes.length < 50) {
    const up = index.get(cur.causationId);
    if (!up) { missing = cur.causationId; break; }
    seen.add(up.id);
    causes.push(item(up));
    cur = up;
  }
  const effects: (TimelineItem & { depth: number })[] = [];
  let frontier = [ev];
  for (let depth = 1; depth <= (o.maxDepth ?? 4) && frontier.length; depth++) {
    const next: Event[] = [];
    for (const f of frontier) for (const c of index.effects(f.id)) {
      if (seen.has(c.id) || effects.length >= (o.maxEffects ?? 60)) continue;
      seen.add(c.id);
      effects.push({ ...item(c), depth });
      next.push(c);
    }
    frontier = next;
  }
  effects.sort((a, b) => a.depth - b.depth || a.time.localeCompare(b.time));
  return { event: item(ev), causes: causes.reverse(), effects, missing };
}
