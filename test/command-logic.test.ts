// Pure tests of operator commands: resolving targets, the replicated override map, what overrides
// do to a pool, drain completion, conntrack parsing and the pool machine's OVERRIDE event.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createActor } from "xstate";
import { Model, VirtualService } from "../shared/schemas/config.ts";
import { CommandRequest, type OverrideEntry, type PoolSpec } from "../shared/schemas/events.ts";
import { resolveVs, resolveReals, parseReal } from "../services/commands/resolve.ts";
import { entriesFor, mergeEntries, behind, overridesFor, applyOverrides, pinFor, type OverrideMap } from "../services/commands/overrides.ts";
import { drainStatus, type ConnReport } from "../services/commands/drain.ts";
import { parseConntrack, countByReal } from "../services/commands/connections.ts";
import { buildRequest, parseDuration } from "../services/commands/cli.ts";
import { failoverTarget } from "../services/commands/client.ts";
import { poolMachine, type PoolDecisionEmitted } from "../services/controller/pool-machine.ts";
import { renderDesired } from "../services/executor/nft/render.ts";

const vsBase = (port: number, over: Record<string, unknown> = {}) => ({
  id: `tcp:198.51.100.50:${port}`, protocol: "tcp", address: "198.51.100.50", port, fwmark: null, family: "ipv4",
  scheduler: "wlc", persistence: { timeout: 120, netmask: "255.255.255.0" }, quiescent: false,
  check: { type: "connect", service: "http", request: "/aaaa.html", receive: "aaaa", port: null, interval: 5, timeout: 5, failureCount: 1 },
  fallback: { address: "127.0.0.1", port, forwarding: "masq" },
  reals: [{ address: "203.0.113.11", port, forwarding: "masq", weight: 1 }, { address: "203.0.113.12", port, forwarding: "masq", weight: 3 }],
  ...over,
});
const model = Model.parse({
  site: "lab",
  nodes: [{ name: "lb1", priority: 150 }, { name: "lb2", priority: 100 }],
  groups: [{ name: "web", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }] }],
  virtualServices: [vsBase(80), vsBase(443)],
});
const vs80 = model.virtualServices[0]!;

const req = (over: Record<string, unknown>) => CommandRequest.parse({ action: "disable", issuedBy: "alice@ops1", ...over });
let n = 0;
const cmd = (over: Record<string, unknown>, at = 1000) => ({ id: `c${String(++n).padStart(4, "0")}`, at, data: req(over) });
function apply(map: OverrideMap, over: Record<string, unknown>, at = 1000): OverrideEntry[] {
  const e = entriesFor(model, cmd(over, at));
  if (typeof e === "string") throw new Error(e);
  mergeEntries(map, e);
  return e;
}
const noDrain = () => ({ done: false, why: "test" });

test("resolve: VIP:PORT finds the tcp virtual service; unknown ones and ambiguous reals are named", () => {
  assert.equal((resolveVs(model, "198.51.100.50:80") as VirtualService).id, "tcp:198.51.100.50:80");
  assert.equal((resolveVs(model, "tcp:198.51.100.50:443") as VirtualService).id, "tcp:198.51.100.50:443");
  assert.match(resolveVs(model, "198.51.100.50:8080") as string, /no virtual service 198\.51\.100\.50:8080 \(configured: tcp:198\.51\.100\.50:80, tcp:198\.51\.100\.50:443\)/);
  assert.deepEqual(resolveReals(model, "203.0.113.11", null), [{ vs: "tcp:198.51.100.50:80", real: "203.0.113.11:80" }, { vs: "tcp:198.51.100.50:443", real: "203.0.113.11:443" }]);
  assert.deepEqual(resolveReals(model, "203.0.113.11", vs80), [{ vs: "tcp:198.51.100.50:80", real: "203.0.113.11:80" }]);
  assert.match(resolveReals(model, "203.0.113.99:80", null) as string, /not configured in any virtual service/);
  assert.match(parseReal("rs1; rm -rf /") as string, /is not a real server/);
  assert.deepEqual(parseReal("[2001:db8::5]:80"), { address: "2001:db8::5", port: 80 });
});

