// Deterministic replay: feeds a controller's recorded input journal (journal.ts) to fresh machines
// of the current code and compares every decision they emit with the decision that was recorded
// for the same input. Pure: no I/O, no clock — the journal carries the time of every input.
import { createActor, type AnyStateMachine } from "xstate";
import type { Event } from "../../shared/schemas/events.ts";
import { decodeEntries, type JournalEntry } from "./journal.ts";
import { poolMachine } from "./pool-machine.ts";
import { ownershipMachine } from "./ownership-machine.ts";

/** Machine kinds by the prefix of their journal key ("pool:<vs>", "owner:<group>"). */
export const MACHINES: Record<string, AnyStateMachine> = { pool: poolMachine, owner: ownershipMachine };

export interface RecordedBatch {
  node: string;
  boot: string;
  seq: number;
  start: boolean;
  from: number;
  to: number;
  /** Encoded entries (decoded only when replay reaches the batch). */
  entries: string;
}

export interface Difference {
  node: string;
  machine: string;
  /** Time of the input (ms since epoch). */
  t: number;
  input: string;
  what: "different" | "not replayed" | "extra" | "state";
  /** Path of the first field that differs, e.g. "changes[0].why". */
  field: string | null;
  recorded: unknown;
  replayed: unknown;
  decisionId: string | null;
}

export interface NodeReplay {
  node: string;
  boots: number;
  /** Time replay began (a starting point at or before --from). */
  startedAt: number | null;
  inputs: number;
  /** Decisions in the window compared with a replayed one. */
  compared: number;
  identical: number;
}

export interface ReplayReport {
  from: number;
  to: number;
  nodes: NodeReplay[];
  compared: number;
  identical: number;
  differences: Difference[];
  /** Things that keep the replay from being complete: gaps in a journal, decisions without inputs… */
  problems: string[];
  ok: boolean;
}

/** JSON with sorted keys and no undefined members: equal values compare equal as strings. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.keys(x).sort().filter((k) => x[k] !== undefined).map((k) => [k, x[k]])) : x));
}

/** Path of the first leaf where a and b differ, or null when they are equal. */
export function firstDiff(a: unknown, b: unknown, path = ""): string | null {
  if (canonical(a) === canonical(b)) return null;
  if (a && b && typeof a === "object" && typeof b === "object") {
    if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.max(a.length, b.length); i++) { const d = firstDiff(a[i], b[i], `${path}[${i}]`); if (d) return d; }
      return path || "(root)";
    }
    const ks = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of ks) { const d = firstDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k); if (d) return d; }
  }
  return path || "(root)";
}

/**
 * What of a recorded decision a machine's emission determines: the fields the emission shares
 * with the decision's data, and the cause. Generation, id and time belong to the publisher.
 */
export function decisionView(emitted: Record<string, unknown>, recorded: Event | null): { replayed: Record<string, unknown>; recorded: Record<string, unknown> | null } {
  const replayed: Record<string, unknown> = {};
  const rec: Record<string, unknown> = {};
  const data = (recorded?.data ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(emitted)) {
    if (k === "type") continue;
    if (k === "causationId") { replayed[k] = v; rec[k] = recorded?.causationId ?? null; continue; }
    if (!recorded || k in data) { replayed[k] = v; rec[k] = data[k]; }
  }
  return { replayed, recorded: recorded ? rec : null };
}

function describeInput(e: { type: string; [k: string]: unknown }): string {
  const pick = ["real", "prober", "ok", "streak", "node", "holds", "up", "eventId"].filter((k) => k in e).map((k) => `${k}=${JSON.stringify(e[k])}`);
  return `${e.type}${pick.length ? ` ${pick.join(" ")}` : ""}`;
}

/** Snapshot comparison at a checkpoint, ignoring `context.now` as the journal does. */
function stateKey(snapshot: unknown): string {
  const s = snapshot as { value?: unknown; context?: Record<string, unknown> } | null;
  const ctx = s?.context ? { ...s.context, now: undefined } : undefined;
  return canonical({ v: s?.value, c: ctx });
}

