// The input journal and deterministic replay, without I/O: real pool and ownership machines are
// driven through a seeded chaos scenario (reals failing and returning, probers disagreeing, a
// peer dying and returning, bus losses); their journal is then replayed on fresh machines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createActor } from "xstate";
import { VirtualService } from "../shared/schemas/config.ts";
import { makeEvent, type Event } from "../shared/schemas/events.ts";
import { poolMachine } from "../services/controller/pool-machine.ts";
import { ownershipMachine } from "../services/controller/ownership-machine.ts";
import { InputJournal, decodeEntries, encodeEntries, type InputBatch } from "../services/controller/journal.ts";
import { replay, firstDiff, type RecordedBatch } from "../services/controller/replayer.ts";
import { prepareRestore, machineShape } from "../services/controller/snapshot.ts";

const vs = VirtualService.parse({
  id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
  scheduler: "wlc", persistence: null, quiescent: false,
  check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 1, timeout: 1, failureCount: 2 },
  fallback: { address: "127.0.0.1", port: 80, forwarding: "masq" },
  reals: [{ address: "203.0.113.11", port: 80, forwarding: "masq", weight: 1 }, { address: "203.0.113.12", port: 80, forwarding: "masq", weight: 1 }],
});

/** Small deterministic PRNG (mulberry32) so the chaos run is the same every time. */
function rng(seed: number) {
  return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

interface Run { batches: RecordedBatch[]; decisions: Map<string, Event>; consumed: number; recorded: number; end: number; checkpoints: number[] }

/**
 * A controller for node lb2 (priority 100) in a chaos run: what main.ts does, minus the bus.
 * Decisions become recorded events exactly as main.ts makes them.
 */
function chaosRun(seed: number, steps = 6000, grouped = false): Run {
  const r = rng(seed);
  let clock = 1_800_000_000_000;
  const batches: RecordedBatch[] = [];
  const checkpoints: number[] = [];
  const journal = new InputJournal({ node: "lb2", now: () => clock, flushMs: 0, checkpointMs: 0, publish: (b: InputBatch) => { batches.push({ node: "lb2", ...b }); return true; } } as never);
  const decisions = new Map<string, Event>();
  let gen = 0;
  const source = { service: "controller" as const, node: "lb2" };
  const pool = createActor(poolMachine, { input: { vs, policy: "all", now: clock } });
  journal.attach("pool:" + vs.id, "pool", pool as never, { vs, policy: "all", now: clock }, null);
  pool.on("decision", (d) => {
    const ev = makeEvent("decision.pool", { node: "lb2", generation: ++gen, pool: d.pool, changes: d.changes, fallbackActive: d.fallbackActive }, { source, causationId: d.causationId, now: new Date(clock) });
    journal.decided(ev.id);
    decisions.set(ev.id, ev);
  });
  const ownInput = { self: "lb2", group: "web", priority: 100, preempt: true, preemptDelayMs: 200, deadMs: 300, now: clock };
  const owner = createActor(ownershipMachine, { input: ownInput });
  journal.attach("owner:web", "owner", owner as never, ownInput, null);
  owner.on("decision", (d) => {
    const ev = makeEvent("decision.owner", { node: "lb2", generation: ++gen, group: "web", role: d.role, term: d.term, owner: d.owner, addresses: [], garpScheduleMs: [], why: d.why }, { source, causationId: d.causationId, now: new Date(clock) });
    journal.decided(ev.id);
    decisions.set(ev.id, ev);
  });
  pool.start();
  owner.start();

  const realUp: Record<string, boolean> = { "203.0.113.11:80": true, "203.0.113.12:80": true };
  const streaks: Record<string, { ok: boolean; n: number }> = {};
  let lb1Alive = true;
  let lb1Term = 1;
  let busUp = true;
  let n = 0;
  for (let i = 0; i < steps; i++) {
    clock += 10 + Math.floor(r() * 20);
    if (i % 1500 === 1499) { journal.checkpoint(); checkpoints.push(clock); }
    if (i % 200 === 0) journal.flush();
    // chaos: a real flips, lb1 dies or returns, the bus drops
    if (r() < 0.004) { const k = r() < 0.5 ? "203.0.113.11:80" : "203.0.113.12:80"; realUp[k] = !realUp[k]; }
    if (r() < 0.002) lb1Alive = !lb1Alive;
    if (r() < 0.001) { busUp = !busUp; owner.send({ type: "BUS", now: clock, up: busUp }); }
    if (!busUp) { if (r() < 0.05) owner.send({ type: "TICK", now: clock }); continue; }
    const x = r();
    if (x < 0.08) {
      // a probe result from lb1 or lb2; the two probers sometimes disagree
      const real = r() < 0.5 ? "203.0.113.11:80" : "203.0.113.12:80";
      // grouped: lb3 and lb4 share probe group g (one vantage point) beside ungrouped lb1
      const prober = grouped ? ["lb1", "lb3", "lb4"][Math.floor(r() * 3)]! : r() < 0.5 ? "lb1" : "lb2";
      const ok = r() < 0.05 ? !realUp[real] : realUp[real]!;
      const key = `${real}/${prober}`;
      const s = streaks[key];
      streaks[key] = s && s.ok === ok ? { ok, n: s.n + 1 } : { ok, n: 1 };
      // grouped: some are summaries, dated when checked, possibly older than the group's last word
      const at = grouped && r() < 0.3 ? clock - Math.floor(r() * 1500) : clock;
      const group = grouped && prober !== "lb1" ? { group: "g" } : {};
      pool.send({ type: "HEALTH", now: clock, eventId: `h${++n}`, real, prober, ...group, ok, streak: streaks[key]!.n, at, error: ok ? null : "ECONNREFUSED", check: at === clock ? "connect" : "summary" });
    } else if (x < 0.5) {
      if (lb1Alive) owner.send({ type: "HEARTBEAT", now: clock, node: "lb1", priority: 150, holds: r() < 0.01 ? null : lb1Term, faults: [], eventId: `b${++n}` });
      if (!lb1Alive && r() < 0.01) lb1Term++;
      owner.send({ type: "HEARTBEAT", now: clock, node: "lb2", priority: 100, holds: owner.getSnapshot().context.s.role === "owner" ? owner.getSnapshot().context.s.term : null, faults: [], eventId: `b${++n}` });
    } else if (x < 0.9) {
      owner.send({ type: "TICK", now: clock });
    } else {
      pool.send({ type: "TICK", now: clock });
    }
  }
  journal.stop();
  return { batches, decisions, consumed: journal.consumed, recorded: journal.recorded, end: clock, checkpoints };
}

test("replay of a recorded chaos run reproduces 100 % of the decisions", () => {
  const run = chaosRun(7);
  const kinds = [...run.decisions.values()].reduce((m, e) => m.set(e.type, (m.get(e.type) ?? 0) + 1), new Map<string, number>());
  console.log(`# chaos run: ${run.consumed} inputs consumed, ${run.recorded} journaled (${Math.round(100 * (1 - run.recorded / run.consumed))} % idle ticks left out), ${run.batches.length} batches, decisions ${JSON.stringify(Object.fromEntries(kinds))}`);
  assert.ok((kinds.get("decision.pool") ?? 0) >= 5 && (kinds.get("decision.owner") ?? 0) >= 3, "the scenario exercises both machines");
  assert.ok(run.recorded < run.consumed, "idle ticks are left out of the journal");
  const rep = replay(run.batches, run.decisions, 0, run.end);
  assert.deepEqual(rep.differences, []);
  assert.deepEqual(rep.problems, []);
  assert.equal(rep.compared, run.decisions.size, "every decision compared");
  assert.equal(rep.identical, run.decisions.size);
  assert.ok(rep.ok);
});

test("replay reproduces a run with a probe group's members (one vantage point), late summaries and an ungrouped prober", () => {
  const run = chaosRun(5, 6000, true);
  const pools = [...run.decisions.values()].filter((e) => e.type === "decision.pool");
  assert.ok(pools.length >= 5, `the scenario exercises the pool (${pools.length} pool decisions)`);
  assert.ok(pools.some((e) => e.type === "decision.pool" && e.data.changes.some((c) => c.why.includes("group g (via prober"))), "some decision rests on the group");
  const rep = replay(run.batches, run.decisions, 0, run.end);
  assert.deepEqual(rep.differences, []);
  assert.deepEqual(rep.problems, []);
  assert.equal(rep.identical, run.decisions.size);
});

test("replay from a checkpoint in the middle compares only the window and still matches", () => {
  const run = chaosRun(11);
  const from = run.checkpoints[1]! + 1;
  const to = run.end;
  const inWindow = [...run.decisions.values()].filter((e) => Date.parse(e.time) >= from).length;
  const rep = replay(run.batches, run.decisions, from, to);
  assert.deepEqual(rep.problems, []);
  assert.deepEqual(rep.differences, []);
  assert.equal(rep.nodes[0]!.startedAt, run.checkpoints[1], "starts at the last checkpoint before --from");
  assert.equal(rep.compared, inWindow);
  assert.ok(rep.ok);
});

test("a changed decision is shown as the first difference, with the field", () => {
  const run = chaosRun(7);
  const victim = [...run.decisions.values()].filter((e) => e.type === "decision.pool")[3]!;
  const changed = structuredClone(victim) as Extract<Event, { type: "decision.pool" }>;
  changed.data.changes = changed.data.changes.map((c) => ({ ...c, why: c.why + " (edited)" }));
  changed.data.pool.reals = [];
  run.decisions.set(victim.id, changed);
  const rep = replay(run.batches, run.decisions, 0, run.end);
  assert.equal(rep.ok, false);
  assert.equal(rep.differences.length, 1);
  const d = rep.differences[0]!;
  assert.equal(d.decisionId, victim.id);
  assert.equal(d.what, "different");
  assert.equal(d.field, victim.data.changes.length ? "changes[0].why" : "pool.reals[0]");
  assert.equal(rep.compared - rep.identical, 1);
});

test("a lost journal batch is reported, and replay resumes at the next checkpoint", () => {
  const run = chaosRun(7);
  const lost = run.batches.findIndex((b, i) => i > 3 && !b.start);
  run.batches.splice(lost, 1);
  const rep = replay(run.batches, run.decisions, 0, run.end);
  assert.equal(rep.ok, false);
  assert.ok(rep.problems.some((p) => /missing \(inputs lost\)/.test(p)), rep.problems.join("\n"));
  assert.deepEqual(rep.differences, [], "what is replayed still matches");
});

test("a controller with different logic is caught: the first decision that differs", () => {
  const run = chaosRun(7);
  // The "changed controller": vantage policy any instead of all.
  const entries = run.batches.map((b) => ({ ...b, entries: b.entries }));
  const first = decodeEntries(entries[0]!.entries);
  for (const e of first) if (e.k === "add" && e.kind === "pool") (e.input as { policy: string }).policy = "any";
  entries[0] = { ...entries[0]!, entries: encodeEntries(first) };
  const rep = replay(entries, run.decisions, 0, run.end);
  assert.equal(rep.ok, false);
  assert.ok(rep.differences.length >= 1);
  const d = rep.differences[0]!;
  assert.equal(d.machine, "pool:" + vs.id);
  assert.ok(d.field, "names the field");
});

test("firstDiff names the first differing leaf", () => {
  assert.equal(firstDiff({ a: 1, b: [1, 2] }, { a: 1, b: [1, 3] }), "b[1]");
  assert.equal(firstDiff({ a: 1 }, { a: 1, x: undefined }), null);
  assert.equal(firstDiff({ a: { c: "x" } }, { a: { c: "y" } }), "a.c");
});

test("restore: an ownership snapshot gets fresh peer times and a new start-up wait; shape guards changed machines", () => {
  const input = { self: "lb1", group: "web", priority: 150, preempt: true, preemptDelayMs: 0, deadMs: 300, now: 1000 };
  const a = createActor(ownershipMachine, { input });
  a.start();
  a.send({ type: "HEARTBEAT", now: 1100, node: "lb1", priority: 150, holds: null, faults: [], eventId: "x1" });
  a.send({ type: "TICK", now: 1400 });
  assert.equal(a.getSnapshot().context.s.role, "owner");
  const snap = a.getPersistedSnapshot();
  const prepared = prepareRestore("owner", snap, 50_000) as { context: { s: { startedAt: number; peers: Record<string, { lastSeen: number }>; role: string } } };
  assert.equal(prepared.context.s.startedAt, 50_000);
  assert.equal(prepared.context.s.peers.lb1!.lastSeen, 50_000);
  assert.equal(prepared.context.s.role, "owner", "role and term kept");
  const b = createActor(ownershipMachine, { input, snapshot: prepared as never });
  b.start();
  const out: unknown[] = [];
  b.on("decision", (d) => void out.push(d));
  b.send({ type: "TICK", now: 50_100 });
  assert.equal(out.length, 0, "no step-down: the own executor's silence while away proves nothing");
  assert.equal(b.getSnapshot().value, "owner");
  assert.notEqual(machineShape(ownershipMachine, input), machineShape(poolMachine, { vs, policy: "all", now: 0 }));
  assert.equal(machineShape(ownershipMachine, input), machineShape(ownershipMachine, { ...input, now: 5 }));
});