test("entries: each command becomes override entries; bad targets are refused with a reason", () => {
  const dis = entriesFor(model, cmd({ action: "disable", real: "203.0.113.11" })) as OverrideEntry[];
  assert.deepEqual(dis.map((e) => [e.key, e.value]), [["disabled||203.0.113.11:80", true], ["disabled||203.0.113.11:443", true]]);
  const en = entriesFor(model, cmd({ action: "enable", real: "203.0.113.11:80" })) as OverrideEntry[];
  assert.deepEqual(en.map((e) => [e.key, e.value]), [["disabled||203.0.113.11:80", null], ["drain|tcp:198.51.100.50:80|203.0.113.11:80", null]]);
  const dr = entriesFor(model, cmd({ action: "drain", vs: "198.51.100.50:80", real: "203.0.113.12", timeoutMs: 30_000 })) as OverrideEntry[];
  assert.deepEqual(dr.map((e) => [e.key, e.value]), [["drain|tcp:198.51.100.50:80|203.0.113.12:80", 30_000]]);
  const w = entriesFor(model, cmd({ action: "weight", vs: "198.51.100.50:443", real: "203.0.113.12:443", weight: 7 })) as OverrideEntry[];
  assert.deepEqual(w.map((e) => [e.key, e.value]), [["weight|tcp:198.51.100.50:443|203.0.113.12:443", 7], ["drain|tcp:198.51.100.50:443|203.0.113.12:443", null]]);
  const f = entriesFor(model, cmd({ action: "failover", group: "web", to: "lb2" })) as OverrideEntry[];
  assert.deepEqual(f.map((e) => [e.key, e.value, e.by]), [["pin|web|", "lb2", "alice@ops1"]]);
  assert.match(entriesFor(model, cmd({ action: "failover", group: "db", to: "lb2" })) as string, /no floating group db/);
  assert.match(entriesFor(model, cmd({ action: "failover", group: "web", to: "lb9" })) as string, /lb9 is not a configured node/);
  assert.match(entriesFor(model, cmd({ action: "drain", vs: "198.51.100.50:80", real: "203.0.113.11:443" })) as string, /not configured in tcp:198\.51\.100\.50:80/);
  assert.match(entriesFor(model, cmd({ action: "maintenance", real: "203.0.113.11" })) as string, /on or off/);
  assert.match(entriesFor(model, cmd({ action: "weight", real: "203.0.113.11" })) as string, /needs a virtual service/);
});

test("merge: the later command wins whatever the order heard; a clear beats an older set; equal times break on the id", () => {
  const a: OverrideMap = new Map(), b: OverrideMap = new Map();
  const on = entriesFor(model, cmd({ action: "maintenance", real: "203.0.113.11:80", on: true }, 1000)) as OverrideEntry[];
  const off = entriesFor(model, cmd({ action: "maintenance", real: "203.0.113.11:80", on: false }, 2000)) as OverrideEntry[];
  mergeEntries(a, on); mergeEntries(a, off);
  mergeEntries(b, off); assert.deepEqual(mergeEntries(b, on), [], "an older set does not undo a newer clear");
  assert.deepEqual([...a.values()], [...b.values()]);
  assert.equal(a.get("maintenance||203.0.113.11:80")!.value, null);
  assert.equal(behind(a, [...b.values()]), false);
  assert.equal(behind(a, on), true, "a peer holding only the older entry is behind");
  const x = { ...on[0]!, commandId: "zzz", value: true }, y = { ...on[0]!, commandId: "aaa", value: null };
  const m1: OverrideMap = new Map(), m2: OverrideMap = new Map();
  mergeEntries(m1, [x, y]); mergeEntries(m2, [y, x]);
  assert.equal(m1.get(x.key)!.commandId, "zzz"); assert.equal(m2.get(x.key)!.commandId, "zzz");
});

