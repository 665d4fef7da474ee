// The controller's input journal: every event its machines consume, with the time the machine
// was given, in the order they were consumed, and the ids of the decisions each one produced.
// Replay (replayer.ts) feeds the same entries to fresh machines: since the machines take time
// only from their events, their decisions are a pure function of this journal.
//
// Entries, in order (a batch's `entries` is base64 deflate-raw of their JSON array):
//   { k: "add", t, m, kind, input, snapshot }   a machine was created (snapshot: what it was restored from, or null)
//   { k: "remove", t, m }                       a machine was stopped (e.g. its virtual service left the configuration)
//   { k: "checkpoint", t, machines }            every machine's persisted snapshot: replay may begin here
//   { k: "in", t, m, e, out? }                  machine m consumed event e; out = ids of the decisions it emitted
//   { k: "note", t, out, why }                  a decision published by the controller itself, not by a machine
//
// Volume: a TICK that changes nothing but `context.now` is left out (replaying it would change
// nothing either, because every machine assigns `now` from each event before reading it).
// Heartbeats change `lastSeen` and are always kept. A batch is flushed every second, at a
// checkpoint, and right before a decision is published, so the inputs behind every decision
// reach the bus before the decision does.
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { randomUUID } from "node:crypto";
import type { DataOf } from "../../shared/schemas/events.ts";

export type JournalEntry =
  | { k: "add"; t: number; m: string; kind: string; input: unknown; snapshot: unknown | null }
  | { k: "remove"; t: number; m: string }
  | { k: "checkpoint"; t: number; machines: Record<string, { kind: string; snapshot: unknown }> }
  | { k: "in"; t: number; m: string; e: { type: string; [k: string]: unknown }; out?: string[] }
  | { k: "note"; t: number; out: string[]; why: string };

export type InputBatch = Omit<DataOf<"controller.inputs">, "node">;

export function encodeEntries(entries: JournalEntry[]): string {
  return deflateRawSync(Buffer.from(JSON.stringify(entries))).toString("base64");
}

export function decodeEntries(s: string): JournalEntry[] {
  const v = JSON.parse(inflateRawSync(Buffer.from(s, "base64")).toString("utf8")) as unknown;
  if (!Array.isArray(v)) throw new Error("journal batch is not an array");
  return v as JournalEntry[];
}

/** The part of an XState actor the journal needs. */
export interface JournaledActor {
  send(ev: { type: string; [k: string]: unknown }): void;
  getSnapshot(): { value: unknown; context: unknown };
  getPersistedSnapshot(): unknown;
  on(type: "*", handler: (e: unknown) => void): { unsubscribe(): void };
}

export interface JournalOptions {
  /** Publishes a batch; returns false when it cannot (bus down): the batch is kept and retried in order. */
  publish: (batch: InputBatch) => boolean;
  boot?: string;
  now?: () => number;
  flushMs?: number;
  checkpointMs?: number;
  /** A batch is flushed early at this many entries. */
  maxEntries?: number;
  /** Batches kept while the bus is down; beyond it the oldest are dropped (replay then reports a gap). */
  maxQueued?: number;
  /** Called after every input that changed a machine (snapshot persistence hooks in here). */
  onChange?: (key: string) => void;
  /** Events of these types are journaled only when they change the machine. */
  skippable?: ReadonlySet<string>;
}

/** Fingerprint of a machine's state that ignores `context.now` (always assigned before it is read). */
export function fingerprint(actor: JournaledActor): string {
  const snap = actor.getSnapshot();
  const ctx = snap.context;
  return JSON.stringify({ v: snap.value, c: ctx }, function (this: unknown, k, v) { return this === ctx && k === "now" ? undefined : v; });
}

interface Attached { kind: string; actor: JournaledActor; emitted: number; unsub: () => void }

export class InputJournal {
  readonly boot: string;
  private seq = 0;
  private entries: JournalEntry[] = [];
  private start = true;
  private queue: InputBatch[] = [];
  private machines = new Map<string, Attached>();
  private current: Extract<JournalEntry, { k: "in" }> | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly now: () => number;
  dropped = 0;
  consumed = 0;
  recorded = 0;

