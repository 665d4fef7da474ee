// Seeded, bounded fuzzing of bus events for the fuzz tests: one valid sample per event type (built
// with makeEvent, so each is checked against its schema), the subject it travels on, and a
// mutator that turns samples into hostile payloads — wrong types, missing and extra fields, huge
// and deeply nested values, prototype keys, broken JSON and bytes. Deterministic for a seed.
import { makeEvent, Event, type EventType } from "../shared/schemas/events.ts";
import { subjects } from "../shared/subjects.ts";

/** xorshift32: the same sequence for the same seed, on every machine. */
export function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n: number) => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s % n; };
}

const VS = "tcp:198.51.100.50:80";
const REAL = "203.0.113.11:80";
const V = "0123456789abcdef";

/** A valid event of every type, and the subject it is published on for site `site`. */
export function samples(site: string, node = "lb1", peer = "lb2"): Map<EventType, { subject: string; ev: Event }> {
  const src = (service: "prober" | "controller" | "executor" | "recorder" | "cli" | "witness", n = peer) => ({ source: { service, node: n } });
  const real = { address: "203.0.113.11", port: 80, forwarding: "masq" as const, weight: 1, lowerThreshold: null, upperThreshold: null };
  const pool = { vs: VS, protocol: "tcp" as const, family: "ipv4" as const, address: "198.51.100.50", port: 80, fwmark: null, scheduler: "rr", persistence: null, reals: [real], fallback: null };
  const changes = { virtualServicesAdded: [], virtualServicesRemoved: [], virtualServicesChanged: [VS], virtualServicesUnchanged: 0, realsAdded: [], realsRemoved: [], groupsAdded: [], groupsRemoved: [], groupsChanged: [], settings: [] };
  const list: [string, Event][] = [
    [subjects.health(site, peer, VS, REAL), makeEvent("health.result", { vs: VS, real: REAL, prober: peer, ok: false, streak: 2, check: "connect", latencyMs: 3, error: "ECONNREFUSED", httpStatus: null, matched: null }, src("prober"))],
    [subjects.healthSummary(site, peer), makeEvent("health.summary", { prober: peer, intervalMs: 1000, results: [{ vs: VS, real: REAL, ok: true, streak: 1, ageMs: 10 }] }, src("prober"))],
    [subjects.decisionPool(site, node, VS), makeEvent("decision.pool", { node, generation: 7, pool, changes: [{ real: REAL, from: "up", to: "down", why: "fuzz" }], fallbackActive: false }, src("controller", node))],
    [subjects.decisionOwner(site, node, "web"), makeEvent("decision.owner", { node, generation: 7, group: "web", role: "backup", term: 1, owner: peer, addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], garpScheduleMs: [], why: "fuzz" }, src("controller", node))],
    [subjects.heartbeat(site, peer), makeEvent("node.heartbeat", { node: peer, priority: 100, seq: 1, startedAt: new Date().toISOString(), appliedGeneration: 0, owned: [], faults: [], driver: "nftables" }, src("executor"))],
    [subjects.peer(site, peer, node), makeEvent("peer.state", { observer: peer, peer: node, alive: true, lastSeenMsAgo: 10 }, src("controller"))],
    [subjects.report(site, peer, "pool"), makeEvent("executor.applied", { node: peer, kind: "pool", generation: 1, ok: true, ops: ["add rule"], durationMs: 1, error: null, readback: "ok", subject: null }, src("executor"))],
    [subjects.report(site, peer, "drift"), makeEvent("executor.drift", { node: peer, found: ["x"], repaired: true }, src("executor"))],
    [subjects.rejected(site, "controller", peer), makeEvent("bus.rejected", { subject: "x", reason: "fuzz", service: "controller" }, src("controller"))],
    [subjects.commandRequest(site, "drain"), makeEvent("command.request", { action: "drain", vs: VS, real: REAL, group: null, to: null, on: null, weight: null, timeoutMs: 1000, issuedBy: "fuzz@test", reason: null }, src("cli"))],
    [subjects.commandAck(site, peer), makeEvent("command.ack", { commandId: "c0ffee00", node: peer, status: "refused", detail: "fuzz", generation: null }, src("controller"))],
    [subjects.commandState(site, peer), makeEvent("command.state", { node: peer, entries: [{ key: `disabled|${VS}|${REAL}`, kind: "disabled", vs: VS, real: REAL, group: null, value: true, at: 1, commandId: "c0ffee00", by: "fuzz" }] }, src("controller"))],
    [subjects.report(site, peer, "connections"), makeEvent("executor.connections", { node: peer, source: "conntrack", counts: [{ vs: VS, real: REAL, active: 3 }] }, src("executor"))],
    [`lvsflow.${site}.view-reply`, makeEvent("controller.view", { node: peer, pools: [{ vs: VS, state: "ok", fallbackActive: false, reals: [{ real: REAL, state: "up", why: "", weight: 1, admin: null, checks: [] }] }], groups: [{ group: "web", state: "backup", role: "backup", term: 1, pinned: null }] }, src("controller"))],
    [subjects.view(site, "w1"), makeEvent("voter.view", { voter: "w1", witness: true, seq: 1, hears: { [peer]: 10 }, canOwn: false }, src("witness", "w1"))],
    [subjects.lease(site, node, "web"), makeEvent("owner.lease", { node, group: "web", term: 1, leaseMs: 1000 }, src("controller", node))],
    [subjects.inputs(site, peer), makeEvent("controller.inputs", { node: peer, boot: "boot-1", seq: 0, from: 1, to: 2, count: 0, start: true, encoding: "deflate-json-base64", entries: "" }, src("controller"))],
    [subjects.configPush(site), makeEvent("config.pushed", { version: V, files: ["/etc/lvsflow/lvsflow.yaml"], by: "fuzz@test" }, src("cli"))],
    [subjects.configReport(site, peer, "applied"), makeEvent("config.applied", { node: peer, service: "controller", version: V, previous: null, trigger: "push", changes }, src("controller"))],
    [subjects.proberHeartbeat(site, "checks", peer), makeEvent("prober.heartbeat", { prober: peer, group: "checks", seq: 1, periodMs: 1000, leaving: false, targets: 2 }, src("prober"))],
    [subjects.configReport(site, peer, "rejected"), makeEvent("config.rejected", { node: peer, service: "controller", version: V, running: V, trigger: "push", files: [], errors: ["f:1:1: error: fuzz"] }, src("controller"))],
  ];
  return new Map(list.map(([subject, ev]) => [ev.type, { subject, ev }]));
}

