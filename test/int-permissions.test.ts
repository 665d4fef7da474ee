// The permission configuration on real servers: nats-server started with the file
// `lvsflow security init` writes refuses what a role may not do (a prober publishing a decision or
// an operator command, an executor reading another node's decisions, clients without a key),
// Redis refuses the default user and lets the recorder append and the CLI only read, and TLS works
// (server verified by the CA; mutual TLS when required). Every server is started here and stopped
// by PID.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect as tcpConnect } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { pino } from "pino";
import { Bus } from "../shared/bus.ts";
import { makeEvent, Event } from "../shared/schemas/events.ts";
import { subjects } from "../shared/subjects.ts";
import { natsAuthFromEnv, natsConnectOptions, redisAuthFromEnv } from "../shared/secrets.ts";
import { initSecurity } from "../services/cli/security.ts";
import { readHistory } from "../services/cli/audit.ts";
import { startServers, startProc, freePort, waitForPort, sleep } from "./harness.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SITE = "s";
const servers = await startServers({ auth: { site: SITE, nodes: ["lb1", "lb2"], witnesses: ["w1"] } });
after(() => servers.stop());

const conns: NatsConnection[] = [];
after(async () => { for (const c of conns) await c.close().catch(() => undefined); });

/** Connects as an identity; collects the errors the server sends it (permission violations). */
async function as(identity: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const nc = await connect({ servers: servers.natsUrl, name: identity, timeout: 5000, ...servers.natsAuth(identity) });
  conns.push(nc);
  const errors: string[] = [];
  void (async () => { for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error)); })();
  return { nc, errors };
}

/** Everything published on the site, as the recorder (which may read all of it) receives it. */
async function observe(): Promise<{ subjects: string[]; payloads: string[] }> {
  const { nc } = await as("recorder-recorder");
  const seen = { subjects: [] as string[], payloads: [] as string[] };
  const sub = nc.subscribe(`lvsflow.${SITE}.>`);
  void (async () => { for await (const m of sub) { seen.subjects.push(m.subject); seen.payloads.push(m.string()); } })();
  await nc.flush();
  return seen;
}

const until = async (cond: () => boolean | Promise<boolean>, ms = 5000) => { const end = Date.now() + ms; while (!(await cond()) && Date.now() < end) await sleep(20); return cond(); };
const src = (service: "controller" | "executor" | "prober", node: string) => ({ source: { service, node } });

const poolDecision = (node: string) => makeEvent("decision.pool", {
  node, generation: 999, fallbackActive: false, changes: [],
  pool: { vs: "tcp:198.51.100.50:80", protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "rr", persistence: null, reals: [], fallback: null },
}, src("controller", node));

test("a prober's credentials cannot publish a decision or an operator command: the server refuses both", async () => {
  const seen = await observe();
  const { nc, errors } = await as("prober-lb1");
  const health = makeEvent("health.result", { vs: "tcp:198.51.100.50:80", real: "203.0.113.11:80", prober: "lb1", ok: true, streak: 1, check: "connect", latencyMs: 1, error: null, httpStatus: null, matched: null }, src("prober", "lb1"));
  const decision = subjects.decisionPool(SITE, "lb1", "tcp:198.51.100.50:80");
  const command = subjects.commandRequest(SITE, "drain");
  nc.publish(subjects.health(SITE, "lb1", "tcp:198.51.100.50:80", "203.0.113.11:80"), JSON.stringify(health));
  nc.publish(decision, JSON.stringify(poolDecision("lb1")));
  nc.publish(command, JSON.stringify({ forged: "command" }));
  await nc.flush();
  assert.ok(await until(() => errors.length >= 2), `server errors: ${errors.join(" | ")}`);
  assert.ok(errors.some((e) => e.includes(`Permissions Violation for Publish to "${decision}"`)), errors.join(" | "));
  assert.ok(errors.some((e) => e.includes(`Permissions Violation for Publish to "${command}"`)), errors.join(" | "));
  await sleep(200);
  assert.deepEqual(seen.subjects, [subjects.health(SITE, "lb1", "tcp:198.51.100.50:80", "203.0.113.11:80")], "only its own health result got through");
  assert.equal(nc.isClosed(), false, "the prober stays connected and can go on publishing health results");
});

