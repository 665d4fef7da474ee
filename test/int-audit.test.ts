// `lvsflow audit` and `lvsflow audit export` against a real redis-server holding a history written
// by the recorder's store: filters by virtual service, real, node, type, incident and time; the
// kernel changes a matched decision caused; table and NDJSON output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { makeEvent, Event } from "../shared/schemas/events.ts";
import { AuditStore } from "../services/recorder/store.ts";
import { DEFAULT_RETENTION } from "../services/recorder/retention.ts";
import { startServers } from "./harness.ts";

const CLI = fileURLToPath(new URL("../bin/lvsflow.mjs", import.meta.url));
const SITE = "atest";
const T0 = Date.parse("2026-11-25T14:31:00.000Z");
const VS = "tcp:198.51.100.50:80";

function run(args: string[], redisUrl: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args, "--site", SITE, "--redis", redisUrl], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => c.kill("SIGKILL"), 30_000);
    c.on("close", (code) => { clearTimeout(t); resolve({ code: code ?? -1, out, err }); });
  });
}

const ndjson = (s: string) => s.trim().split("\n").filter(Boolean).map((l) => Event.parse(JSON.parse(l)));

test("audit filters, caused kernel changes, NDJSON and export on a real Redis", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const redis = new Redis(servers.redisUrl);
  redis.on("error", () => undefined);
  t.after(() => redis.disconnect());
  const store = new AuditStore(redis, SITE, DEFAULT_RETENTION);
  const at = (ms: number) => new Date(T0 + ms);
  const h1 = makeEvent("health.result", { vs: VS, real: "203.0.113.11:80", prober: "lb1", ok: false, streak: 1, check: "connect", latencyMs: 1, error: "ECONNREFUSED", httpStatus: null, matched: null }, { source: { service: "prober", node: "lb1" }, now: at(0) });
  const h2 = makeEvent("health.result", { vs: "tcp:198.51.100.50:443", real: "203.0.113.12:443", prober: "lb2", ok: true, streak: 1, check: "connect", latencyMs: 1, error: null, httpStatus: null, matched: null }, { source: { service: "prober", node: "lb2" }, now: at(10) });
  const d = makeEvent("decision.pool", { node: "lb1", generation: 7, fallbackActive: false, changes: [{ real: "203.0.113.11:80", from: "up", to: "down", why: "failurecount 1 reached" }],
    pool: { vs: VS, protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: null, reals: [], fallback: null } }, { source: { service: "controller", node: "lb1" }, causationId: h1.id, now: at(20) });
  const a = makeEvent("executor.applied", { node: "lb1", kind: "pool", generation: 7, ok: true, ops: ["flush chain ip lvsflow svc-1"], durationMs: 2, error: null, readback: "ok", subject: null }, { source: { service: "executor", node: "lb1" }, causationId: d.id, correlationId: h1.id, now: at(60) });
  const o = makeEvent("decision.owner", { node: "lb2", generation: 9, group: "web", role: "owner", term: 2, owner: "lb2", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], garpScheduleMs: [0], why: "owner lb1 silent" }, { source: { service: "controller", node: "lb2" }, now: at(5000) });
  const all = [h1, h2, d, a, o];
  const r = await store.write(all.map((ev, i) => ({ seq: i + 1, ev })));
  assert.equal(r.appended.length, 5);
  const again = await store.write(all.map((ev, i) => ({ seq: i + 1, ev })));
  assert.equal(again.alreadyWritten, 5, "the cursor makes a repeated write a no-op");

  const ids = async (...args: string[]) => { const x = await run(["audit", "--json", ...args], servers.redisUrl); assert.equal(x.code, 0, x.err); return ndjson(x.out).map((e) => e.id); };
  assert.deepEqual(await ids(), all.map((e) => e.id), "everything, in order");
  assert.deepEqual(await ids("--vs", "198.51.100.50:80"), [h1.id, d.id, a.id, o.id], "a virtual service: its results, decisions, the kernel change they caused, and who holds its VIP");
  assert.deepEqual(await ids("--vs", VS), [h1.id, d.id, a.id], "by virtual service id: exactly that service");
  assert.deepEqual(await ids("--vs", "198.51.100.50"), [h1.id, h2.id, d.id, a.id, o.id], "a VIP: both ports and the group holding it");
  assert.deepEqual(await ids("--real", "203.0.113.11"), [h1.id, d.id, a.id]);
  assert.deepEqual(await ids("--node", "lb2"), [h2.id, o.id]);
  assert.deepEqual(await ids("--type", "decision"), [d.id, o.id]);
  assert.deepEqual(await ids("--type", "health.result,executor.applied"), [h1.id, h2.id, a.id]);
  assert.deepEqual(await ids("--since", at(15).toISOString(), "--until", at(1000).toISOString()), [d.id, a.id]);
  assert.deepEqual(await ids("--correlation", h1.id), [h1.id, d.id, a.id], "one incident");
  assert.deepEqual(await ids("--limit", "2"), [h1.id, h2.id]);

  const table = await run(["audit", "--real", "203.0.113.11:80"], servers.redisUrl);
  assert.equal(table.code, 0);
  assert.match(table.out, /2026-11-25T14:31:00\.020Z {2}decision\.pool {4}controller@lb1 {7}tcp:198\.51\.100\.50:80 for lb1 gen 7: .*203\.0\.113\.11:80 up->down: failurecount 1 reached/);
  assert.match(table.err, /3 event\(s\)/);

  const dir = mkdtempSync(join(tmpdir(), "lvsflow-export-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "history.ndjson");
  const ex = await run(["audit", "export", "--out", file, "--type", "decision"], servers.redisUrl);
  assert.equal(ex.code, 0, ex.err);
  assert.deepEqual(ndjson(readFileSync(file, "utf8")).map((e) => e.id), [d.id, o.id]);
  assert.match(ex.err, /2 event\(s\) .* written to /);

  const bad = await run(["audit", "--since", "yesterday-ish"], servers.redisUrl);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /cannot read time "yesterday-ish"/);
});