/** Every event type the schema knows: a new one without a sample above fails the fuzz tests (add one). */
export function eventTypes(): EventType[] {
  return Event.options.map((o) => o.shape.type.value) as EventType[];
}

const NASTY: (() => unknown)[] = [
  () => null, () => "", () => 0, () => -1, () => 1e308, () => 2 ** 53 + 1, () => 0.5, () => true, () => [], () => ({}),
  () => "x".repeat(100_000), () => "\u0000\u001b[2J\ud800\uffff", () => "../../etc/passwd", () => "$(reboot); `id`", () => "198.51.100.50; rm -rf /",
  () => "lvsflow.>", () => "2026-13-45T99:99:99Z", () => ({ __proto__: { polluted: true } }), () => JSON.parse('{"__proto__":{"polluted":true}}'),
  () => ({ constructor: { prototype: { polluted: true } } }), () => nest(300), () => Array.from({ length: 10_000 }, (_, i) => i),
];

function nest(depth: number): unknown {
  let v: unknown = "deep";
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

/** Paths to every value of a JSON tree (bounded). */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (out.length > 500) return out;
  if (prefix.length) out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

function setAt(root: Record<string, unknown>, path: (string | number)[], value: unknown, remove: boolean): void {
  let cur = root as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) cur = cur[p] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (remove) { if (Array.isArray(cur)) cur.splice(Number(last), 1); else delete cur[last]; } else cur[last] = value;
}

/** One hostile payload derived from `ev` (a deep copy is mutated; `ev` is untouched). */
export function mutate(ev: Event, r: (n: number) => number, allTypes: readonly string[]): Uint8Array {
  const enc = new TextEncoder();
  const obj = JSON.parse(JSON.stringify(ev)) as Record<string, unknown>;
  for (let m = 1 + r(3); m > 0; m--) {
    const ps = paths(obj);
    const p = ps[r(ps.length)]!;
    switch (r(8)) {
      case 0: setAt(obj, p, undefined, true); break;                               // a field goes missing
      case 1: setAt(obj, p, NASTY[r(NASTY.length)]!(), false); break;               // a hostile value
      case 2: obj.type = allTypes[r(allTypes.length)]; break;                        // another type's envelope
      case 3: obj.type = ["", "decision", "decision.pool ", "__proto__", "x".repeat(1000)][r(5)]; break;
      case 4: obj[["extra", "__proto__", "constructor", "then"][r(4)]!] = NASTY[r(NASTY.length)]!(); break;
      case 5: obj.schemaVersion = [0, 2, "1", null][r(4)]; break;
      case 6: { const d = obj.data as Record<string, unknown> | undefined; if (d && typeof d === "object") d[["node", "generation", "term", "group", "vs"][r(5)]!] = NASTY[r(NASTY.length)]!(); break; }
      default: obj.id = ["", "short", "x".repeat(65), 12345678][r(4)];
    }
  }
  const text = JSON.stringify(obj);
  // Byte-level damage on a share of them: cut JSON, a flipped byte, invalid UTF-8, not JSON at all.
  switch (r(10)) {
    case 0: return enc.encode(text.slice(0, r(text.length + 1)));
    case 1: { const b = enc.encode(text); if (b.length) b[r(b.length)] = r(256); return b; }
    case 2: return new Uint8Array([0xff, 0xfe, 0xc0, 0x80, ...enc.encode(text.slice(0, 50))]);
    case 3: return enc.encode(["", "null", "[]", "1", "\"str\"", "{}", "{\"type\":\"decision.pool\"}"][r(7)]!);
    default: return enc.encode(text);
  }
}

/** Whether a subscriber taking `types` would accept these bytes (what the bus itself decides). */
export function accepted(bytes: Uint8Array, types: readonly string[]): boolean {
  try {
    const p = Event.safeParse(JSON.parse(new TextDecoder().decode(bytes)));
    return p.success && types.includes(p.data.type);
  } catch {
    return false;
  }
}
