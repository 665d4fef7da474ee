// Hostile input on the bus: running services (real `lvsflow run` processes of a controller, a
// prober and a recorder, on a real nats-server and redis-server) receive seeded mutations of every
// event schema on the subjects they listen to. None crashes or hangs; the controller counts
// exactly the messages the schema refuses (lvsflow_events_rejected_total, per subject prefix),
// and every service still does its job afterwards. (The executor's share runs in
// kernel-security-executor.test.ts, inside a namespace, because it changes kernel state.)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { makeEvent, Event, type EventType } from "../shared/schemas/events.ts";
import { subjects } from "../shared/subjects.ts";
import { readHistory } from "../services/cli/audit.ts";
import { startServers, freePort, sleep } from "./harness.ts";
import { samples, eventTypes, mutate, accepted, rng } from "./fuzz-events.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SITE = "fz";
const SEED = 0x5eed1;
const PER_TYPE = 120;
const dir = mkdtempSync(join(tmpdir(), "lvsflow-fuzz-"));
const servers = await startServers();
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) { const e = new Promise((r) => p.once("exit", r)); p.kill("SIGTERM"); await e; }
  await servers.stop();
  rmSync(dir, { recursive: true, force: true });
});

const closed = await freePort(); // the prober checks a closed port on loopback: no traffic leaves the host
const CONFIG = join(dir, "fz.yaml");
writeFileSync(CONFIG, `site: ${SITE}
nodes:
  - { name: lb1, priority: 150 }
  - { name: lb2, priority: 100 }
groups:
  - { name: web, addresses: [{ address: 198.51.100.50, prefix: 24, interface: front }] }
virtualServices:
  - { address: 198.51.100.50, port: 80, check: { type: connect, interval: 1, timeout: 1 }, reals: [{ address: 127.0.0.1, port: ${closed}, forwarding: masq }] }
`);

async function service(name: string, node: string): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, "bin/lvsflow.mjs"), "run", name, "--node", node, "--config", CONFIG, "--nats", servers.natsUrl,
    "--redis", servers.redisUrl, "--http-port", String(port), "--state-dir", dir], { env: { ...process.env, LVSFLOW_LOG_JSON: "1", LVSFLOW_LOG_LEVEL: "error" }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (b: Buffer) => { if (log.length < 200_000) log += b.toString(); });
  procs.push(child);
  return { child, port, log: () => log };
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}

/** lvsflow_events_rejected_total by subject prefix ("lvsflow.fz.health"). */
async function rejectedByPrefix(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await get(port, "/metrics")).body.matchAll(/^lvsflow_events_rejected_total\{subject="([^"]+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { try { if (await cond()) return true; } catch { /* not up yet */ } await sleep(100); }
  return false;
}

// What the controller subscribes to (services/controller, services/commands, shared/config/reload.ts).
const CONTROLLER_TYPES: [RegExp, EventType[]][] = [
  [/^lvsflow\.fz\.health\./, ["health.result", "health.summary"]],
  [/^lvsflow\.fz\.heartbeat\.[^.]+$/, ["node.heartbeat"]],
  [/^lvsflow\.fz\.view\.[^.]+$/, ["voter.view"]],
  [/^lvsflow\.fz\.command\.request\.[^.]+$/, ["command.request"]],
  [/^lvsflow\.fz\.command\.state\.[^.]+$/, ["command.state"]],
  [/^lvsflow\.fz\.report\.[^.]+\.connections$/, ["executor.connections"]],
  [/^lvsflow\.fz\.config\.push$/, ["config.pushed"]],
];