function pool(reals: [string, number][], fallback = false): PoolSpec {
  return {
    vs: vs80.id, protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: vs80.persistence,
    reals: reals.map(([a, w]) => ({ address: a, port: 80, forwarding: "masq", weight: w, lowerThreshold: null, upperThreshold: null })),
    fallback: fallback ? { address: "127.0.0.1", port: 80, forwarding: "masq" } : null,
  };
}

test("overrides on a pool: disabled leaves, draining and maintenance get weight 0, weight applies while up; the fallback takes over when none is left", () => {
  const map: OverrideMap = new Map();
  const p = pool([["203.0.113.11", 1], ["203.0.113.12", 3]]);
  assert.equal(applyOverrides(p, overridesFor(vs80, map, noDrain), vs80, () => true), p, "no overrides: the same pool");
  apply(map, { action: "weight", vs: "198.51.100.50:80", real: "203.0.113.12:80", weight: 9 });
  apply(map, { action: "maintenance", real: "203.0.113.11:80", on: true });
  let ov = overridesFor(vs80, map, noDrain);
  assert.equal(ov["203.0.113.11:80"]!.state, "maintenance");
  assert.match(ov["203.0.113.11:80"]!.why, /^maintenance by alice@ops1 \(command c\d+\)$/);
  let out = applyOverrides(p, ov, vs80, () => true);
  assert.deepEqual(out.reals.map((r) => [r.address, r.weight, r.draining ?? false]), [["203.0.113.11", 0, false], ["203.0.113.12", 9, false]]);
  assert.equal(applyOverrides(p, ov, vs80, () => false).reals[1]!.weight, 3, "a weight override does not revive a real that is down");
  apply(map, { action: "drain", vs: "198.51.100.50:80", real: "203.0.113.12:80", timeoutMs: 60_000 });
  ov = overridesFor(vs80, map, noDrain);
  assert.equal(ov["203.0.113.12:80"]!.state, "draining", "the drain is newer than the weight and stronger");
  out = applyOverrides(p, ov, vs80, () => true);
  assert.deepEqual(out.reals.map((r) => [r.address, r.weight, r.draining ?? false]), [["203.0.113.11", 0, false], ["203.0.113.12", 0, true]]);
  assert.deepEqual(out.fallback, { address: "127.0.0.1", port: 80, forwarding: "masq" }, "no real with a weight left: fallback");
  ov = overridesFor(vs80, map, () => ({ done: true, why: "no connections left" }));
  assert.equal(ov["203.0.113.12:80"]!.state, "drained");
  assert.deepEqual(applyOverrides(p, ov, vs80, () => true).reals.map((r) => r.address), ["203.0.113.11"], "drained: out of the pool");
  apply(map, { action: "disable", real: "203.0.113.11" });
  assert.deepEqual(applyOverrides(p, overridesFor(vs80, map, noDrain), vs80, () => true).reals.map((r) => r.address), ["203.0.113.12"]);
  apply(map, { action: "enable", real: "203.0.113.11" });
  apply(map, { action: "enable", real: "203.0.113.12" });
  ov = overridesFor(vs80, map, noDrain);
  assert.deepEqual(Object.values(ov).map((o) => [o.real, o.state, o.weight]), [["203.0.113.11:80", "maintenance", 0], ["203.0.113.12:80", "weight", 9]], "enable ends disable and drain, not maintenance");
});

test("pin: a failover pins the group to a node until --auto clears it", () => {
  const map: OverrideMap = new Map();
  apply(map, { action: "failover", group: "web", to: "lb2" }, 1000);
  assert.equal(pinFor("web", map)!.node, "lb2");
  assert.match(pinFor("web", map)!.why, /operator failover of web to lb2 by alice@ops1/);
  apply(map, { action: "failover", group: "web", to: null }, 2000);
  assert.equal(pinFor("web", map), null);
});

