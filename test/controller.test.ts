// Pure tests of the controller's decision logic: no bus, no clock, no kernel.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createActor } from "xstate";
import { VirtualService } from "../shared/schemas/config.ts";
import { poolMachine, type PoolDecisionEmitted } from "../services/controller/pool-machine.ts";
import { ownershipMachine, type OwnershipEmitted } from "../services/controller/ownership-machine.ts";
import { step, vantageStreak, type PoolState } from "../services/controller/pool-logic.ts";

function seedVs(over: Partial<Record<string, unknown>> = {}) {
  return VirtualService.parse({
    id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: { timeout: 120, netmask: "255.255.255.0" }, quiescent: false,
    check: { type: "connect", service: "http", request: "/aaaa.html", receive: "aaaa", port: null, interval: 5, timeout: 5, failureCount: 1 },
    fallback: { address: "127.0.0.1", port: 80, forwarding: "masq" },
    reals: [{ address: "203.0.113.11", port: 80, forwarding: "masq", weight: 1 }, { address: "203.0.113.12", port: 80, forwarding: "masq", weight: 1 }],
    ...over,
  });
}

function poolHarness(vs = seedVs(), policy: "any" | "all" | "majority" = "all") {
  const out: PoolDecisionEmitted[] = [];
  const a = createActor(poolMachine, { input: { vs, policy, now: 0 } });
  a.on("decision", (d) => void out.push(d));
  a.start();
  let n = 0;
  // `group`: the prober's probe group; `at`: when the result counts from (a summary's is older than now).
  const health = (real: string, ok: boolean, streak: number, now: number, prober = "lb1", group?: string, at = now) =>
    a.send({ type: "HEALTH", now, eventId: `e${++n}`, real, prober, ...(group ? { group } : {}), ok, streak, at, error: ok ? null : "ECONNREFUSED", check: "connect" });
  return { a, out, health };
}

test("pool: no decision until every real is checked, then both reals in the pool", () => {
  const { out, health } = poolHarness();
  health("203.0.113.11:80", true, 1, 100);
  assert.equal(out.length, 0, "one real still unknown: wait");
  health("203.0.113.12:80", true, 1, 200);
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.pool.reals.map((r) => [r.address, r.weight]), [["203.0.113.11", 1], ["203.0.113.12", 1]]);
  assert.equal(out[0]!.pool.fallback, null);
});

test("pool: holdoff expires with an unchecked real: publish what is known", () => {
  const { a, out, health } = poolHarness();
  health("203.0.113.11:80", true, 1, 100);
  a.send({ type: "TICK", now: 11_001 });
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.pool.reals.map((r) => r.address), ["203.0.113.11"]);
});

test("pool: quiescent=no removes a failed real (ldirectord §1.7), failurecount counts consecutive failures", () => {
  const vs = seedVs({ check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 1, timeout: 1, failureCount: 3 } });
  const { out, health } = poolHarness(vs);
  health("203.0.113.11:80", true, 1, 0); health("203.0.113.12:80", true, 1, 0);
  health("203.0.113.11:80", false, 1, 1000);
  health("203.0.113.11:80", false, 2, 2000);
  assert.equal(out.length, 1, "soft failures 1/3 and 2/3 change nothing");
  health("203.0.113.11:80", false, 3, 3000);
  assert.equal(out.length, 2);
  assert.deepEqual(out[1]!.pool.reals.map((r) => r.address), ["203.0.113.12"]);
  assert.equal(out[1]!.changes[0]!.to, "down");
  assert.match(out[1]!.changes[0]!.why, /failurecount 3/);
  assert.equal(out[1]!.causationId, "e5");
});

test("pool: quiescent=yes keeps a failed real at weight 0", () => {
  const { out, health } = poolHarness(seedVs({ quiescent: true }));
  health("203.0.113.11:80", true, 1, 0); health("203.0.113.12:80", true, 1, 0);
  health("203.0.113.12:80", false, 1, 1000);
  assert.deepEqual(out.at(-1)!.pool.reals.map((r) => [r.address, r.weight]), [["203.0.113.11", 1], ["203.0.113.12", 0]]);
});

test("pool: fallback when no real is up, removed when one returns (ldirectord §1.7)", () => {
  const { a, out, health } = poolHarness(seedVs({ quiescent: true }));
  health("203.0.113.11:80", true, 1, 0); health("203.0.113.12:80", true, 1, 0);
  health("203.0.113.11:80", false, 1, 1000);
  health("203.0.113.12:80", false, 1, 1000);
  const last = out.at(-1)!;
  assert.equal(last.fallbackActive, true);
  assert.deepEqual(last.pool.fallback, { address: "127.0.0.1", port: 80, forwarding: "masq" });
  assert.equal(String(a.getSnapshot().value), "fallback");
  health("203.0.113.12:80", true, 1, 2000);
  assert.equal(out.at(-1)!.pool.fallback, null);
  assert.equal(String(a.getSnapshot().value), "serving");
});

