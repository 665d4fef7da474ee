// Pure tests of the dashboard's parts: sessions and logins, the cluster picture built from bus
// events (also what `lvsflow status` prints), and the why chain over the audit history.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Model } from "../shared/schemas/config.ts";
import { makeEvent, type Event } from "../shared/schemas/events.ts";
import { Auth, COOKIE, parseCookies, sessionCookie, type Session } from "../services/dashboard/auth.ts";
import { applyEvent, emptyState, snapshot, renderStatus } from "../services/dashboard/cluster-view.ts";
import { EventIndex, whyChain } from "../services/dashboard/history.ts";
import { parseListen } from "../services/dashboard/main.ts";

test("auth: the right password gives a session; wrong ones are refused and, repeated, blocked per address", () => {
  assert.throws(() => new Auth({ password: "short" }), /at least 8/);
  const a = new Auth({ password: "correct horse", maxFailures: 3, failureWindowMs: 60_000, ttlMs: 1000 });
  const s = a.login("alice", "correct horse", "192.0.2.7", 0) as Session;
  assert.equal(s.user, "alice");
  const cookie = sessionCookie(s);
  assert.match(cookie, /HttpOnly; SameSite=Strict/);
  assert.equal(a.session(`x=1; ${COOKIE}=${s.id}`, 500)?.user, "alice");
  assert.equal(a.csrfOk(s, s.csrf), true);
  assert.equal(a.csrfOk(s, "forged"), false);
  assert.equal(a.csrfOk(s, undefined), false);
  assert.equal(a.session(`${COOKIE}=${s.id}`, 1400)?.user, "alice", "use extends the session");
  assert.equal(a.session(`${COOKIE}=${s.id}`, 3000), null, "idle past the ttl: gone");
  assert.equal(a.session(`${COOKIE}=nope`, 0), null);
  assert.deepEqual(a.login("<script>", "correct horse", "192.0.2.7", 0), { error: "give your name (letters, digits, . _ @ -; it goes into the audit history)", status: 400 });
  for (let i = 0; i < 3; i++) assert.equal((a.login("mallory", `guess${i}`, "192.0.2.66", 1000 + i) as { status: number }).status, 401);
  const blocked = a.login("mallory", "correct horse", "192.0.2.66", 2000) as { status: number; error: string };
  assert.equal(blocked.status, 429, "blocked even with the right password");
  assert.match(blocked.error, /try again in 59 s/);
  assert.equal((a.login("alice", "correct horse", "192.0.2.7", 2000) as Session).user, "alice", "other addresses are not blocked");
  assert.equal((a.login("mallory", "correct horse", "192.0.2.66", 62_000) as Session).user, "mallory", "the window passes");
  const s2 = a.login("bob", "correct horse", "192.0.2.8", 0) as Session;
  a.logout(s2);
  assert.equal(a.session(`${COOKIE}=${s2.id}`, 1), null);
  assert.deepEqual(parseCookies(" a=1 ; b = 2;c"), { a: "1", b: "2" });
  assert.deepEqual(parseListen("[::1]:9180"), { host: "::1", port: 9180 });
  assert.throws(() => parseListen("9180"), /HOST:PORT/);
});

const model = Model.parse({
  site: "lab",
  nodes: [{ name: "lb1", priority: 150 }, { name: "lb2", priority: 100 }],
  groups: [{ name: "web", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }] }],
  virtualServices: [{
    id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false,
    check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 5, timeout: 5, failureCount: 1 },
    fallback: { address: "127.0.0.1", port: 80, forwarding: "masq" },
    reals: [{ address: "203.0.113.11", port: 80, forwarding: "masq", weight: 1 }, { address: "203.0.113.12", port: 80, forwarding: "masq", weight: 1 }],
  }],
});
const t0 = Date.parse("2026-11-25T14:31:00Z");
const src = (service: "prober" | "controller" | "executor", node: string) => ({ source: { service, node } });