test("drain: waits for a count taken after it began, then for zero connections, or the timeout", () => {
  const e = { key: "drain|tcp:198.51.100.50:80|203.0.113.11:80", kind: "drain" as const, vs: "tcp:198.51.100.50:80", real: "203.0.113.11:80", group: null, value: 30_000, at: 10_000, commandId: "c1", by: "x" };
  const rep = (node: string, at: number, k: number): ConnReport => ({ node, at, source: "conntrack", counts: new Map(k ? [["tcp:198.51.100.50:80|203.0.113.11:80", k]] : []) });
  assert.match(drainStatus(e, [], 11_000).why, /no node reports connection counts; removal at the 30 s timeout/);
  let s = drainStatus(e, [rep("lb1", 9_900, 0), rep("lb2", 10_500, 0)], 10_600);
  assert.equal(s.done, false); assert.match(s.why, /waiting for a count from lb1/);
  s = drainStatus(e, [rep("lb1", 11_000, 2), rep("lb2", 10_500, 0)], 11_100);
  assert.equal(s.done, false); assert.equal(s.why, "2 connection(s) left (lb1 2, lb2 0)");
  s = drainStatus(e, [rep("lb1", 14_000, 0), rep("lb2", 14_000, 0)], 14_100);
  assert.equal(s.done, true); assert.match(s.why, /no connections left \(lb1 0, lb2 0\) after 4\.1 s/);
  s = drainStatus(e, [rep("lb1", 14_000, 0), rep("lb2", 5_000, 3)], 14_100);
  assert.equal(s.done, true, "a node silent for longer than the freshness no longer counts");
  s = drainStatus(e, [rep("lb1", 39_900, 1)], 40_000);
  assert.equal(s.done, true); assert.match(s.why, /timeout 30 s passed with 1 connection\(s\) left \(lb1 1\)/);
});

test("pool machine: an OVERRIDE becomes a decision caused by the command, with the override in it", () => {
  const out: PoolDecisionEmitted[] = [];
  const a = createActor(poolMachine, { input: { vs: vs80, policy: "all", now: 0 } });
  a.on("decision", (d) => void out.push(d));
  a.start();
  for (const r of ["203.0.113.11:80", "203.0.113.12:80"]) a.send({ type: "HEALTH", now: 100, eventId: `h-${r}`, real: r, prober: "lb1", ok: true, streak: 1, at: 100, error: null, check: "connect" });
  assert.equal(out.length, 1);
  const map: OverrideMap = new Map();
  apply(map, { action: "maintenance", real: "203.0.113.11:80", on: true });
  a.send({ type: "OVERRIDE", now: 200, overrides: overridesFor(vs80, map, noDrain), eventId: "cmd-1" });
  assert.equal(out.length, 2);
  assert.equal(out[1]!.causationId, "cmd-1");
  assert.deepEqual(out[1]!.pool.reals.map((r) => r.weight), [0, 3]);
  assert.equal(out[1]!.operator![0]!.state, "maintenance");
  a.send({ type: "OVERRIDE", now: 300, overrides: overridesFor(vs80, map, noDrain), eventId: "cmd-1" });
  assert.equal(out.length, 2, "the same overrides again: no new decision");
  apply(map, { action: "maintenance", real: "203.0.113.11:80", on: false });
  a.send({ type: "OVERRIDE", now: 400, overrides: overridesFor(vs80, map, noDrain), eventId: "cmd-2" });
  assert.deepEqual(out[2]!.pool.reals.map((r) => r.weight), [1, 3]);
  assert.equal(out[2]!.operator, undefined);
  a.stop();
});

test("nftables: a draining real keeps its endpoint but its affinity is no longer looked up", () => {
  const p = pool([["203.0.113.11", 0], ["203.0.113.12", 3]]);
  p.reals[0]!.draining = true;
  const text = renderDesired([p]).chains.flatMap((c) => c.rules.map((r) => r.expr)).join("\n");
  const lookups = text.split("\n").filter((l) => / @aff-\S+ goto /.test(l));
  assert.equal(lookups.length, 1, "one lookup: the real that is not draining");
  assert.match(text, /dnat to 203\.0\.113\.11:80/, "its endpoint chain stays for established affinity entries");
});

