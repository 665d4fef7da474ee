// Pure tests of failover ownership: quorum, handover preempt, equal terms, reals step-down, and a
// simulated cluster (two LB nodes and a witness exchanging heartbeats and views over a network
// with latency and random partitions) that must never have two holders at the same instant.
// No bus, no clock, no kernel: time is an argument.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createActor, type Actor } from "xstate";
import { ownershipMachine, type OwnershipEmitted } from "../services/controller/ownership-machine.ts";
import { votesFor, majority, hearsOf, leaseFor, selfEligible, heardAt, ownsForView, type OwnDecisions } from "../services/controller/ownership-logic.ts";

const VOTERS = ["lb1", "lb2", "w"];
const PRIO: Record<string, number> = { lb1: 150, lb2: 100 };

function machine(self: string, o: { voters?: string[]; preempt?: boolean; preemptDelayMs?: number; stepDownWithoutReals?: boolean } = {}) {
  const out: OwnershipEmitted[] = [];
  const a = createActor(ownershipMachine, { input: { self, group: "web", priority: PRIO[self] ?? 1, preempt: o.preempt ?? true, preemptDelayMs: o.preemptDelayMs ?? 0, deadMs: 300, now: 0, voters: o.voters ?? VOTERS, stepDownWithoutReals: o.stepDownWithoutReals } });
  a.on("decision", (d) => void out.push(d));
  a.start();
  let n = 0;
  const hb = (node: string, holds: number | null, now: number, faults: string[] = []) =>
    a.send({ type: "HEARTBEAT", now, node, priority: PRIO[node]!, holds, faults, eventId: `h${++n}` });
  const view = (voter: string, hears: Record<string, number>, now: number, votes: Record<string, string | null> = {}, eligible?: Record<string, boolean>) =>
    a.send({ type: "VIEW", now, voter, hears, canOwn: eligible?.web ?? true, votes, eligible });
  const role = () => a.getSnapshot().context.s.role;
  return { a, out, hb, view, role };
}

test("quorum: a node alone (only its own vote) never takes the group; with the witness's vote it does", () => {
  const m = machine("lb1");
  for (let t = 0; t <= 600; t += 50) m.hb("lb1", null, t);
  assert.equal(m.out.length, 0, "1 of 3 votes is no majority");
  for (let t = 650; t <= 800; t += 50) { m.hb("lb1", null, t); m.view("w", { lb1: 10 }, t, { web: "lb1" }); }
  assert.deepEqual(m.out.map((d) => [d.role, d.term]), [["owner", 1]]);
  assert.match(m.out[0]!.why, /votes from lb1, w/);
});

test("quorum: the owner cut off from both other voters releases before they may re-vote", () => {
  const m = machine("lb1");
  let t = 0;
  for (; t <= 600; t += 50) { m.hb("lb1", m.role() === "owner" ? 1 : null, t); m.view("w", { lb1: 10, lb2: 10 }, t, { web: "lb1" }); m.view("lb2", { lb1: 10, w: 10 }, t, { web: "lb1" }); }
  assert.equal(m.role(), "owner");
  const lastView = t - 50;
  for (; t <= 1200 && m.role() === "owner"; t += 10) { if (t % 50 === 0) m.hb("lb1", 1, t); m.a.send({ type: "TICK", now: t }); }
  const releasedAt = t - 10;
  assert.equal(m.role(), "backup");
  assert.match(m.out.at(-1)!.why, /lost quorum/);
  // The last views said "heard lb1 10 ms ago": the voters may re-vote from lastView - 10 + 300 on.
  assert.ok(releasedAt <= lastView - 10 + 300 - 100 + 10, `released at ${releasedAt}, last view ${lastView}`);
  assert.ok(releasedAt < lastView - 10 + 300, "before any voter's dead time ends");
});

