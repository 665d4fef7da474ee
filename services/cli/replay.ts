// `lvsflow replay --from T --to T`: feeds the controllers' recorded inputs (health results and
// summaries, heartbeats, voter views, bus state, configuration changes, operator commands — every
// event their machines consumed, with the time they used) to fresh machines of this code, and
// compares their decisions with the recorded ones: identical, or the first difference.
import type { Redis } from "ioredis";
import type { Event, EventOf } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { parseCommon } from "./options.ts";
import { connectRedis, parseTime, readHistory, redisFor } from "./audit.ts";
import { replay, type RecordedBatch, type ReplayReport } from "../controller/replayer.ts";
import { parseDuration } from "../recorder/retention.ts";

/** Journal batches recorded between two times (stream ids follow the batch's last input time). */
export async function readJournal(redis: Redis, site: string, from: number, to: number, node?: string): Promise<RecordedBatch[]> {
  const out: RecordedBatch[] = [];
  let cursor = String(Math.max(0, from));
  for (;;) {
    const rows = await redis.xrange(keys.inputs(site), cursor, String(to), "COUNT", 500);
    for (const [, fields] of rows) {
      const i = fields.indexOf("json");
      if (i < 0) continue;
      const ev = JSON.parse(fields[i + 1]!) as EventOf<"controller.inputs">;
      if (node && ev.data.node !== node) continue;
      out.push({ node: ev.data.node, boot: ev.data.boot, seq: ev.data.seq, start: ev.data.start, from: ev.data.from, to: ev.data.to, entries: ev.data.entries });
    }
    if (rows.length < 500) break;
    cursor = "(" + rows.at(-1)![0];
  }
  return out;
}

/** Reads what replay needs and runs it. `lookbackMs`: how far before --from to look for a starting point. */
export async function replayRange(redis: Redis, site: string, from: number, to: number, opts: { node?: string; lookbackMs?: number } = {}): Promise<ReplayReport> {
  const lookback = opts.lookbackMs ?? 180_000;
  const batches = await readJournal(redis, site, from - lookback, to + 60_000, opts.node);
  const decisions = new Map<string, Event>();
  for (const ev of await readHistory(redis, site, { since: from - lookback, until: to + 60_000, type: "decision.pool,decision.owner", node: opts.node })) decisions.set(ev.id, ev);
  return replay(batches, decisions, from, to);
}

export function renderReplay(r: ReplayReport): string {
  const lines = [`replay ${new Date(r.from).toISOString()} → ${new Date(r.to).toISOString()}`];
  for (const n of r.nodes) {
    lines.push(`  ${n.node}: ${n.inputs} input(s) replayed from ${n.startedAt !== null ? new Date(n.startedAt).toISOString() : "-"} (${n.boots} controller run(s)); ${n.identical}/${n.compared} decision(s) identical`);
  }
  if (!r.nodes.length) lines.push("  no input journal in this range");
  const pct = r.compared ? ((100 * r.identical) / r.compared).toFixed(1) : "-";
  lines.push(r.ok ? `IDENTICAL: ${r.identical}/${r.compared} decisions reproduced (100 %)` : `${r.differences.length ? "DIFFERENT" : "INCOMPLETE"}: ${r.identical}/${r.compared} decisions reproduced (${pct} %)`);
  const d = r.differences[0];
  if (d) {
    lines.push(`first difference: ${d.node} ${d.machine} at ${new Date(d.t).toISOString()} after input ${d.input}`);
    lines.push(`  ${d.what}${d.field ? ` in ${d.field}` : ""}${d.decisionId ? ` (recorded decision ${d.decisionId})` : ""}`);
    lines.push(`  recorded: ${JSON.stringify(d.recorded)}`);
    lines.push(`  replayed: ${JSON.stringify(d.replayed)}`);
    if (r.differences.length > 1) lines.push(`  (${r.differences.length - 1} more difference(s) after it; --json lists up to 20)`);
  }
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p}`);
  if (r.problems.length > 20) lines.push(`(${r.problems.length - 20} more problems)`);
  return lines.join("\n") + "\n";
}

export async function replayCommand(args: string[]): Promise<number> {
  const { opts, values } = parseCommon(args, { from: { type: "string" }, to: { type: "string" }, lookback: { type: "string" } });
  if (values.help || !values.from) {
    process.stdout.write(`usage: lvsflow replay --from T [--to T] [--node N] [--lookback 3m] [--json] [--site S] [--redis URL]
  Replays the controllers' recorded inputs on fresh machines of this code and compares every decision
  of [from, to] with the recorded one. Replay begins at the controller's last checkpoint (every minute)
  or start before --from. Exit 0: identical; 1: a difference or missing inputs.\n`);
    return values.help ? 0 : 2;
  }
  const site = opts.site ?? "default";
  const redis = redisFor(opts.redis);
  try {
    const from = parseTime(String(values.from));
    const to = values.to ? parseTime(String(values.to)) : Date.now();
    if (to < from) throw new Error("--to is before --from");
    await connectRedis(redis, opts.redis);
    const r = await replayRange(redis, site, from, to, { node: values.node as string | undefined, lookbackMs: values.lookback ? parseDuration(String(values.lookback)) : undefined });
    process.stdout.write(values.json ? JSON.stringify(r, null, 2) + "\n" : renderReplay(r));
    return r.ok ? 0 : 1;
  } catch (e) {
    process.stderr.write(`lvsflow replay: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}