test("pool quorum (keepalived's quorum/hysteresis): the fallback replaces every real below the live weight, with hysteresis both ways", () => {
  const R = (n: number) => ({ address: `203.0.113.${10 + n}`, port: 80, forwarding: "masq", weight: n === 3 ? 2 : 1 });
  // Weights 1, 1, 2 (total 4); quorum 3, hysteresis 1: lost below 2, regained at 4.
  const { a, out, health } = poolHarness(seedVs({ quorum: 3, hysteresis: 1, quiescent: true, reals: [R(1), R(2), R(3)] }));
  for (const n of [1, 2, 3]) health(`203.0.113.${10 + n}:80`, true, 1, 0);
  assert.deepEqual(out.at(-1)!.pool.reals.map((r) => r.weight), [1, 1, 2]);
  assert.equal(out.at(-1)!.fallbackActive, false);
  health("203.0.113.13:80", false, 1, 1000); // live weight 2: still ≥ 3 − 1
  assert.equal(out.at(-1)!.fallbackActive, false, "within the hysteresis: kept");
  health("203.0.113.12:80", false, 1, 2000); // live weight 1 < 2
  const lost = out.at(-1)!;
  assert.equal(lost.fallbackActive, true);
  assert.deepEqual(lost.pool.fallback, { address: "127.0.0.1", port: 80, forwarding: "masq" });
  assert.deepEqual(lost.pool.reals.map((r) => [r.address, r.weight]), [["203.0.113.11", 0], ["203.0.113.12", 0], ["203.0.113.13", 0]], "the real still up is replaced too (quiescent: weight 0)");
  assert.match(lost.changes[0]!.why, /quorum lost \(live weight 1 < 2 = quorum 3 − hysteresis 1\): the fallback replaces every real/);
  assert.equal(String(a.getSnapshot().value), "fallback");
  health("203.0.113.12:80", true, 1, 3000); // live weight 2 < 3 + 1
  assert.equal(out.at(-1)!.fallbackActive, true, "not regained before quorum + hysteresis");
  health("203.0.113.13:80", true, 1, 4000); // live weight 4
  assert.equal(out.at(-1)!.fallbackActive, false);
  assert.deepEqual(out.at(-1)!.pool.reals.map((r) => r.weight), [1, 1, 2]);
  assert.match(out.at(-1)!.changes[0]!.why, /quorum regained \(live weight 4 ≥ 4 = quorum 3 \+ hysteresis 1\)/);
});

test("pool quorum left out (1/0): ldirectord's rule, a weight-0 real that is up keeps the fallback away", () => {
  const { out, health } = poolHarness(seedVs({ reals: [{ address: "203.0.113.11", port: 80, forwarding: "masq", weight: 0 }] }));
  health("203.0.113.11:80", true, 1, 0);
  assert.equal(out.at(-1)!.fallbackActive, false);
});

test("pool: rise threshold brings a real back only after N successes", () => {
  const vs = seedVs({ check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 1, timeout: 1, failureCount: 1, riseCount: 3 } });
  const { out, health } = poolHarness(vs);
  health("203.0.113.11:80", true, 3, 0); health("203.0.113.12:80", true, 3, 0);
  health("203.0.113.11:80", false, 1, 1000);
  health("203.0.113.11:80", true, 1, 2000); health("203.0.113.11:80", true, 2, 3000);
  assert.equal(out.at(-1)!.pool.reals.length, 1);
  health("203.0.113.11:80", true, 3, 4000);
  assert.equal(out.at(-1)!.pool.reals.length, 2);
});

test("pool: vantage policy all: one prober's broken view does not remove a real", () => {
  const { out, health } = poolHarness(seedVs(), "all");
  for (const p of ["lb1", "lb2"]) { health("203.0.113.11:80", true, 1, 0, p); health("203.0.113.12:80", true, 1, 0, p); }
  health("203.0.113.11:80", false, 1, 1000, "lb1");
  assert.equal(out.at(-1)!.pool.reals.length, 2);
  health("203.0.113.11:80", false, 1, 1100, "lb2");
  assert.equal(out.at(-1)!.pool.reals.length, 1);
});