test("cluster view: heartbeats, decisions, checks, connections and a controller's view make the operator's picture", () => {
  const st = emptyState("lab", model);
  const at = (ms: number) => new Date(t0 + ms);
  const hb = (node: string, ms: number, owned: { group: string; term: number }[]) => makeEvent("node.heartbeat", { node, priority: node === "lb1" ? 150 : 100, seq: ms, startedAt: "x", appliedGeneration: 7, owned, faults: [], driver: "nftables" }, { ...src("executor", node), now: at(ms) });
  assert.equal(applyEvent(st, hb("lb1", 0, [{ group: "web", term: 3 }]), t0), true, "first heartbeat: a change");
  assert.equal(applyEvent(st, hb("lb1", 50, [{ group: "web", term: 3 }]), t0 + 50), false, "still here: nothing to push");
  applyEvent(st, hb("lb2", 50, []), t0 + 50);
  const pool = (node: string, gen: number, reals: [string, number][], operator?: Event extends never ? never : { real: string; state: "maintenance"; weight: number; why: string; commandId: string }[]) => makeEvent("decision.pool", {
    node, generation: gen, changes: [], fallbackActive: false, ...(operator ? { operator } : {}),
    pool: { vs: "tcp:198.51.100.50:80", protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: null, fallback: null,
      reals: reals.map(([a, w]) => ({ address: a, port: 80, forwarding: "masq" as const, weight: w, lowerThreshold: null, upperThreshold: null })) },
  }, { ...src("controller", node), now: at(100) });
  const maint = [{ real: "203.0.113.11:80", state: "maintenance" as const, weight: 0, why: "maintenance by alice@ops1 (command c1)", commandId: "c1" }];
  assert.equal(applyEvent(st, pool("lb1", 10, [["203.0.113.11", 0], ["203.0.113.12", 1]], maint), t0 + 100), true);
  assert.equal(applyEvent(st, pool("lb1", 10, [["203.0.113.11", 0], ["203.0.113.12", 1]], maint), t0 + 1100), false, "a re-sent decision changes nothing");
  applyEvent(st, pool("lb2", 11, [["203.0.113.12", 1]]), t0 + 100);
  applyEvent(st, makeEvent("health.result", { vs: "tcp:198.51.100.50:80", real: "203.0.113.12:80", prober: "lb2", ok: false, streak: 1, check: "connect", latencyMs: 0.4, error: "ECONNREFUSED", httpStatus: null, matched: null }, { ...src("prober", "lb2"), now: at(200) }), t0 + 200);
  applyEvent(st, makeEvent("executor.connections", { node: "lb1", source: "conntrack", counts: [{ vs: "tcp:198.51.100.50:80", real: "203.0.113.12:80", active: 4 }] }, { ...src("executor", "lb1"), now: at(250) }), t0 + 250);
  applyEvent(st, makeEvent("decision.owner", { node: "lb1", generation: 5, group: "web", role: "owner", term: 3, owner: "lb1", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], garpScheduleMs: [0], why: "highest-priority live node" }, { ...src("controller", "lb1"), now: at(0) }), t0);
  applyEvent(st, makeEvent("controller.view", { node: "lb2", groups: [{ group: "web", state: "backup", role: "backup", term: 3, pinned: null }],
    pools: [{ vs: "tcp:198.51.100.50:80", state: "serving", fallbackActive: false, reals: [{ real: "203.0.113.11:80", state: "up", why: "rise 1 reached", weight: 0, admin: maint[0]!, checks: [{ prober: "lb1", ok: true, streak: 9, ageMs: 800, error: null, check: "connect" }] }] }] }, { ...src("controller", "lb2"), now: at(300) }), t0 + 300);

  const v = snapshot(st, t0 + 400);
  assert.deepEqual(v.nodes.map((n) => [n.node, n.alive]), [["lb1", false], ["lb2", false]], "heartbeats 350 ms old: past the dead time");
  const v2 = snapshot(st, t0 + 300);
  assert.deepEqual(v2.nodes.map((n) => [n.node, n.alive, n.holds.length]), [["lb1", true, 1], ["lb2", true, 0]]);
  assert.equal(v2.groups[0]!.owner, "lb1");
  assert.equal(v2.groups[0]!.term, 3);
  assert.deepEqual(Object.keys(v2.groups[0]!.views), ["lb1", "lb2"]);
  const [r11, r12] = v2.services[0]!.reals;
  assert.equal(r11!.admin?.state, "maintenance");
  assert.equal(r11!.nodes.lb1!.weight, 0);
  assert.equal(r11!.nodes.lb2!.inPool, false);
  assert.equal(r11!.lastCheck!.ok, true);
  assert.equal(r11!.lastCheck!.ageMs, 800, "age of the controller's last check, at the view's time");
  assert.equal(r12!.lastCheck!.ok, false);
  assert.equal(r12!.lastCheck!.error, "ECONNREFUSED");
  assert.deepEqual(r12!.connections, { lb1: 4 });
  const text = renderStatus(v2);
  assert.match(text, /web \(198\.51\.100\.50\/24@front\): owner lb1, term 3/);
  assert.match(text, /203\.0\.113\.11:80 +UP +lb1 w0, lb2 out .*MAINTENANCE: maintenance by alice@ops1/);
  assert.match(text, /203\.0\.113\.12:80 .*last check FAIL x1 by lb2 100 ms ago \(ECONNREFUSED\)  \| connections lb1 4/);
});

test("why: causes up to the root, effects down, and a missing cause is named", () => {
  const idx = new EventIndex(100);
  const h = makeEvent("health.result", { vs: "v", real: "r", prober: "lb1", ok: false, streak: 1, check: "connect", latencyMs: 1, error: "x", httpStatus: null, matched: null }, { ...src("prober", "lb1"), id: "health-1", now: new Date(t0) });
  const d = makeEvent("peer.state", { observer: "lb1", peer: "lb2", alive: false, lastSeenMsAgo: 400 }, { ...src("controller", "lb1"), id: "decide-1", causationId: "health-1", now: new Date(t0 + 10) });
  const a1 = makeEvent("executor.drift", { node: "lb1", found: ["x"], repaired: true }, { ...src("executor", "lb1"), id: "apply-01", causationId: "decide-1", now: new Date(t0 + 20) });
  const a2 = makeEvent("executor.drift", { node: "lb2", found: ["y"], repaired: true }, { ...src("executor", "lb2"), id: "apply-02", causationId: "decide-1", now: new Date(t0 + 30) });
  const orphan = makeEvent("executor.drift", { node: "lb2", found: ["z"], repaired: true }, { ...src("executor", "lb2"), id: "orphan-1", causationId: "gone-before-1", now: new Date(t0 + 40) });
  for (const e of [h, d, a1, a2, orphan]) idx.add(e);
  assert.equal(idx.add(h), false, "each event once");
  const w = whyChain(idx, "apply-01");
  assert.deepEqual(w.causes.map((c) => c.id), ["health-1", "decide-1"]);
  assert.deepEqual(w.effects, []);
  const down = whyChain(idx, "health-1");
  assert.deepEqual(down.effects.map((e) => [e.id, e.depth]), [["decide-1", 1], ["apply-01", 2], ["apply-02", 2]]);
  assert.equal(whyChain(idx, "orphan-1").missing, "gone-before-1");
  assert.equal(whyChain(idx, "nothing-here").event, null);
});