test("conntrack: ESTABLISHED DNAT flows are counted per virtual service and real", () => {
  const text = [
    "tcp      6 431999 ESTABLISHED src=198.51.100.10 dst=198.51.100.50 sport=40000 dport=80 src=203.0.113.11 dst=198.51.100.10 sport=80 dport=40000 [ASSURED] mark=0 use=1",
    "tcp      6 431998 ESTABLISHED src=198.51.100.10 dst=198.51.100.50 sport=40001 dport=80 src=203.0.113.11 dst=198.51.100.10 sport=80 dport=40001 [ASSURED] mark=0 use=1",
    "tcp      6 117 TIME_WAIT src=198.51.100.10 dst=198.51.100.50 sport=40002 dport=80 src=203.0.113.12 dst=198.51.100.10 sport=80 dport=40002 [ASSURED] mark=0 use=1",
    "tcp      6 431999 ESTABLISHED src=198.51.100.10 dst=198.51.100.50 sport=40003 dport=443 src=203.0.113.12 dst=198.51.100.10 sport=443 dport=40003 [ASSURED] mark=0 use=1",
    "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=192.0.2.2 sport=5000 dport=4222 src=192.0.2.2 dst=192.0.2.1 sport=4222 dport=5000 [ASSURED] mark=0 use=1",
    "conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.",
  ].join("\n");
  const flows = parseConntrack(text);
  assert.equal(flows.length, 5);
  assert.equal(flows[2]!.state, "TIME_WAIT");
  const p443 = { ...pool([["203.0.113.11", 1], ["203.0.113.12", 1]]), vs: "tcp:198.51.100.50:443", port: 443 };
  p443.reals = p443.reals.map((r) => ({ ...r, port: 443 }));
  const c = countByReal(flows, [pool([["203.0.113.11", 1]]), p443]);
  assert.deepEqual([...c], [["tcp:198.51.100.50:80|203.0.113.11:80", 2], ["tcp:198.51.100.50:443|203.0.113.12:443", 1]]);
});

test("cli: arguments become requests; bad ones are refused before anything is sent", () => {
  assert.deepEqual(buildRequest("drain", ["198.51.100.50:80", "203.0.113.11"], { timeout: "90s" }), { vs: "198.51.100.50:80", real: "203.0.113.11", group: null, to: null, on: null, weight: null, timeoutMs: 90_000, reason: null, action: "drain" });
  assert.equal(buildRequest("weight", ["198.51.100.50:80", "203.0.113.11", "config"], {}).weight, null);
  assert.equal(buildRequest("maintenance", ["203.0.113.11", "on"], {}).on, true);
  assert.throws(() => buildRequest("maintenance", ["203.0.113.11", "yes"], {}), /on or off/);
  assert.throws(() => buildRequest("weight", ["198.51.100.50:80", "203.0.113.11", "-1"], {}), /0…65535/);
  assert.throws(() => buildRequest("failover", ["web"], { to: "lb2", auto: true }), /not both/);
  assert.throws(() => buildRequest("disable", [], {}), /takes 1 argument/);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1500ms"), 1500);
  assert.throws(() => parseDuration("soon"), /cannot read duration/);
  const heard = new Map([
    ["lb1", { priority: 150, owned: [{ group: "web", term: 3 }], faults: [], at: 0 }],
    ["lb2", { priority: 100, owned: [], faults: [], at: 0 }],
    ["lb3", { priority: 120, owned: [], faults: ["interface front down"], at: 0 }],
  ]);
  assert.equal(failoverTarget("web", heard), "lb2", "the best live node without faults that does not hold it");
  assert.deepEqual(failoverTarget("web", new Map([...heard].filter(([k]) => k === "lb1"))), ["lb1"]);
});