test("pool: vantage policy any removes on one prober's word; stale probers do not vote", () => {
  const { out, health } = poolHarness(seedVs(), "any");
  for (const p of ["lb1", "lb2"]) { health("203.0.113.11:80", true, 1, 0, p); health("203.0.113.12:80", true, 1, 0, p); }
  health("203.0.113.11:80", false, 1, 1000, "lb1");
  assert.equal(out.at(-1)!.pool.reals.length, 1);
});

const R1 = "203.0.113.11:80", R2 = "203.0.113.12:80";

test("pool: a probe group is one vantage point: a dead member's stale up does not hold a removal under all", () => {
  // Control: the same results from probers without a group. lb1's last word (up) votes on for
  // freshness (3 intervals + timeout = 20 s), so lb2's failure alone cannot remove the real.
  const plain = poolHarness(seedVs(), "all");
  plain.health(R1, true, 1, 0, "lb1"); plain.health(R2, true, 1, 0, "lb1");
  plain.health(R1, false, 1, 1500, "lb2");
  assert.equal(plain.out.at(-1)!.pool.reals.length, 2, "without a group lb1 still votes up");
  plain.a.send({ type: "TICK", now: 20_001 });
  assert.equal(plain.out.at(-1)!.pool.reals.length, 1, "only once lb1's word is stale");

  // lb1 and lb2 in group g1: lb1 checked, died at 1000; lb2 took the real over and sees it fail.
  const { out, health } = poolHarness(seedVs(), "all");
  health(R1, true, 1, 0, "lb1", "g1"); health(R2, true, 1, 0, "lb1", "g1");
  health(R1, false, 1, 1500, "lb2", "g1");
  assert.deepEqual(out.at(-1)!.pool.reals.map((r) => r.address), ["203.0.113.12"], "removed on the group's newest word");
  assert.match(out.at(-1)!.changes[0]!.why, /vantage policy all; group g1 \(via prober lb2\): 1 consecutive failure/);
});

test("pool: two members of one group count once; a group and an ungrouped prober are two vantage points", () => {
  // majority over {group g1, lb3}: both members of g1 seeing the real down (a handover) are one vote of two.
  const { out, health } = poolHarness(seedVs(), "majority");
  for (const [p, g] of [["lb1", "g1"], ["lb3", undefined]] as const) { health(R1, true, 1, 0, p, g); health(R2, true, 1, 0, p, g); }
  health(R1, false, 1, 1000, "lb1", "g1");
  health(R1, false, 1, 1100, "lb2", "g1");
  assert.equal(out.at(-1)!.pool.reals.length, 2, "one of two vantage points down is no majority");
  health(R1, false, 1, 1200, "lb3");
  assert.equal(out.at(-1)!.pool.reals.length, 1);
  const why = out.at(-1)!.changes[0]!.why;
  assert.match(why, /group g1 \(via prober lb2, 1 of them seen by another member before the handover\): 2 consecutive failure/);
  assert.match(why, /lb3: 1 consecutive failure/);

  // all over {group g1, lb3}: the group down and lb3 up keeps the real.
  const b = poolHarness(seedVs(), "all");
  for (const [p, g] of [["lb1", "g1"], ["lb3", undefined]] as const) { b.health(R1, true, 1, 0, p, g); b.health(R2, true, 1, 0, p, g); }
  b.health(R1, false, 1, 1000, "lb2", "g1");
  assert.equal(b.out.at(-1)!.pool.reals.length, 2, "lb3 still sees it up");
  b.health(R1, false, 1, 1100, "lb3");
  assert.equal(b.out.at(-1)!.pool.reals.length, 1);
});

test("pool: within a group a late (older) result never overwrites a newer one", () => {
  const { a, out, health } = poolHarness(seedVs(), "all");
  health(R1, true, 1, 0, "lb1", "g1"); health(R2, true, 1, 0, "lb1", "g1");
  health(R1, false, 1, 2000, "lb2", "g1");
  assert.equal(out.at(-1)!.pool.reals.length, 1);
  // lb1's last summary (its check at 1500: up x5) arrives after lb2's result.
  health(R1, true, 5, 2100, "lb1", "g1", 1500);
  assert.equal(out.at(-1)!.pool.reals.length, 1, "the late up did not bring the real back");
  const rec = a.getSnapshot().context.pool.reals[R1]!;
  assert.deepEqual(Object.keys(rec.probers), ["group:g1"]);
  assert.equal(rec.probers["group:g1"]!.prober, "lb2");
  health(R1, true, 1, 3000, "lb2", "g1");
  assert.equal(out.at(-1)!.pool.reals.length, 2, "a newer up does");
});