test("quorum: a backup does not take over a silent holder that the witness still hears and votes for (lb1–lb2 link cut)", () => {
  const m = machine("lb2");
  let t = 0;
  for (; t <= 600; t += 50) { m.hb("lb1", 1, t); m.hb("lb2", null, t); m.view("w", { lb1: 10, lb2: 10 }, t, { web: "lb1" }); m.view("lb1", { lb2: 10, w: 10 }, t, { web: "lb1" }); }
  for (; t <= 2000; t += 50) { m.hb("lb2", null, t); m.view("w", { lb1: 10, lb2: 10 }, t, { web: "lb1" }); }
  assert.equal(m.out.length, 0, "the witness votes lb1: no takeover, no split brain");
  assert.equal(m.a.getSnapshot().context.s.vote, "lb2", "lb2 itself moved its vote: it has not heard lb1 for the dead time");
  for (; t <= 2600; t += 50) { m.hb("lb2", m.role() === "owner" ? 2 : null, t); m.view("w", { lb2: 10 }, t, { web: "lb2" }); }
  assert.deepEqual(m.out.map((d) => [d.role, d.term]), [["owner", 2]], "once the witness votes lb2");
  assert.match(m.out[0]!.why, /lb1 silent/);
});

test("quorum: preempt is a handover — the owner withdraws its own vote and yields; the preferred node takes after the release", () => {
  const lb2 = machine("lb2");
  let t = 0;
  for (; t <= 600; t += 50) { lb2.hb("lb2", lb2.role() === "owner" ? 1 : null, t); lb2.view("w", { lb2: 10 }, t, { web: "lb2" }); }
  assert.equal(lb2.role(), "owner");
  // lb1 returns and is eligible; the witness still votes lb2 (it waits its own hold): lb2 withdraws its vote.
  lb2.hb("lb1", null, t); lb2.view("lb1", { lb2: 10, w: 10 }, t, { web: null }, { web: true }); lb2.hb("lb2", 1, t); lb2.view("w", { lb1: 10, lb2: 10 }, t, { web: null });
  assert.equal(lb2.role(), "backup");
  assert.match(lb2.out.at(-1)!.why, /yield to lb1/);
  const lb1 = machine("lb1");
  for (let u = 0; u <= 1500; u += 50) { lb1.hb("lb1", null, u); lb1.hb("lb2", 1, u); lb1.view("w", { lb1: 10, lb2: 10 }, u, { web: "lb1" }); lb1.view("lb2", { lb1: 10, w: 10 }, u, { web: null }); }
  assert.equal(lb1.out.length, 0, "lb1 has the votes but does not overlap a live holder");
  assert.equal(lb1.a.getSnapshot().context.s.vote, "lb1", "its own vote moved from the holder to itself (preempt, after the hold)");
  lb1.hb("lb2", null, 1550);
  assert.deepEqual(lb1.out.map((d) => [d.role, d.term]), [["owner", 2]]);
});

test("quorum: a voter waits the preempt delay, then withdraws for the hold time before voting for the better node", () => {
  const w = machine("w", { preemptDelayMs: 500 });
  let t = 0;
  for (; t <= 600; t += 50) { w.hb("lb2", 1, t); w.view("lb2", { w: 10 }, t, { web: "lb2" }, { web: true }); }
  assert.equal(w.a.getSnapshot().context.s.vote, "lb2");
  const back = t;
  const votes: [number, string | null | undefined][] = [[0, "lb2"]];
  for (; t <= 2000; t += 50) {
    w.hb("lb2", 1, t); w.view("lb2", { w: 10, lb1: 10 }, t, { web: "lb2" }, { web: true });
    w.hb("lb1", null, t); w.view("lb1", { w: 10, lb2: 10 }, t, { web: "lb1" }, { web: true });
    const v = w.a.getSnapshot().context.s.vote;
    if (votes.at(-1)?.[1] !== v) votes.push([t - back, v]);
  }
  assert.deepEqual(votes.map((v) => v[1]), ["lb2", null, "lb1"]);
  assert.ok(votes[1]![0] >= 500, `withdrawn after the preempt delay (${votes[1]![0]} ms)`);
  assert.ok(votes[2]![0] - votes[1]![0] >= 300, "re-voted after the hold");
});

