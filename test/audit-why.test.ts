// `lvsflow why` chain building and audit time parsing, on hand-made histories (no I/O).
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeEvent, type Event } from "../shared/schemas/events.ts";
import { why, renderWhy } from "../services/cli/why.ts";
import { parseTime } from "../services/cli/audit.ts";

const VS = "tcp:198.51.100.50:80";
const T0 = Date.parse("2026-11-25T14:31:00.000Z");
const at = (ms: number) => new Date(T0 + ms);
const src = (service: "prober" | "controller" | "executor" | "cli", node: string) => ({ service, node });
const pool = { vs: VS, protocol: "tcp" as const, family: "ipv4" as const, address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: null, fallback: null };

function failureHistory(): Event[] {
  const evs: Event[] = [];
  const res = (ms: number, prober: string, ok: boolean, streak: number, real = "203.0.113.11:80") => {
    const e = makeEvent("health.result", { vs: VS, real, prober, ok, streak, check: "connect", latencyMs: 1.2, error: ok ? null : "ECONNREFUSED", httpStatus: null, matched: null }, { source: src("prober", prober), now: at(ms), configVersion: "v1" });
    evs.push(e);
    return e;
  };
  res(-5000, "lb1", true, 3);
  res(0, "lb1", false, 1);
  res(100, "lb2", false, 1);
  res(1000, "lb1", false, 2);
  const tip = res(1100, "lb2", false, 2);
  res(1200, "lb1", true, 5, "203.0.113.12:80"); // another real: not evidence
  for (const [node, ms] of [["lb1", 1105], ["lb2", 1110]] as const) {
    const d = makeEvent("decision.pool", {
      node, generation: 100 + ms, fallbackActive: false, pool: { ...pool, reals: [{ address: "203.0.113.12", port: 80, forwarding: "masq", weight: 1, lowerThreshold: null, upperThreshold: null }] },
      changes: [{ real: "203.0.113.11:80", from: "up", to: "down", why: "failurecount 2 reached; vantage policy all; lb1: 2 consecutive failure(s); lb2: 2 consecutive failure(s)" }],
    }, { source: src("controller", node), causationId: tip.id, now: at(ms), configVersion: "v1" });
    evs.push(d);
    evs.push(makeEvent("executor.applied", { node, kind: "pool", generation: d.data.generation, ok: true, ops: ["flush chain ip lvsflow svc-1", "add rule ip lvsflow svc-1 …"], durationMs: 3.5, error: null, readback: "2 services", subject: null },
      { source: src("executor", node), causationId: d.id, now: at(ms + 40), configVersion: "v1" }));
  }
  return evs.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
}

test("why <real>: evidence of every prober's failing run, the tipping result, each node's decision and kernel change, latencies", () => {
  const r = why("203.0.113.11:80", T0 + 5000, failureHistory());
  assert.equal(r.kind, "real");
  assert.equal(r.chains.length, 2);
  const c = r.chains[0]!;
  assert.ok(c.complete);
  assert.deepEqual(c.steps.map((s) => s.kind), ["evidence", "evidence", "evidence", "evidence", "decision", "kernel"]);
  assert.match(c.steps[3]!.text, /tipped the decision/);
  assert.equal(c.steps[0]!.time, at(0).toISOString(), "the run starts at the first failure, not the earlier success");
  assert.equal(c.latency.detectionMs, 1105);
  assert.equal(c.latency.decideMs, 5);
  assert.equal(c.latency.applyMs, 40);
  assert.equal(c.latency.kernelMs, 3.5);
  assert.equal(c.latency.totalMs, 1145);
  assert.deepEqual(c.steps[5]!.ops, ["flush chain ip lvsflow svc-1", "add rule ip lvsflow svc-1 …"]);
  const text = renderWhy(r);
  assert.match(text, /real 203\.0\.113\.11:80 of tcp:198\.51\.100\.50:80 went DOWN — decided by lb1/);
  assert.match(text, /latency {3}first evidence → decision 1105 ms · last evidence → decision 5 ms · decision → kernel done 40 ms · kernel ops 4 ms · total 1145 ms/);
  assert.match(text, /\[\+5 ms\]/);
});

test("why at a time before the change finds nothing; an address without port finds the real", () => {
  assert.equal(why("203.0.113.11:80", T0 + 500, failureHistory()).chains.length, 0);
  assert.equal(why("203.0.113.11", T0 + 5000, failureHistory()).kind, "real");
});