  constructor(private readonly opts: JournalOptions) {
    this.boot = opts.boot ?? randomUUID();
    this.now = opts.now ?? Date.now;
    if (opts.flushMs !== 0) this.timers.push(setInterval(() => this.flush(), opts.flushMs ?? 1000));
    if (opts.checkpointMs !== 0) this.timers.push(setInterval(() => this.checkpoint(), opts.checkpointMs ?? 60_000));
    for (const t of this.timers) t.unref();
  }

  /**
   * Records the machine's creation and wraps its send() so every event it consumes is journaled.
   * Call before actor.start() and before any event is sent to it.
   */
  attach<A extends JournaledActor>(key: string, kind: string, actor: A, input: unknown, snapshot: unknown | null): A {
    this.machines.get(key)?.unsub(); // a machine replaced under the same key (e.g. a changed group)
    this.push({ k: "add", t: this.now(), m: key, kind, input, snapshot });
    const a: Attached = { kind, actor, emitted: 0, unsub: () => undefined };
    a.unsub = actor.on("*", () => { a.emitted++; }).unsubscribe;
    const send = actor.send.bind(actor);
    const skippable = this.opts.skippable ?? new Set(["TICK"]);
    actor.send = (ev) => {
      const entry: Extract<JournalEntry, { k: "in" }> = { k: "in", t: typeof ev.now === "number" ? ev.now : this.now(), m: key, e: ev };
      const before = skippable.has(ev.type) ? fingerprint(actor) : null;
      const emittedBefore = a.emitted;
      // Pushed before the machine runs: a decision it emits flushes this batch, entry included.
      this.push(entry);
      const prev = this.current;
      this.current = entry;
      this.consumed++;
      try {
        send(ev);
      } finally {
        this.current = prev;
      }
      const changed = before === null || a.emitted !== emittedBefore || entry.out !== undefined || fingerprint(actor) !== before;
      if (!changed) {
        // Nothing happened: take it back out (it is still the last entry, no flush happened).
        if (this.entries.at(-1) === entry) this.entries.pop();
      } else {
        this.recorded++;
        this.opts.onChange?.(key);
      }
      if (this.entries.length >= (this.opts.maxEntries ?? 2000)) this.flush();
    };
    this.machines.set(key, a);
    return actor;
  }

  detach(key: string): void {
    const a = this.machines.get(key);
    if (!a) return;
    a.unsub();
    this.machines.delete(key);
    this.push({ k: "remove", t: this.now(), m: key });
  }

  /**
   * The decision event the current input produced (call it from the machine's decision handler,
   * before publishing): its id is bound to the input, and the batch is published first.
   */
  decided(eventId: string): void {
    const e = this.current;
    if (!e) return; // emitted outside a journaled send (cannot happen with attached machines)
    (e.out ??= []).push(eventId);
    this.flush();
  }

  /** A decision the controller published without a machine emitting it (replay accounts for it, compares nothing). */
  note(eventId: string, why: string): void {
    this.push({ k: "note", t: this.now(), out: [eventId], why });
    this.flush();
  }

  /** The key of the machine whose input is being processed right now (inside its handlers). */
  get currentMachine(): string | null {
    return this.current?.m ?? null;
  }

  /** Every machine's persisted snapshot, as the first entry of a new batch: replay can start here. */
  checkpoint(): void {
    if (this.current) return; // never in the middle of an input
    this.flush();
    const machines: Record<string, { kind: string; snapshot: unknown }> = {};
    for (const [k, a] of this.machines) machines[k] = { kind: a.kind, snapshot: a.actor.getPersistedSnapshot() };
    this.entries.push({ k: "checkpoint", t: this.now(), machines });
    this.start = true;
    this.flush();
  }

  private push(e: JournalEntry): void {
    this.entries.push(e);
  }

  /** Closes the current batch and publishes every batch waiting, in order. */
  flush(): void {
    if (this.entries.length) {
      const entries = this.entries;
      this.entries = [];
      this.queue.push({ boot: this.boot, seq: this.seq++, from: entries[0]!.t, to: entries.at(-1)!.t, count: entries.length, start: this.start, encoding: "deflate-json-base64", entries: encodeEntries(entries) });
      this.start = false;
      const max = this.opts.maxQueued ?? 600;
      while (this.queue.length > max) { this.queue.shift(); this.dropped++; }
    }
    while (this.queue.length) {
      if (!this.opts.publish(this.queue[0]!)) break;
      this.queue.shift();
    }
  }

  get waiting(): number {
    return this.queue.length;
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.flush();
  }
}