test("quorum: a withdrawn vote moves as soon as the old holder acknowledges the withdrawal and has released — no timed hold", () => {
  const w = machine("w", { preemptDelayMs: 0 });
  let t = 0;
  for (; t <= 600; t += 50) { w.hb("lb2", 1, t); w.view("lb2", { w: 10 }, t, { web: "lb2" }, { web: true }); }
  // lb1 comes back: the witness withdraws from lb2 at once (preempt delay 0).
  w.hb("lb1", null, t); w.view("lb1", { w: 10, lb2: 10 }, t, { web: "lb1" }, { web: true });
  assert.equal(w.a.getSnapshot().context.s.vote, null);
  const withdrawnAt = w.a.getSnapshot().context.s.withdrawnAt!;
  const lb2view = (now: number, owns: number | null, ack: number) =>
    w.a.send({ type: "VIEW", now, voter: "lb2", hears: { w: 10, lb1: 10 }, canOwn: true, eligible: { web: true }, votes: { web: "lb1" }, owns: { web: owns }, acks: { w: ack } });
  // lb2 acknowledges a view sent before the withdrawal, or says it may still hold: keep waiting.
  lb2view(t + 10, null, withdrawnAt); w.hb("lb2", null, t + 10);
  assert.equal(w.a.getSnapshot().context.s.vote, null, "an acknowledgement of an older view proves nothing");
  lb2view(t + 20, 1, withdrawnAt + 5);
  assert.equal(w.a.getSnapshot().context.s.vote, null, "lb2 took the withdrawal in but may still hold the addresses");
  w.hb("lb2", 1, t + 30); lb2view(t + 30, null, withdrawnAt + 5);
  assert.equal(w.a.getSnapshot().context.s.vote, null, "its executor's heartbeat still shows the addresses");
  w.hb("lb2", null, t + 40);
  assert.equal(w.a.getSnapshot().context.s.vote, "lb1", "released and acknowledged: the vote moves 40 ms after the withdrawal, not 600");
});

test("ownsForView: after an 'owner' decision, released only once the executor holds nothing and took in the release (or the hold passed)", () => {
  const st = { role: "backup" as const, term: 6, deadMs: 300, holdMs: 600 };
  const d = { owner: { generation: 5, term: 3 }, release: { generation: 7, at: 1000 } };
  assert.equal(ownsForView({ ...st, role: "owner" }, 1010, null, d), 6);
  assert.equal(ownsForView(st, 1010, { at: 1005, holds: 3, generation: 7 }, d), 3, "addresses still on the interface");
  assert.equal(ownsForView(st, 1010, { at: 1005, holds: null, generation: 5 }, d), 3, "the release has not reached the executor: the take may still be applied — under the term it was taken with, not the newer one learnt since");
  assert.equal(ownsForView(st, 1010, { at: 1005, holds: null, generation: undefined }, d), 3, "an executor that does not report generations: wait the hold");
  assert.equal(ownsForView(st, 1700, { at: 1690, holds: null, generation: 5 }, d), null, "after the hold: as before acknowledgements");
  assert.equal(ownsForView(st, 1010, { at: 1005, holds: null, generation: 7 }, d), null, "released");
  assert.equal(ownsForView(st, 1010, { at: 500, holds: 3, generation: 7 }, d), null, "a silent executor: its heartbeats (or their absence) decide");
  assert.equal(ownsForView(st, 1010, { at: 1005, holds: null, generation: 2 }, { owner: null, release: null }), null, "never sent 'owner': nothing to release, whatever the executor has not taken in yet");
});

test("quorum: a heard holder that is faulted is waited for (it releases first), not overlapped", () => {
  const lb2 = machine("lb2");
  let t = 0;
  for (; t <= 600; t += 50) { lb2.hb("lb1", 1, t); lb2.hb("lb2", null, t); lb2.view("w", { lb1: 10, lb2: 10 }, t, { web: "lb1" }); lb2.view("lb1", { lb2: 10, w: 10 }, t, { web: "lb1" }); }
  lb2.hb("lb1", 1, t, ["stopping"]); lb2.hb("lb2", null, t); lb2.view("w", { lb1: 10, lb2: 10 }, t, { web: "lb2" });
  assert.equal(lb2.out.length, 0);
  lb2.hb("lb1", null, t + 20, ["stopping"]);
  assert.deepEqual(lb2.out.map((d) => [d.role, d.term]), [["owner", 2]]);
});

