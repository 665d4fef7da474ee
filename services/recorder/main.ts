// The recorder: appends every audited event on the bus to a Redis Stream, exactly once per
// event id (re-sent decisions carry the same id), in arrival order.
import client from "prom-client";
import type { Redis } from "ioredis";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import type { Event } from "../../shared/schemas/events.ts";
import { subjects, AUDITED } from "../../shared/subjects.ts";
import { createRedis, keys } from "../../shared/redis.ts";
import { registry } from "../../shared/metrics.ts";
import { indexFields } from "./fields.ts";

const recorded = new client.Counter({ name: "lvsflow_recorder_events_total", help: "Events written to the audit stream", labelNames: ["type"], registers: [registry] });
const dropped = new client.Counter({ name: "lvsflow_recorder_events_dropped_total", help: "Events that could not be written (Redis unreachable and buffer full)", registers: [registry] });
const buffered = new client.Gauge({ name: "lvsflow_recorder_buffered", help: "Events waiting for Redis", registers: [registry] });

/** Append unless this id was seen: SET NX on a per-id key makes the write idempotent. */
const APPEND = `
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false`;

export interface RecorderOptions { retentionCount?: number; dedupSeconds?: number; bufferMax?: number }

export async function startRecorder(ctx: ServiceContext, opts: RecorderOptions = {}): Promise<RunningService> {
  const { site, bus, log } = ctx;
  const redis: Redis = createRedis(ctx.redisUrl, log, "lvsflow-recorder");
  const retention = opts.retentionCount ?? 1_000_000;
  const dedup = opts.dedupSeconds ?? 86_400;
  const bufferMax = opts.bufferMax ?? 100_000;
  const queue: Event[] = [];
  let flushing = false;

  const flush = async () => {
    if (flushing) return;
    flushing = true;
    try {
      while (queue.length && redis.status === "ready") {
        const batch = queue.slice(0, 200);
        const p = redis.pipeline();
        for (const ev of batch) {
          const fields = [...indexFields(ev), "json", JSON.stringify(ev)];
          p.eval(APPEND, 2, keys.events(site), keys.seen(site, ev.id), dedup, retention, ...fields);
        }
        const res = await p.exec();
        if (!res || res.some(([e]) => e && /connection|closed|ECONN/i.test(String(e)))) break; // keep them for later
        queue.splice(0, batch.length);
        for (const ev of batch) recorded.inc({ type: ev.type });
      }
    } catch (e) {
      log.warn({ err: String(e), waiting: queue.length }, "redis write failed; keeping events in memory");
    } finally {
      flushing = false;
      buffered.set(queue.length);
    }
  };

  bus.subscribe(subjects.all(site), [...AUDITED], (ev) => {
    if (queue.length >= bufferMax) { dropped.inc(); return; }
    queue.push(ev);
    void flush();
  });
  redis.on("ready", () => void flush());
  const timer = setInterval(() => void flush(), 500);

  return {
    async stop() { clearInterval(timer); await flush(); redis.disconnect(); },
    health: () => ({ ok: redis.status === "ready" && bus.connected, redis: redis.status, bus: bus.connected, buffered: queue.length }),
  };
}
