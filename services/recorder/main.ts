// The recorder: every audited event and every controller input journal goes to Redis Streams,
// exactly once per event id, in the order the bus carried them. It loses nothing while Redis is
// away: the events wait in a JetStream stream (buffer.ts) that captures them as they are
// published, and the recorder writes them from its Redis cursor when Redis is back. Nobody waits
// for Redis: publishers only ever publish on the bus.
//
// Without JetStream (a nats-server started without -js) the recorder falls back to a bounded
// in-memory queue and says so in its health: durable=false.
import client from "prom-client";
import type { Redis } from "ioredis";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { Event, type EventType } from "../../shared/schemas/events.ts";
import { AUDITED, recordedSubjects } from "../../shared/subjects.ts";
import { createRedis } from "../../shared/redis.ts";
import { registry, metrics } from "../../shared/metrics.ts";
import { AuditStore, type Item } from "./store.ts";
import { DurableBuffer } from "./buffer.ts";
import { retentionFromEnv, type Retention } from "./retention.ts";

const recorded = new client.Counter({ name: "lvsflow_recorder_events_total", help: "Events written to Redis", labelNames: ["type"], registers: [registry] });
const duplicates = new client.Counter({ name: "lvsflow_recorder_duplicates_total", help: "Events not written again (same event id, e.g. re-sent decisions)", registers: [registry] });
const dropped = new client.Counter({ name: "lvsflow_recorder_events_dropped_total", help: "Events lost: in-memory queue full (no JetStream) or aged out of the buffer before Redis returned", registers: [registry] });
const behind = new client.Gauge({ name: "lvsflow_recorder_behind", help: "Buffered events not yet written to Redis", registers: [registry] });
const durableGauge = new client.Gauge({ name: "lvsflow_recorder_durable", help: "1 when events wait in JetStream while Redis is away, 0 with the in-memory fallback", registers: [registry] });

export interface RecorderOptions {
  retention?: Retention;
  dedupSeconds?: number;
  /** In-memory fallback queue bound. */
  bufferMax?: number;
  /** "auto" (default): JetStream when the server has it, else memory. */
  durable?: "auto" | "jetstream" | "memory";
  trimEveryMs?: number;
}

const ALL_TYPES = Event.options.map((o) => o.shape.type.value) as EventType[];
const RECORDED = new Set<EventType>([...AUDITED, "controller.inputs"]);
const dec = new TextDecoder();

/** Parses a buffered message: the event when it is one we record, null otherwise (skipped). */
function parse(data: Uint8Array): Event | null {
  try {
    const p = Event.safeParse(JSON.parse(dec.decode(data)));
    if (!p.success) return null;
    return RECORDED.has(p.data.type) ? p.data : null;
  } catch {
    return null;
  }
}

