// Controller state that outlives the process: each machine's persisted XState snapshot in Redis
// (so a restarted controller resumes at once), and the input journal (journal.ts) on the bus
// (so every decision can be replayed). Redis is never waited on after start: snapshot writes are
// coalesced and fire-and-forget; at start the restore waits a bounded time, then starts fresh.
//
// XState does not re-arm delayed transitions after a restore (statelyai/xstate#5331). Our
// machines have none: time arrives in their events, so a restored machine simply continues.
import { createHash } from "node:crypto";
import { createActor, type Actor, type AnyStateMachine, type InputFrom } from "xstate";
import client from "prom-client";
import type { Redis } from "ioredis";
import type { ServiceContext } from "../../shared/service.ts";
import { makeEvent, type Event } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";
import { createRedis, keys } from "../../shared/redis.ts";
import { registry } from "../../shared/metrics.ts";
import { InputJournal, type JournaledActor } from "./journal.ts";

const restoredTotal = new client.Counter({ name: "lvsflow_controller_snapshots_restored_total", help: "Machines restored from a snapshot at start", labelNames: ["result"], registers: [registry] });
const savedTotal = new client.Counter({ name: "lvsflow_controller_snapshots_saved_total", help: "Machine snapshots written to Redis", registers: [registry] });
const journalWaiting = new client.Gauge({ name: "lvsflow_controller_journal_waiting", help: "Input journal batches waiting for the bus", registers: [registry] });

export interface SavedMachine {
  v: 1;
  kind: string;
  configVersion: string;
  /** Shape of the machine (states and context keys) the snapshot belongs to. */
  shape: string;
  savedAt: number;
  snapshot: unknown;
  /** The last decision this machine led to: re-sent at once after a restore (same event id). */
  last: Event | null;
}

export interface ControllerStateOptions {
  /** How long start-up waits for Redis before starting fresh. */
  restoreWaitMs?: number;
  /** Older snapshots are ignored (and expire in Redis). */
  maxAgeMs?: number;
  /** Coalescing interval of snapshot writes. */
  saveMs?: number;
  checkpointMs?: number;
  now?: () => number;
}

/** States and context keys of a machine: a snapshot from a different shape is not restored. */
export function machineShape(machine: AnyStateMachine, input: unknown): string {
  const ctx = createActor(machine, { input } as never).getSnapshot().context as Record<string, unknown>;
  const deep = (o: unknown, depth: number): unknown =>
    o && typeof o === "object" && !Array.isArray(o) && depth > 0 ? Object.fromEntries(Object.keys(o).sort().map((k) => [k, deep((o as Record<string, unknown>)[k], depth - 1)])) : typeof o;
  const states = Object.keys(machine.root.states).sort();
  return createHash("sha256").update(JSON.stringify({ id: machine.id, states, ctx: deep(ctx, 2) })).digest("hex").slice(0, 16);
}

/**
 * Adjusts a snapshot for the moment it is restored. Ownership: silence while the controller was
 * away proves nothing, so every peer gets a fresh dead time and the start-up wait begins again
 * (as after a bus reconnect); the role and term are kept.
 */
export function prepareRestore(kind: string, snapshot: unknown, now: number): unknown {
  const snap = structuredClone(snapshot) as { context?: { s?: { startedAt?: number; peers?: Record<string, { lastSeen?: number }> } } };
  if (kind === "owner" && snap.context?.s) {
    const s = snap.context.s;
    if (typeof s.startedAt === "number") s.startedAt = now;
    for (const p of Object.values(s.peers ?? {})) if (typeof p.lastSeen === "number") p.lastSeen = now;
  }
  return snap;
}

export class ControllerState {
  readonly journal: InputJournal;
  private saved = new Map<string, SavedMachine>();
  private restored = new Map<string, Event>();
  private actors = new Map<string, { kind: string; shape: string; actor: JournaledActor }>();
  private last = new Map<string, Event>();
  private dirty = new Set<string>();
  private saver: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly maxAgeMs: number;

  private constructor(private readonly ctx: ServiceContext, private readonly redis: Redis | null, private readonly opts: ControllerStateOptions) {
    this.now = opts.now ?? Date.now;
    this.maxAgeMs = opts.maxAgeMs ?? Number(process.env.LVSFLOW_SNAPSHOT_MAX_AGE_MS ?? 600_000);
    const { bus, site, node, configVersion } = ctx;
    const source = { service: "controller" as const, node };
    this.journal = new InputJournal({
      now: this.now,
      checkpointMs: opts.checkpointMs,
      onChange: (key) => this.dirty.add(key),
      // Kept (bounded) while the bus is away and published in order when it returns.
      publish: (batch) => {
        if (!bus.connected) return false;
        bus.publish(subjects.inputs(site, node), makeEvent("controller.inputs", { node, ...batch }, { source, configVersion, now: new Date(batch.to) }));
        return true;
      },
    });
    bus.onStatus((up) => { if (up) this.journal.flush(); });
    this.saver = setInterval(() => { void this.save(); journalWaiting.set(this.journal.waiting); }, opts.saveMs ?? 250);
    this.saver.unref();
  }