test("quorum: a view saying 'I own it' counts as holding before the heartbeat shows it: no takeover with the votes alone", () => {
  const lb1 = machine("lb1");
  for (let t = 0; t <= 600; t += 50) { lb1.hb("lb1", null, t); lb1.hb("lb2", null, t); lb1.a.send({ type: "VIEW", now: t, voter: "lb2", hears: { lb1: 10 }, canOwn: true, eligible: { web: true }, votes: { web: "lb1" }, owns: { web: 4 } }); }
  assert.equal(lb1.out.length, 0, "lb2's heartbeat still says nothing, its view says it owns term 4");
  lb1.a.send({ type: "VIEW", now: 650, voter: "lb2", hears: { lb1: 10 }, canOwn: true, eligible: { web: true }, votes: { web: "lb1" }, owns: { web: null } });
  assert.deepEqual(lb1.out.map((d) => [d.role, d.term]), [["owner", 5]], "terms only grow: above the one the view announced");
});

test("VRRP mode (two nodes, no witness): a faulted holder is taken over at once; equal terms resolve by priority", () => {
  const lb2 = machine("lb2", { voters: ["lb1", "lb2"] });
  let t = 0;
  for (; t <= 600; t += 50) { lb2.hb("lb1", 1, t); lb2.hb("lb2", null, t); }
  lb2.hb("lb1", 1, t, ["stopping"]);
  assert.deepEqual(lb2.out.map((d) => [d.role, d.term]), [["owner", 2]]);
  // After a healed partition both may hold the same term: the lower priority lets go.
  const lb2b = machine("lb2", { voters: ["lb1", "lb2"] });
  for (t = 0; t <= 400; t += 50) lb2b.hb("lb2", lb2b.role() === "owner" ? 1 : null, t);
  assert.equal(lb2b.role(), "owner");
  lb2b.hb("lb1", 1, t);
  assert.equal(lb2b.role(), "backup");
  assert.match(lb2b.out.at(-1)!.why, /same term 1/);
});

test("step-down without reals: the owner whose prober sees no healthy real hands over to a peer that sees some", () => {
  const lb1 = machine("lb1", { voters: ["lb1", "lb2"], stepDownWithoutReals: true });
  let t = 0;
  for (; t <= 400; t += 50) { lb1.hb("lb1", lb1.role() === "owner" ? 1 : null, t); lb1.hb("lb2", null, t); }
  assert.equal(lb1.role(), "owner");
  lb1.a.send({ type: "REALS", now: t, realsUp: { lb1: 0, lb2: 0 } });
  assert.equal(lb1.role(), "owner", "nobody sees a real: stay (the fallback serves)");
  lb1.a.send({ type: "REALS", now: t + 10, realsUp: { lb1: 0, lb2: 2 } });
  assert.equal(lb1.role(), "backup");
  assert.match(lb1.out.at(-1)!.why, /no healthy real server seen from lb1 while lb2 sees 2/);
  // And the same node, as a backup, does not take the group back while that lasts.
  for (t += 50; t <= 1000; t += 50) { lb1.hb("lb1", null, t); lb1.hb("lb2", null, t); }
  assert.equal(lb1.role(), "backup");
});

test("votes and lease: a vote stops counting guard ms before its voter may move it", () => {
  const m = machine("lb1");
  for (let t = 0; t <= 1000; t += 50) { m.hb("lb1", m.role() === "owner" ? 1 : null, t); m.view("lb2", { lb1: 20 }, t, { web: "lb1" }); }
  m.view("w", { lb1: 40 }, 1010, { web: "lb1" });
  const s = m.a.getSnapshot().context.s;
  assert.equal(s.role, "owner");
  const v = votesFor(s, "lb1", 1050);
  assert.deepEqual(v.from.sort(), ["lb1", "lb2", "w"]);
  assert.equal(majority(VOTERS), 2);
  assert.equal(v.until, 1180, "its own vote never lapses; the best other one is enough for 2 of 3");
  const w = votesFor({ ...s, vote: null }, "lb1", 1050);
  // lb2: min(1000 + hold 300 - guard 100, 1000 - 20 + dead 300 - guard 100) = 1180; w: min(1210, 1170) = 1170.
  assert.equal(w.until, 1170, "without its own vote, the owner needs both: the earlier expiry");
  assert.equal(leaseFor({ ...s, vote: null }, 1050), 120);
  assert.deepEqual(hearsOf(new Map([["lb1", 900], ["lb2", 500], ["w", 990]]), "w", 1000, 300), { lb1: 100 });
});

// ---- simulated cluster ----------------------------------------------------------------------