test("pool: a group's streak goes on across a handover, never counts two members' runs twice", () => {
  const vs = seedVs({ check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 1, timeout: 1, failureCount: 3 } });
  const { out, health } = poolHarness(vs, "all");
  health(R1, true, 1, 0, "lb1", "g1"); health(R2, true, 1, 0, "lb1", "g1");
  health(R1, false, 1, 1000, "lb1", "g1"); health(R1, false, 2, 2000, "lb1", "g1");
  // lb1 dies; lb2's first check of the real is the group's third failure in a row.
  health(R1, false, 1, 3000, "lb2", "g1");
  assert.equal(out.length, 2);
  assert.deepEqual(out[1]!.pool.reals.map((r) => r.address), ["203.0.113.12"]);
  assert.match(out[1]!.changes[0]!.why, /group g1 \(via prober lb2, 2 of them seen by another member before the handover\): 3 consecutive/);

  // Both members checking for a moment (a membership change): the longer run counts, not the sum.
  const held = { ok: false, streak: 2, at: 2000, state: "up" as const, error: null, check: "connect", prober: "lb1", group: "g1", carried: 0 };
  const input = (prober: string, streak: number, at: number) => ({ real: R1, prober, group: "g1", ok: false, streak, at, error: null, check: "connect" });
  assert.deepEqual(vantageStreak(held, "group:g1", input("lb2", 2, 2100), vs), { streak: 2, carried: 0 });
  assert.deepEqual(vantageStreak(held, "group:g1", input("lb2", 3, 2100), vs), { streak: 3, carried: 0 });
  assert.deepEqual(vantageStreak(held, "group:g1", input("lb1", 3, 3000), vs), { streak: 3, carried: 0 }, "the same member goes on");
  assert.deepEqual(vantageStreak(held, "group:g1", input("lb2", 1, 9000), vs), { streak: 1, carried: 0 }, "no carry across a stale gap");
  assert.deepEqual(vantageStreak({ ...held, ok: true }, "group:g1", input("lb2", 1, 2100), vs), { streak: 1, carried: 0 }, "no carry across a different result");
  assert.deepEqual(vantageStreak(held, "lb2", { ...input("lb2", 1, 2100), group: null }, vs), { streak: 1, carried: 0 }, "no group, no carry");
});

test("pool: a record from before probe groups (old snapshot) still votes, and goes once its prober reports for a group", () => {
  const vs = seedVs();
  // A context as an older controller persisted it: keyed by prober, no prober/group fields.
  const old: PoolState = { fallbackActive: false, reals: {
    [R1]: { state: "up", why: "x", probers: { lb1: { ok: true, streak: 4, at: 0, state: "up", error: null, check: "connect" } } },
    [R2]: { state: "up", why: "x", probers: { lb1: { ok: true, streak: 4, at: 0, state: "up", error: null, check: "connect" } } },
  } };
  let r = step(old, vs, "all", 1000, { real: R1, prober: "lb2", ok: false, streak: 1, at: 1000, error: "ECONNREFUSED", check: "connect" });
  assert.deepEqual(r.transitions, [], "lb1's old record still votes up");
  r = step(old, vs, "all", 1000, { real: R1, prober: "lb1", group: "g1", ok: false, streak: 1, at: 1000, error: "ECONNREFUSED", check: "connect" });
  assert.deepEqual(Object.keys(r.state.reals[R1]!.probers), ["group:g1"], "lb1 votes through its group now, not on its own as well");
  assert.equal(r.transitions[0]?.to, "down");
  assert.equal(r.state.reals[R2]!.probers.lb1!.streak, 4, "the other real's old record is untouched");
});

function ownHarness(self: string, opts: { preempt?: boolean; preemptDelayMs?: number } = {}) {
  const out: OwnershipEmitted[] = [];
  const a = createActor(ownershipMachine, { input: { self, group: "web", priority: 0, preempt: opts.preempt ?? true, preemptDelayMs: opts.preemptDelayMs ?? 0, deadMs: 300, now: 0 } });
  a.on("decision", (d) => void out.push(d));
  a.start();
  let n = 0;
  const hb = (node: string, priority: number, holds: number | null, now: number, faults: string[] = []) =>
    a.send({ type: "HEARTBEAT", now, node, priority, holds, faults, eventId: `h${++n}` });
  return { a, out, hb };
}