  /** Connects to Redis and loads the saved snapshots, waiting at most restoreWaitMs. */
  static async open(ctx: ServiceContext, opts: ControllerStateOptions = {}): Promise<ControllerState> {
    const redis = createRedis(ctx.redisUrl, ctx.log, `lvsflow-controller-${ctx.node}`);
    const st = new ControllerState(ctx, redis, opts);
    const wait = opts.restoreWaitMs ?? 1000;
    const ready = redis.status === "ready" || (await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), wait);
      redis.once("ready", () => { clearTimeout(t); resolve(true); });
    }));
    if (!ready) {
      ctx.log.warn({ waitedMs: wait }, "redis not reachable: starting without snapshots");
      return st;
    }
    try {
      const prefix = keys.snapshot(ctx.site, ctx.node, "");
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 200);
        cursor = next;
        found.push(...batch);
      } while (cursor !== "0" && found.length < 100_000);
      const values = found.length ? await redis.mget(...found) : [];
      found.forEach((k, i) => {
        try {
          const v = JSON.parse(values[i] ?? "null") as SavedMachine | null;
          if (v && v.v === 1) st.saved.set(k.slice(prefix.length), v);
        } catch { /* unreadable: ignored, start fresh */ }
      });
    } catch (e) {
      ctx.log.warn({ err: String(e) }, "could not read snapshots: starting fresh");
    }
    return st;
  }

  /**
   * Creates the machine for `key` ("pool:<vs>", "owner:<group>"): restored from its snapshot when
   * there is a usable one, fresh otherwise; journaled either way. Start it afterwards.
   */
  create<M extends AnyStateMachine>(key: string, machine: M, input: InputFrom<M>): Actor<M> {
    const kind = key.split(":")[0]!;
    const shape = machineShape(machine, input);
    const t = this.now();
    // Only the first machine of a key is restored: one recreated later (live reload) starts fresh.
    const saved = this.saved.get(key);
    this.saved.delete(key);
    let actor: Actor<M> | null = null;
    let from: unknown = null;
    if (saved) {
      const why = saved.configVersion !== this.ctx.configVersion ? "configuration changed"
        : saved.shape !== shape ? "machine changed"
        : t - saved.savedAt > this.maxAgeMs ? `older than ${this.maxAgeMs} ms`
        : null;
      if (why) {
        restoredTotal.inc({ result: "ignored" });
        this.ctx.log.info({ machine: key, why }, "snapshot not restored");
      } else {
        try {
          from = prepareRestore(kind, saved.snapshot, t);
          actor = createActor(machine, { input, snapshot: from } as never) as Actor<M>;
          restoredTotal.inc({ result: "restored" });
          if (saved.last) this.restored.set(key, saved.last);
          this.ctx.log.info({ machine: key, state: (actor.getSnapshot() as { value?: unknown }).value, ageMs: t - saved.savedAt }, "restored from snapshot");
        } catch (e) {
          restoredTotal.inc({ result: "failed" });
          this.ctx.log.warn({ machine: key, err: String(e) }, "snapshot unusable: starting fresh");
          actor = null;
          from = null;
        }
      }
    }
    actor ??= createActor(machine, { input } as never) as Actor<M>;
    this.journal.attach(key, kind, actor as unknown as JournaledActor, input, from);
    this.actors.set(key, { kind, shape, actor: actor as unknown as JournaledActor });
    this.dirty.add(key);
    return actor;
  }

  /** The machine `key` is gone (e.g. its virtual service left the configuration). */
  remove(key: string): void {
    this.journal.detach(key);
    this.actors.delete(key);
    this.dirty.delete(key);
    this.redis?.del(keys.snapshot(this.ctx.site, this.ctx.node, key)).catch(() => undefined);
  }

  /** Call from a machine's decision handler with the event about to be published. */
  decided(ev: Event): void {
    const key = this.journal.currentMachine;
    if (key) { this.last.set(key, ev); this.dirty.add(key); }
    this.journal.decided(ev.id);
  }

  /** A decision published by the controller itself (not emitted by a machine), e.g. re-sent with new addresses after a reload. */
  published(ev: Event, why: string): void {
    this.journal.note(ev.id, why);
  }

  /** The decision the restored machine `key` had last led to, to re-send at once (or null). */
  restoredDecision(key: string): Event | null {
    return this.restored.get(key) ?? null;
  }

  private async save(): Promise<void> {
    if (!this.redis || this.redis.status !== "ready" || this.dirty.size === 0) return;
    const p = this.redis.pipeline();
    const t = this.now();
    for (const key of this.dirty) {
      const a = this.actors.get(key);
      if (!a) continue;
      const rec: SavedMachine = { v: 1, kind: a.kind, configVersion: this.ctx.configVersion, shape: a.shape, savedAt: t, snapshot: a.actor.getPersistedSnapshot(), last: this.last.get(key) ?? this.restored.get(key) ?? null };
      p.set(keys.snapshot(this.ctx.site, this.ctx.node, key), JSON.stringify(rec), "PX", this.maxAgeMs);
    }
    const written = [...this.dirty];
    this.dirty.clear();
    try {
      const res = await p.exec();
      const err = res?.find(([e]) => e)?.[0];
      if (err) throw err;
      savedTotal.inc(written.length);
    } catch (e) {
      for (const k of written) this.dirty.add(k); // retried on the next round
      this.ctx.log.debug({ err: String(e) }, "snapshot write failed");
    }
  }

  health(): { journalWaiting: number; journalDropped: number; snapshots: string } {
    return { journalWaiting: this.journal.waiting, journalDropped: this.journal.dropped, snapshots: this.redis?.status ?? "off" };
  }

  async stop(): Promise<void> {
    clearInterval(this.saver);
    this.journal.checkpoint();
    this.journal.stop();
    for (const k of this.actors.keys()) this.dirty.add(k);
    await this.save();
    this.redis?.disconnect();
  }
}