interface Live { actor: ReturnType<typeof createActor>; emitted: Record<string, unknown>[] }

/**
 * Replays the journals of every node in `batches` (in recorded order) and compares the decisions
 * of inputs whose time lies in [from, to] with `decisions` (recorded decision events by id).
 */
export function replay(batches: RecordedBatch[], decisions: Map<string, Event>, from: number, to: number, machines = MACHINES, maxDifferences = 20): ReplayReport {
  const report: ReplayReport = { from, to, nodes: [], compared: 0, identical: 0, differences: [], problems: [], ok: false };
  const referenced = new Set<string>();
  const byNode = new Map<string, RecordedBatch[]>();
  for (const b of batches) (byNode.get(b.node) ?? byNode.set(b.node, []).get(b.node)!).push(b);
  const diff = (d: Difference) => { if (report.differences.length < maxDifferences) report.differences.push(d); };

  for (const [node, list] of byNode) {
    const nr: NodeReplay = { node, boots: 0, startedAt: null, inputs: 0, compared: 0, identical: 0 };
    report.nodes.push(nr);
    const boots = new Map<string, RecordedBatch[]>();
    for (const b of list) (boots.get(b.boot) ?? boots.set(b.boot, []).get(b.boot)!).push(b);
    for (const [boot, bl] of boots) {
      bl.sort((a, b) => a.seq - b.seq);
      if (bl.at(-1)!.to < from || bl[0]!.from > to) continue;
      nr.boots++;
      const starts = bl.map((b, i) => (b.start ? i : -1)).filter((i) => i >= 0);
      let idx = [...starts].reverse().find((i) => bl[i]!.from <= from) ?? starts[0];
      if (idx === undefined) { report.problems.push(`${node}: journal ${boot.slice(0, 8)} has no starting point in the range read (widen --lookback)`); continue; }
      if (bl[idx]!.from > from && bl[idx]!.seq !== 0) report.problems.push(`${node}: journal ${boot.slice(0, 8)} replayed from ${new Date(bl[idx]!.from).toISOString()}, after --from (no earlier starting point recorded)`);
      nr.startedAt = nr.startedAt === null ? bl[idx]!.from : Math.min(nr.startedAt, bl[idx]!.from);
      let live = new Map<string, Live>();
      let synced = false; // machines hold a known state
      let prevSeq = bl[idx]!.seq - 1;
      for (; idx < bl.length; idx++) {
        const b = bl[idx]!;
        if (b.from > to) break;
        if (b.seq !== prevSeq + 1) {
          report.problems.push(`${node}: journal ${boot.slice(0, 8)} batches ${prevSeq + 1}..${b.seq - 1} missing (inputs lost): replay resumes at the next starting point`);
          synced = false;
        }
        prevSeq = b.seq;
        if (!synced && !b.start) continue;
        let entries: JournalEntry[];
        try { entries = decodeEntries(b.entries); } catch (e) { report.problems.push(`${node}: journal batch ${b.seq} unreadable: ${String(e)}`); synced = false; continue; }
        for (const en of entries) {
          if (en.k === "checkpoint") {
            if (synced) {
              // A free self-check: the replayed machines must be in the recorded state.
              for (const [m, c] of Object.entries(en.machines)) {
                const l = live.get(m);
                if (l && stateKey(l.actor.getPersistedSnapshot()) !== stateKey(c.snapshot)) {
                  const rp = JSON.parse(stateKey(l.actor.getPersistedSnapshot())), rc = JSON.parse(stateKey(c.snapshot));
                  diff({ node, machine: m, t: en.t, input: "checkpoint", what: "state", field: firstDiff(rc, rp), recorded: rc, replayed: rp, decisionId: null });
                }
              }
            } else {
              for (const l of live.values()) l.actor.stop();
              live = new Map();
              for (const [m, c] of Object.entries(en.machines)) {
                const machine = machines[c.kind];
                if (!machine) { report.problems.push(`${node}: unknown machine kind ${c.kind}`); continue; }
                live.set(m, start(machine, undefined, c.snapshot, (e) => report.problems.push(`${node}: machine ${m} failed after the checkpoint at ${new Date(en.t).toISOString()}: ${String(e)}`)));
              }
              synced = true;
            }
          } else if (en.k === "add") {
            const machine = machines[en.kind];
            if (!machine) { report.problems.push(`${node}: unknown machine kind ${en.kind}`); continue; }
            live.get(en.m)?.actor.stop();
            live.set(en.m, start(machine, en.input, en.snapshot, (e) => report.problems.push(`${node}: machine ${en.m} failed: ${String(e)}`)));
            synced = true;
          } else if (en.k === "note") {
            for (const id of en.out) referenced.add(id);
          } else if (en.k === "remove") {
            live.get(en.m)?.actor.stop();
            live.delete(en.m);
          } else if (en.k === "in") {
            for (const id of en.out ?? []) referenced.add(id);
            const l = live.get(en.m);
            if (!synced || !l) continue;
            nr.inputs++;
            l.emitted = [];
            l.actor.send(en.e as never);
            if (en.t < from || en.t > to) continue;
            const out = en.out ?? [];
            for (let i = 0; i < Math.max(out.length, l.emitted.length); i++) {
              const rec = out[i] !== undefined ? decisions.get(out[i]!) ?? null : null;
              const em = l.emitted[i];
              if (out[i] !== undefined && !rec) { report.problems.push(`${node}: decision ${out[i]} (input at ${new Date(en.t).toISOString()}) is not in the history`); continue; }
              nr.compared++;
              report.compared++;
              if (!em) { diff({ node, machine: en.m, t: en.t, input: describeInput(en.e), what: "not replayed", field: null, recorded: rec?.data ?? null, replayed: null, decisionId: out[i] ?? null }); continue; }
              if (!rec) { diff({ node, machine: en.m, t: en.t, input: describeInput(en.e), what: "extra", field: null, recorded: null, replayed: em, decisionId: null }); continue; }
              const v = decisionView(em, rec);
              const f = firstDiff(v.recorded, v.replayed);
              if (f) diff({ node, machine: en.m, t: en.t, input: describeInput(en.e), what: "different", field: f, recorded: v.recorded, replayed: v.replayed, decisionId: rec.id });
              else { nr.identical++; report.identical++; }
            }
          }
        }
      }
      for (const l of live.values()) l.actor.stop();
    }
  }
  // Every decision of a journaled node in the window must come from a journaled input.
  const nodes = new Set(byNode.keys());
  for (const ev of decisions.values()) {
    const t = Date.parse(ev.time);
    if (t < from || t > to || ev.source.service !== "controller" || referenced.has(ev.id)) continue;
    const nr = report.nodes.find((n) => n.node === ev.source.node);
    if (!nodes.has(ev.source.node)) report.problems.push(`${ev.source.node}: decision ${ev.id} at ${ev.time} but no input journal for this node`);
    else if (nr?.startedAt !== null && nr?.startedAt !== undefined && t >= nr.startedAt) report.problems.push(`${ev.source.node}: decision ${ev.id} at ${ev.time} is not linked to any journaled input`);
  }
  const countDiffs = report.differences.length;
  report.ok = countDiffs === 0 && report.problems.length === 0 && report.compared === report.identical;
  return report;
}

function start(machine: AnyStateMachine, input: unknown, snapshot: unknown | null, onError: (e: unknown) => void): Live {
  const actor = createActor(machine, (snapshot ? { snapshot, input } : { input }) as never);
  const l: Live = { actor, emitted: [] };
  actor.on("*", (e: unknown) => { l.emitted.push(e as Record<string, unknown>); });
  // A machine that throws is a finding of the replay, not a crash of it.
  actor.subscribe({ error: onError });
  actor.start();
  return l;
}