test("ownership: the highest-priority live node takes the group with term 1, the other stays backup", () => {
  const lb1 = ownHarness("lb1"), lb2 = ownHarness("lb2");
  for (let t = 0; t <= 400; t += 50) for (const h of [lb1, lb2]) { h.hb("lb1", 150, null, t); h.hb("lb2", 100, null, t); }
  assert.deepEqual(lb1.out.map((d) => [d.role, d.term]), [["owner", 1]]);
  assert.equal(lb2.out.length, 0);
});

test("ownership: backup takes over after the dead time with a larger term; releases when the old owner comes back with preempt", () => {
  const lb2 = ownHarness("lb2");
  let t = 0;
  for (; t <= 500; t += 50) { lb2.hb("lb1", 150, 1, t); lb2.hb("lb2", 100, null, t); }
  // lb1 goes silent at t=500
  for (; t <= 750; t += 50) { lb2.hb("lb2", 100, null, t); }
  assert.equal(lb2.out.length, 0, "before the dead time: no takeover");
  for (; t <= 900; t += 50) { lb2.hb("lb2", 100, null, t); }
  assert.deepEqual(lb2.out.map((d) => [d.role, d.term]), [["owner", 2]]);
  assert.match(lb2.out[0]!.why, /lb1 silent for \d+ ms/);
  // lb1 returns and (preempt) takes term 3: lb2 must release at once
  lb2.hb("lb1", 150, 3, t);
  assert.deepEqual(lb2.out.at(-1)!.role, "backup");
  assert.equal(lb2.out.at(-1)!.term, 3);
});

test("ownership: a returning higher-priority node preempts only with preempt=true", () => {
  for (const preempt of [true, false]) {
    const lb1 = ownHarness("lb1", { preempt });
    for (let t = 0; t <= 500; t += 50) { lb1.hb("lb2", 100, 2, t); lb1.hb("lb1", 150, null, t); }
    assert.deepEqual(lb1.out.map((d) => [d.role, d.term]), preempt ? [["owner", 3]] : []);
  }
});

test("ownership: preempt delay waits before taking back", () => {
  const lb1 = ownHarness("lb1", { preemptDelayMs: 1000 });
  let t = 0;
  for (; t <= 1000; t += 50) { lb1.hb("lb2", 100, 2, t); lb1.hb("lb1", 150, null, t); }
  assert.equal(lb1.out.length, 0);
  for (; t <= 1500; t += 50) { lb1.hb("lb2", 100, 2, t); lb1.hb("lb1", 150, null, t); }
  assert.deepEqual(lb1.out.map((d) => d.role), ["owner"]);
  assert.match(lb1.out[0]!.why, /^preempt: priority 150 > lb2's 100 \(preferred for 1\d\d\d ms, preempt delay 1000 ms\)$/, "the why names the delay it waited");
});

test("ownership: a node without bus keeps its role and decides nothing", () => {
  const lb1 = ownHarness("lb1");
  for (let t = 0; t <= 400; t += 50) { lb1.hb("lb1", 150, null, t); lb1.hb("lb2", 100, null, t); }
  assert.equal(lb1.out.at(-1)!.role, "owner");
  lb1.a.send({ type: "BUS", now: 450, up: false });
  lb1.a.send({ type: "TICK", now: 5000 });
  assert.equal(String(lb1.a.getSnapshot().value), "frozen");
  assert.equal(lb1.out.length, 1, "no release although no heartbeat was heard for seconds");
  lb1.a.send({ type: "BUS", now: 5000, up: true });
  lb1.a.send({ type: "TICK", now: 5100 });
  assert.equal(lb1.out.length, 1, "fresh dead time after reconnect");
});

test("ownership: own fault makes the owner step down", () => {
  const lb1 = ownHarness("lb1");
  for (let t = 0; t <= 400; t += 50) { lb1.hb("lb1", 150, null, t); lb1.hb("lb2", 100, null, t); }
  lb1.hb("lb1", 150, 1, 450, ["interface front down"]);
  assert.equal(lb1.out.at(-1)!.role, "backup");
  assert.match(lb1.out.at(-1)!.why, /interface front down/);
});

test("ownership: a restarted controller adopts what its executor holds (fail static)", () => {
  const lb1 = ownHarness("lb1");
  lb1.hb("lb1", 150, 7, 10);
  lb1.hb("lb2", 100, null, 20);
  for (let t = 50; t <= 500; t += 50) { lb1.hb("lb1", 150, 7, t); lb1.hb("lb2", 100, null, t); }
  assert.equal(String(lb1.a.getSnapshot().value), "owner");
  assert.equal(lb1.a.getSnapshot().context.s.term, 7);
  assert.equal(lb1.out.length, 0, "nothing to change");
});