// Which identity may publish what, as the running server enforces it (written independently of roles.ts).
const MATRIX: [string, string[]][] = [
  ["lvsflow.s.health.lb1.vs.real", ["prober-lb1", "node-lb1"]],
  ["lvsflow.s.health.lb2.summary", ["prober-lb2", "node-lb2"]],
  ["lvsflow.s.decision.lb1.pool.vs", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.decision.lb2.owner.web", ["controller-lb2", "node-lb2"]],
  ["lvsflow.s.lease.lb1.web", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.heartbeat.lb2", ["executor-lb2", "node-lb2"]],
  ["lvsflow.s.report.lb1.pool", ["executor-lb1", "node-lb1"]],
  ["lvsflow.s.peer.lb2.lb1", ["controller-lb2", "node-lb2"]],
  ["lvsflow.s.command.request.drain", ["operator-operator"]],
  ["lvsflow.s.command.ack.lb1", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.query.view", ["operator-operator"]],
  ["lvsflow.s.view.w1", ["witness-w1"]],
  ["lvsflow.s.rejected.recorder.recorder", ["recorder-recorder"]],
  ["lvsflow.s.anything.else", []],
];

test("the running server enforces the whole publish matrix, identity by identity", async () => {
  const seen = await observe();
  const ids = servers.security!.identities.map((i) => `${i.role}-${i.name}`);
  for (const id of ids) {
    const { nc } = await as(id);
    for (const [subject] of MATRIX) nc.publish(subject, `${id}|${subject}`);
    await nc.flush();
  }
  const expected = MATRIX.flatMap(([subject, allowed]) => allowed.map((id) => `${id}|${subject}`)).sort();
  await until(() => seen.payloads.length >= expected.length);
  await sleep(300); // anything the server wrongly let through would arrive meanwhile
  assert.deepEqual([...seen.payloads].sort(), expected);
});

test("an executor reads only its own node's decisions; refused subscriptions do not crash the bus", async () => {
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  const auth = natsAuthFromEnv(servers.security!.env("executor-lb1"));
  const bus = await new Bus({ servers: [servers.natsUrl], name: "executor-lb1", site: SITE, node: "lb1", service: "executor", log, auth }).connect();
  after(() => bus.close());
  const got: string[] = [];
  bus.subscribe(subjects.decisionsFor(SITE, "lb1"), ["decision.pool"], (ev) => void got.push(ev.data.node));
  bus.subscribe(subjects.decisionsFor(SITE, "lb2"), ["decision.pool"], (ev) => void got.push(`leaked ${ev.data.node}`));
  await bus.nc!.flush();
  const { nc: c1 } = await as("controller-lb1");
  const { nc: c2 } = await as("controller-lb2");
  c1.publish(subjects.decisionPool(SITE, "lb1", "tcp:198.51.100.50:80"), JSON.stringify(poolDecision("lb1")));
  c2.publish(subjects.decisionPool(SITE, "lb2", "tcp:198.51.100.50:80"), JSON.stringify(poolDecision("lb2")));
  await c1.flush(); await c2.flush();
  assert.ok(await until(() => got.length >= 1 && logs.some((l) => l.msg === "subscription ended by the server")));
  await sleep(200);
  assert.deepEqual(got, ["lb1"]);
  const ended = logs.find((l) => l.msg === "subscription ended by the server")!;
  assert.equal(ended.subject, "lvsflow.s.decision.lb2.>");
  assert.match(String(ended.err), /Permissions Violation for Subscription/);
  assert.ok(logs.some((l) => l.msg === "bus error" && /Subscription to "lvsflow\.s\.decision\.lb2\.>"/.test(String(l.err))), "the refusal is logged as a bus error too");
  assert.equal(bus.connected, true, "still connected and serving its own decisions");

  const { nc: prober, errors } = await as("prober-lb1");
  prober.subscribe(`lvsflow.${SITE}.>`);
  await prober.flush();
  assert.ok(await until(() => errors.some((e) => e.includes("Permissions Violation for Subscription"))), "a prober reads nothing");
});

test("clients without a key, with an unknown key, or with a key from another site's file are refused", async (t) => {
  const other = mkdtempSync(join(tmpdir(), "lvsflow-perm-"));
  t.after(() => rmSync(other, { recursive: true, force: true }));
  const stranger = initSecurity({ dir: other, site: SITE, nodes: ["lb1"] });
  await assert.rejects(connect({ servers: servers.natsUrl, timeout: 3000, maxReconnectAttempts: 0 }), /Authorization Violation/);
  await assert.rejects(connect({ servers: servers.natsUrl, timeout: 3000, maxReconnectAttempts: 0, ...natsConnectOptions(natsAuthFromEnv(stranger.env("executor-lb1"))) }), /Authorization Violation/);
});

/** `lvsflow run <service>` as a real process with an identity's environment; its stderr is collected. */
function runService(t: { after(f: () => unknown): void }, service: string, node: string, cfg: string, identity: string): { log: () => string } {
  const child = spawn(process.execPath, [join(ROOT, "bin/lvsflow.mjs"), "run", service, "--node", node, "--config", cfg, "--nats", servers.natsUrl, "--redis", servers.redisUrl, "--state-dir", dirname(cfg)],
    { env: { ...process.env, ...servers.security!.env(identity), LVSFLOW_LOG_JSON: "1" }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  t.after(async () => { if (child.exitCode === null) { child.kill("SIGTERM"); await exited; } });
  return { log: () => stderr };
}

test("Redis: the default user is off, the recorder and a controller (real processes) write what they need, the CLI user only reads", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-perm-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, "s.yaml");
  writeFileSync(cfg, "site: s\nnodes:\n  - { name: lb1, priority: 100 }\ngroups:\n  - { name: web, addresses: [{ address: 198.51.100.50, prefix: 24, interface: front }] }\n" +
    "virtualServices:\n  - { address: 198.51.100.50, port: 80, reals: [{ address: 203.0.113.11, forwarding: masq }] }\n");
  const sec = servers.security!;
  const recorder = runService(t, "recorder", "recorder", cfg, "recorder-recorder");
  const controller = runService(t, "controller", "lb1", cfg, "controller-lb1");
  const stderr = () => `--- recorder ---\n${recorder.log()}\n--- controller ---\n${controller.log()}`;
  assert.ok(await until(() => recorder.log().includes('"redis connected"') && recorder.log().includes('"running"') && controller.log().includes('"running"'), 20_000), stderr());

  const { nc } = await as("controller-lb1");
  const ev = poolDecision("lb1");
  nc.publish(subjects.decisionPool(SITE, "lb1", ev.data.pool.vs), JSON.stringify(ev));
  await nc.flush();

  const cli = new Redis(servers.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, ...servers.redisAuth("operator-operator") });
  const rec = new Redis(servers.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, ...redisAuthFromEnv(sec.env("recorder-recorder")) });
  t.after(() => { cli.disconnect(); rec.disconnect(); });
  await cli.connect(); await rec.connect();
  const recorded = async () => (await readHistory(cli, SITE, {})).some((h: Event) => h.id === ev.id);
  assert.ok(await until(recorded, 10_000), `the recorder appended the decision; the CLI user read it.\n${stderr()}`);
  const versions = async () => (await cli.xrevrange(`lvsflow:${SITE}:config:versions`, "+", "-", "COUNT", 5)).length > 0;
  assert.ok(await until(versions, 10_000), `the services recorded their configuration version; the CLI user reads it.\n${stderr()}`);
  const svc = new Redis(servers.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, ...servers.redisAuth("executor-lb1") });
  t.after(() => svc.disconnect());
  await svc.connect();
  await assert.rejects(svc.xrange(`lvsflow:${SITE}:events`, "-", "+"), /NOPERM/, "an LB node's service user cannot read the audit history");
  await assert.rejects(svc.set(`lvsflow:${SITE}:snapshot:lb2:x`, "forged"), /NOPERM/, "nor write any snapshot");
  const ctl = new Redis(servers.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, ...servers.redisAuth("controller-lb1") });
  t.after(() => ctl.disconnect());
  await ctl.connect();
  await assert.rejects(ctl.set(`lvsflow:${SITE}:snapshot:lb2:x`, "forged"), /NOPERM/, "a controller writes only its own node's snapshots");
  await assert.rejects(cli.xadd(`lvsflow:${SITE}:events`, "*", "forged", "1"), /NOPERM/);
  await assert.rejects(cli.del(`lvsflow:${SITE}:events`), /NOPERM/);
  await assert.rejects(cli.get("lvsflow:othersite:x"), /NOPERM/, "another site's keys");
  await assert.rejects(rec.get("lvsflow:othersite:cursor"), /NOPERM/, "the recorder touches only its site's keys");
  await assert.rejects(rec.del(`lvsflow:${SITE}:events`), /NOPERM/, "nor delete it");
  await assert.rejects(rec.eval("return redis.call('DEL', KEYS[1])", 1, `lvsflow:${SITE}:events`), /can't run this command/, "not even from a script");
  await assert.rejects(rec.flushall(), /NOPERM/);
  // The default user is off: a client without a user gets nothing (raw RESP, no client library in between).
  const reply = await new Promise<string>((resolve, reject) => {
    const c = tcpConnect(servers.redisPort, "127.0.0.1", () => c.write(`GET lvsflow:${SITE}:cursor\r\n`));
    c.setTimeout(5000, () => { c.destroy(); reject(new Error("no reply")); });
    c.once("data", (b) => { c.destroy(); resolve(b.toString()); });
    c.once("error", reject);
  });
  assert.match(reply, /^-NOAUTH/);
  await sleep(1000);
  assert.doesNotMatch(stderr(), /NOPERM|Permissions Violation|JetStream unavailable|"level":50/, "the services needed nothing they were refused");
});