export async function startRecorder(ctx: ServiceContext, opts: RecorderOptions = {}): Promise<RunningService> {
  const { site, bus, log } = ctx;
  const retention = opts.retention ?? retentionFromEnv();
  const redis: Redis = createRedis(ctx.redisUrl, log, "lvsflow-recorder");
  const store = new AuditStore(redis, site, retention, opts.dedupSeconds);
  let stopped = false;
  let mode: "jetstream" | "memory" = "memory";
  let lag = 0;
  let written = 0;
  let lastError: string | null = null;

  const account = (r: Awaited<ReturnType<AuditStore["write"]>>) => {
    for (const ev of r.appended) recorded.inc({ type: ev.type });
    duplicates.inc(r.duplicates);
    written += r.appended.length;
  };

  // ---- durable mode: read the JetStream buffer from the Redis cursor, write, repeat
  let buffer: DurableBuffer | null = null;
  if (opts.durable !== "memory") {
    try {
      buffer = await DurableBuffer.open(bus.nc!, site, retention.buffer, log);
      mode = "jetstream";
    } catch (e) {
      if (opts.durable === "jetstream") throw e;
      log.error({ err: String(e) }, "JetStream unavailable: recording from memory (events are lost if Redis stays away long or the recorder restarts); start nats-server with -js");
    }
  }
  durableGauge.set(mode === "jetstream" ? 1 : 0);

  let session: { stop: () => Promise<void> } | null = null;
  const redisReady = () => redis.status === "ready";
  const waitRedis = () => new Promise<void>((resolve) => { if (redisReady() || stopped) return resolve(); const t = setInterval(() => { if (redisReady() || stopped) { clearInterval(t); resolve(); } }, 200); });

  /** One reading session: from the cursor until Redis or the consumer fails. */
  const runSession = async (b: DurableBuffer) => {
    let cursor = await store.cursor();
    const st = await b.state();
    if (cursor > st.lastSeq) {
      log.warn({ cursor, lastSeq: st.lastSeq }, "the buffer stream is behind the Redis cursor (stream recreated): reading it from its start");
      cursor = st.firstSeq - 1;
      await store.setCursor(cursor);
    }
    if (cursor + 1 < st.firstSeq) {
      if (cursor > 0) {
        const lost = st.firstSeq - cursor - 1;
        dropped.inc(lost);
        log.error({ lost, cursor, firstSeq: st.firstSeq }, "events aged out of the buffer before Redis could take them");
      }
      cursor = st.firstSeq - 1;
    }
    lag = Math.max(0, st.lastSeq - cursor);
    log.info({ from: cursor + 1, lastSeq: st.lastSeq }, "recording from the buffer");
    const { messages, stop } = await b.read(cursor + 1);
    session = { stop };
    void (async () => {
      for await (const s of messages.status()) {
        if (["consumer_deleted", "consumer_not_found", "stream_not_found", "heartbeats_missed"].includes(s.type)) {
          log.warn({ status: s.type }, "buffer consumer lost: reconnecting");
          messages.stop();
        }
      }
    })().catch(() => undefined);
    let batch: Item[] = [];
    try {
      for await (const m of messages) {
        batch.push({ seq: m.seq, ev: parse(m.data) });
        // More waiting in the stream (the server says how many): gather them into one pipeline.
        if (m.info.pending > 0 && batch.length < 500) continue;
        const r = await store.write(batch);
        account(r);
        lag = Math.max(0, (m.info.pending ?? 0));
        batch = [];
        if (stopped) break;
      }
    } finally {
      await stop();
      session = null;
    }
  };

  const durableLoop = async (b: DurableBuffer) => {
    while (!stopped) {
      await waitRedis();
      if (stopped) break;
      try {
        await runSession(b);
      } catch (e) {
        lastError = String(e);
        log.warn({ err: lastError }, "recording paused (Redis or bus unavailable): the buffer keeps the events");
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 500));
    }
  };

  // ---- memory fallback: core subscriptions, a bounded queue, written when Redis is ready
  const queue: Event[] = [];
  const bufferMax = opts.bufferMax ?? 100_000;
  let flushing = false;
  const flushMemory = async () => {
    if (flushing) return;
    flushing = true;
    try {
      while (queue.length && redisReady()) {
        const items = queue.slice(0, 500).map((ev) => ({ seq: 0, ev }));
        account(await store.write(items));
        queue.splice(0, items.length);
      }
    } catch (e) {
      lastError = String(e);
      log.warn({ err: lastError, waiting: queue.length }, "redis write failed; keeping events in memory");
    } finally {
      flushing = false;
      lag = queue.length;
    }
  };

  let memTimer: NodeJS.Timeout | null = null;
  let upgradeTimer: NodeJS.Timeout | null = null;
  let loop: Promise<void> | null = null;
  // A reconnect to (possibly another) NATS server: start a new session from the cursor.
  bus.onStatus((up) => { if (up) void session?.stop(); });
  const startDurable = (b: DurableBuffer) => { buffer = b; mode = "jetstream"; durableGauge.set(1); loop = durableLoop(b); };
  if (buffer) {
    startDurable(buffer);
  } else {
    const subs = recordedSubjects(site).map((subject) => bus.subscribe(subject, ALL_TYPES, (ev) => {
      if (!RECORDED.has(ev.type)) return;
      if (queue.length >= bufferMax) { dropped.inc(); return; }
      queue.push(ev);
      void flushMemory();
    }));
    redis.on("ready", () => void flushMemory());
    memTimer = setInterval(() => void flushMemory(), 500);
    // Listening once started: the server has our subscriptions before anyone is told we run
    // (core subscriptions miss what is published before the server knows them).
    await bus.nc?.flush().catch(() => undefined);
    // JetStream may come later (a server restarted with -js, or not ready yet): switch to it then.
    // Events already written from memory are not written again (same ids).
    if (opts.durable !== "memory") {
      upgradeTimer = setInterval(() => {
        void DurableBuffer.open(bus.nc!, site, retention.buffer, log).then((b) => {
          if (stopped || buffer) return;
          clearInterval(upgradeTimer!);
          for (const sub of subs) sub.unsubscribe();
          // The memory queue keeps draining (memTimer) while the buffer takes new events.
          log.info("JetStream available: recording durably from now on");
          startDurable(b);
        }, () => undefined);
      }, 5000);
    }
  }

  // Retention by age and size.
  const trim = async () => {
    if (!redisReady()) return;
    try {
      const n = await store.trim();
      if (n.events || n.inputs) log.info(n, "trimmed the history (retention)");
    } catch (e) {
      log.warn({ err: String(e) }, "trim failed");
    }
  };
  const trimTimer = setInterval(() => void trim(), opts.trimEveryMs ?? 60_000);
  redis.once("ready", () => void trim());
  const lagTimer = setInterval(() => behind.set(lag), 1000);
  metrics.redisConnected.set(redisReady() ? 1 : 0);

  return {
    async stop() {
      stopped = true;
      clearInterval(trimTimer);
      clearInterval(lagTimer);
      if (memTimer) clearInterval(memTimer);
      if (upgradeTimer) clearInterval(upgradeTimer);
      if (!buffer) await flushMemory();
      await session?.stop();
      await loop;
      redis.disconnect();
    },
    health: () => ({
      ok: redisReady() && bus.connected && mode === "jetstream",
      durable: mode === "jetstream",
      mode,
      redis: redis.status,
      bus: bus.connected,
      behind: lag,
      written,
      lastError,
    }),
  };
}