test("why <vip>: a takeover caused by a silent peer, with its last heartbeat from the journal", () => {
  const evs: Event[] = [];
  const peer = makeEvent("peer.state", { observer: "lb2", peer: "lb1", alive: false, lastSeenMsAgo: 310 }, { source: src("controller", "lb2"), now: at(0) });
  const d = makeEvent("decision.owner", { node: "lb2", generation: 5, group: "web", role: "owner", term: 4, owner: "lb2", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], garpScheduleMs: [0], why: "owner lb1 silent for 310 ms (dead time 300 ms); highest-priority live node" },
    { source: src("controller", "lb2"), causationId: peer.id, now: at(1) });
  const applied = makeEvent("executor.applied", { node: "lb2", kind: "owner", generation: 5, ok: true, ops: ["ip addr add 198.51.100.50/24 dev front", "garp 198.51.100.50 at 0 ms"], durationMs: 20, error: null, readback: "web: held", subject: null },
    { source: src("executor", "lb2"), causationId: d.id, now: at(30) });
  evs.push(peer, d, applied);
  const r = why("198.51.100.50", T0 + 1000, evs, { heartbeat: (observer, p, before) => (observer === "lb2" && p === "lb1" && before === T0 ? T0 - 310 : null), input: () => null });
  assert.equal(r.kind, "vip");
  assert.equal(r.chains.length, 1);
  const c = r.chains[0]!;
  assert.ok(c.complete);
  assert.deepEqual(c.steps.map((s) => s.kind), ["evidence", "cause", "decision", "kernel"]);
  assert.match(c.steps[0]!.text, /last heartbeat of lb1 heard by lb2/);
  assert.equal(c.steps[1]!.afterMs, 310);
  assert.equal(c.latency.totalMs, 340);
  assert.match(renderWhy(r), /group web: lb2 became OWNER \(term 4\)/);
});

test("why: a cause that is telemetry (a heartbeat) is found in the deciding controller's input journal", () => {
  const d = makeEvent("decision.owner", { node: "lb1", generation: 5, group: "web", role: "owner", term: 4, owner: "lb1", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], garpScheduleMs: [0], why: "preempt: priority 150 > lb2's 100" },
    { source: src("controller", "lb1"), causationId: "hb-123", now: at(0) });
  const applied = makeEvent("executor.applied", { node: "lb1", kind: "owner", generation: 5, ok: true, ops: ["ip addr add 198.51.100.50/24 dev front"], durationMs: 20, error: null, readback: "web: held", subject: null },
    { source: src("executor", "lb1"), causationId: d.id, now: at(40) });
  const journal = {
    heartbeat: () => null,
    input: (node: string, id: string, before: number) => (node === "lb1" && id === "hb-123" && before === T0 ? { t: T0 - 2, machine: "owner:web", e: { type: "HEARTBEAT", node: "lb2", priority: 100, holds: 3, faults: [], eventId: "hb-123" } } : null),
  };
  const r = why("web", T0 + 1000, [d, applied], journal);
  const c = r.chains[0]!;
  assert.ok(c.complete);
  assert.deepEqual(c.steps.map((s) => s.kind), ["cause", "decision", "kernel"]);
  assert.match(c.steps[0]!.text, /heartbeat of lb2 heard by lb1 \(priority 100, holds term 3\)/);
  assert.equal(c.steps[1]!.afterMs, 2);
  const bare = why("web", T0 + 1000, [d, applied]);
  assert.match(bare.chains[0]!.steps[0]!.text, /not in the audit history/);
  assert.equal(bare.chains[0]!.complete, false);
});

test("why <vip:port>: a change under a new configuration version names the push and the reload", () => {
  const evs: Event[] = [];
  const mk = (ms: number, version: string, weight: number) => makeEvent("decision.pool", {
    node: "lb1", generation: 100_000 + ms, fallbackActive: false, changes: [],
    pool: { ...pool, reals: [{ address: "203.0.113.12", port: 80, forwarding: "masq", weight, lowerThreshold: null, upperThreshold: null }] },
  }, { source: src("controller", "lb1"), now: at(ms), configVersion: version });
  evs.push(mk(-60_000, "1aaaaaaaaaaaaaaa", 1));
  evs.push(makeEvent("config.pushed", { version: "2aaaaaaaaaaaaaaa", files: ["/etc/lvsflow/lvsflow.yaml"], by: "alice@ops1" }, { source: src("cli", "ops1"), now: at(-200) }));
  const d = mk(0, "2aaaaaaaaaaaaaaa", 3);
  evs.push(d);
  evs.push(makeEvent("executor.applied", { node: "lb1", kind: "pool", generation: d.data.generation, ok: true, ops: ["add rule …"], durationMs: 2, error: null, readback: null, subject: null }, { source: src("executor", "lb1"), causationId: d.id, now: at(25) }));
  const r = why("198.51.100.50:80", T0 + 1000, evs);
  assert.equal(r.chains.length, 1);
  const c = r.chains[0]!;
  assert.ok(c.complete);
  assert.deepEqual(c.steps.map((s) => s.kind), ["config", "decision", "kernel"]);
  assert.match(c.steps[0]!.text, /alice@ops1 pushed configuration 2aaaaaaaaaaaaaaa/);
  assert.equal(c.steps[1]!.afterMs, 200);
  assert.match(c.title, /changed with configuration 2aaaaaaaaaaaaaaa/);
});

test("parseTime: ISO, HH:MM, relative and now", () => {
  const now = Date.parse("2026-11-25T15:00:00.000Z");
  assert.equal(parseTime("2026-11-25T14:31:00Z", now), Date.parse("2026-11-25T14:31:00Z"));
  assert.equal(parseTime("10m", now), now - 600_000);
  assert.equal(parseTime("now", now), now);
  const hm = new Date(parseTime("14:31:05", now));
  assert.deepEqual([hm.getHours(), hm.getMinutes(), hm.getSeconds()], [14, 31, 5]);
  assert.throws(() => parseTime("yesterday-ish", now), /cannot read time "yesterday-ish"/);
});