test("TLS: clients verify the server with the site's CA; with --tls-verify the server requires client certificates too", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-tls-"));
  const procs: { stop(): Promise<void> }[] = [];
  t.after(async () => { for (const p of procs) await p.stop(); rmSync(dir, { recursive: true, force: true }); });
  for (const verify of [false, true]) {
    const sec = initSecurity({ dir: join(dir, String(verify)), site: SITE, nodes: ["lb1"], tls: { hosts: [], verify } });
    const port = await freePort();
    procs.push(startProc("nats-server", ["-c", sec.natsConf, "-a", "127.0.0.1", "-p", String(port)]));
    await waitForPort(port);
    const url = `tls://127.0.0.1:${port}`;
    const ok = await connect({ servers: url, timeout: 5000, ...natsConnectOptions(natsAuthFromEnv(sec.env("operator-operator"))) });
    assert.equal(ok.info?.tls_required, true);
    assert.equal(ok.info?.tls_verify ?? false, verify);
    await ok.close();
    const seedOnly = { LVSFLOW_NATS_NKEY_FILE: sec.nkeyFile("operator-operator") };
    // Without the CA the self-signed site certificate is not trusted.
    await assert.rejects(connect({ servers: url, timeout: 3000, maxReconnectAttempts: 0, ...natsConnectOptions(natsAuthFromEnv(seedOnly)) }));
    if (verify) {
      // The CA but no client certificate: the server closes the handshake.
      await assert.rejects(connect({ servers: url, timeout: 3000, maxReconnectAttempts: 0, ...natsConnectOptions(natsAuthFromEnv({ ...seedOnly, LVSFLOW_NATS_TLS_CA: sec.tls!.ca })) }));
    }
  }
  // Redis over TLS with the same CA and server certificate, as `lvsflow security init` prints it.
  const sec = initSecurity({ dir: join(dir, "false"), site: SITE, nodes: ["lb1"], tls: { hosts: [], verify: false } });
  const port = await freePort();
  procs.push(startProc("redis-server", ["--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
    "--aclfile", sec.redisAcl, "--tls-cert-file", sec.tls!.cert, "--tls-key-file", sec.tls!.key, "--tls-ca-cert-file", sec.tls!.ca, "--tls-auth-clients", "no"]));
  await waitForPort(port);
  const r = new Redis(`rediss://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 0, ...redisAuthFromEnv(sec.env("recorder-recorder")) });
  t.after(() => r.disconnect());
  await r.connect();
  assert.equal(await r.ping(), "PONG");
});