interface SimNode { name: string; m: ReturnType<typeof machine>; exec: { holds: number | null; leaseUntil: number; gen: number }; lastHeard: Map<string, number>; viewSent: Map<string, number>; last: OwnDecisions }

/** Runs lb1, lb2 and a witness for `ms` of simulated time with partitions from `cut(t)`; samples holders every 5 ms. */
function simulate(ms: number, cut: (t: number) => Set<string>, seed: number, acks = true) {
  let rnd = seed;
  const rand = () => ((rnd = (rnd * 48271) % 2147483647) / 2147483647); // Park–Miller, exact in doubles
  const nodes: Record<string, SimNode> = {};
  let now = 0, double = 0, held = 0, samples = 0;
  const pending: { at: number; node: string; d: OwnershipEmitted; lease: number | null; gen: number }[] = [];
  let gens = 0;
  // The witness runs the same machine: it never has an executor heartbeat of its own, so it only votes.
  for (const n of VOTERS) {
    const node: SimNode = { name: n, m: machine(n), exec: { holds: null, leaseUntil: 0, gen: 0 }, lastHeard: new Map(), viewSent: new Map(), last: { owner: null, release: null } };
    node.m.a.on("decision", (d) => {
      ++gens;
      node.last = d.role === "owner" ? { owner: { generation: gens, term: d.term }, release: null } : { owner: node.last.owner, release: node.last.owner ? { generation: gens, at: now } : null };
      pending.push({ at: now + 3 + rand() * 10, node: n, d, lease: leaseFor(node.m.a.getSnapshot().context.s, now), gen: gens });
    });
    nodes[n] = node;
  }
  // A cut link buffers (TCP under a stalled bus route): its messages arrive, old, once it heals.
  type Msg = { at: number; sent: number; to: string; from: string; kind: "hb" | "view"; holds?: number | null; hears?: Record<string, number>; votes?: Record<string, string | null>; eligible?: boolean; owns?: Record<string, number | null>; acks?: Record<string, number> };
  const queue: Msg[] = [];
  const linked = (a: string, b: string) => a === b || !cut(now).has([a, b].sort().join("|"));
  const send = (from: string, kind: "hb" | "view", extra: Partial<Msg>) => {
    for (const to of VOTERS) queue.push({ at: now + (from === to ? 1 : 1 + rand() * 15), sent: now, to, from, kind, ...extra });
  };
  for (now = 0; now <= ms; now += 5) {
    const due = (x: Msg) => x.at <= now && linked(x.from, x.to);
    for (const q of queue.filter(due)) {
      const node = nodes[q.to]!;
      const at = heardAt(now, q.sent);
      node.lastHeard.set(q.from, Math.max(node.lastHeard.get(q.from) ?? -Infinity, at));
      if (q.kind === "hb") node.m.a.send({ type: "HEARTBEAT", now, at, node: q.from, priority: PRIO[q.from]!, holds: q.holds!, faults: [], eventId: "x" });
      else if (q.from !== q.to) { node.viewSent.set(q.from, q.sent); node.m.a.send({ type: "VIEW", now, at, voter: q.from, hears: q.hears!, canOwn: q.eligible!, eligible: { web: q.eligible! }, votes: q.votes, owns: q.owns, acks: acks ? q.acks : undefined }); }
    }
    queue.splice(0, queue.length, ...queue.filter((x) => !due(x)));
    // executors apply decisions after a short delay; leases run out on their own
    for (const p of pending.filter((x) => x.at <= now)) {
      const e = nodes[p.node]!.exec;
      if (p.d.role === "owner") { e.holds = p.d.term; e.leaseUntil = p.lease === null ? Infinity : now + p.lease; } else e.holds = null;
      e.gen = p.gen;
    }
    pending.splice(0, pending.length, ...pending.filter((x) => x.at > now));
    for (const n of VOTERS) {
      const node = nodes[n]!;
      if (node.exec.holds !== null && now > node.exec.leaseUntil) node.exec.holds = null;
      if (now % 25 === 0) {
        node.m.a.send({ type: "TICK", now });
        const s = node.m.a.getSnapshot().context.s;
        const lease = leaseFor(s, now);
        if (lease !== null && node.exec.holds === s.term) node.exec.leaseUntil = now + lease; // local renewal
      }
    }
    // heartbeats and views every 50 ms, each node on its own phase
    for (const [i, n] of VOTERS.entries()) {
      if ((now + i * 15) % 50 !== 0) continue;
      const node = nodes[n]!;
      const s = node.m.a.getSnapshot().context.s;
      if (n !== "w") send(n, "hb", { holds: node.exec.holds });
      const owns = n === "w" ? null : acks ? ownsForView(s, now, { at: now, holds: node.exec.holds, generation: node.exec.gen }, node.last) : s.role === "owner" ? s.term : null;
      const ack = Object.fromEntries([...node.viewSent].filter(([v]) => now - (node.lastHeard.get(v) ?? -Infinity) <= 300));
      send(n, "view", { hears: hearsOf(node.lastHeard, n, now, 300), votes: { web: s.vote ?? null }, eligible: n !== "w" && selfEligible(s, now), owns: { web: owns }, acks: ack });
    }
    const holders = ["lb1", "lb2"].filter((n) => nodes[n]!.exec.holds !== null);
    samples++;
    if (holders.length > 1) double++;
    if (holders.length) held++;
  }
  return { double, held, samples };
}