test(`every event schema, ${PER_TYPE} seeded mutations each, against a running controller, prober and recorder`, { timeout: 120_000 }, async () => {
  const all = samples(SITE);
  const missing = eventTypes().filter((t) => !all.has(t));
  assert.deepEqual(missing, [], `event types without a fuzz sample: add one to test/fuzz-events.ts`);

  const controller = await service("controller", "lb1");
  const prober = await service("prober", "lb1");
  const recorder = await service("recorder", "recorder");
  for (const s of [controller, prober, recorder]) assert.ok(await until(async () => (await get(s.port, "/healthz")).status > 0, 30_000), `a service came up: ${s.log()}`);
  const before = await rejectedByPrefix(controller.port);

  const nc = await connect({ servers: servers.natsUrl });
  after(() => nc.close());
  const r = rng(SEED);
  const types = eventTypes();
  const expected: Record<string, number> = {};
  let sent = 0, bytes = 0, invalid = 0;
  const t0 = Date.now();
  for (const [, { subject, ev }] of all) {
    for (let i = 0; i < PER_TYPE; i++) {
      const payload = mutate(ev, r, types);
      nc.publish(subject, payload);
      sent++; bytes += payload.length;
      if (!accepted(payload, types)) invalid++;
      const sub = CONTROLLER_TYPES.find(([re]) => re.test(subject));
      if (sub && !accepted(payload, sub[1])) { const k = subject.split(".").slice(0, 3).join("."); expected[k] = (expected[k] ?? 0) + 1; }
    }
    await nc.flush();
  }
  // A few very large ones (just under nats-server's 1 MB max_payload).
  for (const [subject, size] of [[subjects.heartbeat(SITE, "lb2"), 900_000], [subjects.healthSummary(SITE, "lb2"), 1_000_000]] as const) {
    const huge = new TextEncoder().encode(JSON.stringify({ type: "node.heartbeat", data: "x".repeat(size - 100) }));
    nc.publish(subject, huge);
    sent++; bytes += huge.length; invalid++;
    const k = subject.split(".").slice(0, 3).join(".");
    expected[k] = (expected[k] ?? 0) + 1;
  }
  await nc.flush();
  const publishMs = Date.now() - t0;

  const want = Object.fromEntries(Object.entries(expected).map(([k, n]) => [k, (before[k] ?? 0) + n]));
  let got: Record<string, number> = {};
  await until(async () => { got = await rejectedByPrefix(controller.port); return Object.entries(want).every(([k, n]) => (got[k] ?? 0) >= n); }, 30_000);
  await sleep(500);
  got = await rejectedByPrefix(controller.port);
  assert.deepEqual(Object.fromEntries(Object.keys(want).map((k) => [k, got[k] ?? 0])), want, "the controller rejected and counted exactly the messages its subscriptions refuse");

  for (const [name, s] of Object.entries({ controller, prober, recorder })) {
    assert.equal(s.child.exitCode, null, `${name} is still running:\n${s.log().slice(-3000)}`);
    assert.doesNotMatch(s.log(), /uncaught|unhandled|FATAL|"level":60/i, `${name} logged a crash`);
  }

  // …and each still does its job: the controller answers a status query, the recorder records.
  const reply = await nc.request(subjects.queryView(SITE), new Uint8Array(), { timeout: 5000 });
  const view = Event.parse(reply.json());
  assert.equal(view.type, "controller.view");
  const redis = new Redis(servers.redisUrl, { lazyConnect: true });
  after(() => redis.disconnect());
  await redis.connect();
  const sentinel = makeEvent("decision.pool", { ...(all.get("decision.pool")!.ev as Extract<Event, { type: "decision.pool" }>).data, generation: 999 }, { source: { service: "controller", node: "lb1" } });
  nc.publish(subjects.decisionPool(SITE, "lb1", sentinel.data.pool.vs), JSON.stringify(sentinel));
  assert.ok(await until(async () => (await readHistory(redis, SITE, {})).some((e) => e.id === sentinel.id), 20_000), `the recorder still records:\n${recorder.log().slice(-3000)}`);
  assert.equal((await get(prober.port, "/healthz")).status, 200, "the prober still answers");
  process.stdout.write(`# fuzzed ${sent} messages (${(bytes / 1e6).toFixed(1)} MB, ${invalid} invalid) in ${publishMs} ms; controller rejections by subject: ${JSON.stringify(expected)}\n`);
});