test("heardAt: a message delivered late counts from its sender's time (+ skew), never later than its arrival", () => {
  assert.equal(heardAt(5000, 1000), 1050, "buffered 4 s on a stalled link: old news");
  assert.equal(heardAt(1010, 1000), 1010);
  assert.equal(heardAt(1000, 3000), 1000, "a sender clock ahead never extends a vote");
  assert.equal(heardAt(1000, NaN), 1000);
});

test("simulated cluster: random partitions (cut links buffer and deliver late), latency up to 16 ms — never two holders at one instant, and an owner most of the time", () => {
  const pairs = ["lb1|lb2", "lb1|w", "lb2|w"];
  const shapes: string[][] = [[], ["lb1|lb2"], ["lb1|w"], ["lb2|w"], ["lb1|lb2", "lb1|w"], ["lb1|lb2", "lb2|w"], ["lb1|w", "lb2|w"], pairs];
  for (const seed of [1, 7, 42]) {
    let r = seed;
    const plan: { from: number; cut: Set<string> }[] = [];
    for (let t = 2000; t < 60_000; t += 700 + ((r = (r * 48271) % 2147483647) % 2500)) plan.push({ from: t, cut: new Set(shapes[r % shapes.length]) });
    const cut = (t: number) => [...plan].reverse().find((p) => p.from <= t)?.cut ?? new Set<string>();
    for (const acks of seed === 1 ? [true, false] : [true]) { // the timed hold alone once, for comparison
      const res = simulate(60_000, cut, seed, acks);
      assert.equal(res.double, 0, `seed ${seed}, acks ${acks}: ${res.double} samples with two holders`);
      console.log(`# seed ${seed}, ${acks ? "acknowledged release" : "timed hold only"}: owner present ${(100 * res.held / res.samples).toFixed(1)} % of ${res.samples} samples, ${plan.length} partitions, 0 double`);
      assert.ok(res.held / res.samples > 0.6, `seed ${seed}: owned ${(100 * res.held / res.samples).toFixed(1)} % of the time`);
    }
  }
});

test("simulated cluster without a witness (VRRP mode) does show split brain under a partition — documented behaviour", () => {
  // Same simulation, but lb1 and lb2 see only each other as voters: cut their link for 2 s.
  const lb1 = machine("lb1", { voters: ["lb1", "lb2"] }), lb2 = machine("lb2", { voters: ["lb1", "lb2"] });
  let t = 0;
  for (; t <= 600; t += 50) for (const m of [lb1, lb2]) { m.hb("lb1", lb1.role() === "owner" ? 1 : null, t); m.hb("lb2", lb2.role() === "owner" ? 1 : null, t); }
  assert.equal(lb1.role(), "owner");
  for (; t <= 1200; t += 50) { lb1.hb("lb1", 1, t); lb2.hb("lb2", lb2.role() === "owner" ? 2 : null, t); }
  assert.equal(lb2.role(), "owner", "both own while partitioned");
  lb1.hb("lb2", 2, t);
  assert.equal(lb1.role(), "backup", "healed: the older term lets go at once");
});

void (null as unknown as Actor<typeof ownershipMachine>);
