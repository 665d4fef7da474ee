// The recorder against real nats-server (JetStream, file storage) and redis-server processes:
// exactly once per event id and in bus order, through Redis outages (with and without Redis
// persistence) and a recorder restart while Redis is away; retention by age and by size.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { pino } from "pino";
import { Model } from "../shared/schemas/config.ts";
import { makeEvent, type Event } from "../shared/schemas/events.ts";
import { Bus } from "../shared/bus.ts";
import { subjects } from "../shared/subjects.ts";
import { keys } from "../shared/redis.ts";
import { startRecorder, type RecorderOptions } from "../services/recorder/main.ts";
import { DEFAULT_RETENTION, parseDuration, parseBytes } from "../services/recorder/retention.ts";
import { readHistory } from "../services/cli/audit.ts";
import { startServers, startProc, freePort, waitForPort, sleep, type Proc } from "./harness.ts";

const SITE = "rtest";
const log = pino({ level: process.env.LVSFLOW_LOG_LEVEL ?? "silent" });
const model = Model.parse({ site: SITE, virtualServices: [] });
const src = { service: "prober" as const, node: "lb1" };

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await cond()) return true; await sleep(50); }
  return cond();
}

function health(i: number, ok = i % 3 !== 0, time?: Date): Extract<Event, { type: "health.result" }> {
  return makeEvent("health.result", { vs: "tcp:198.51.100.50:80", real: `203.0.113.${11 + (i % 2)}:80`, prober: "lb1", ok, streak: 1 + (i % 4), check: "connect", latencyMs: 1.5, error: ok ? null : "ECONNREFUSED", httpStatus: null, matched: null }, { source: src, now: time });
}

function decision(i: number): Event {
  return makeEvent("decision.pool", {
    node: "lb1", generation: 1000 + i, fallbackActive: false, changes: [{ real: "203.0.113.11:80", from: "up", to: "down", why: `failurecount 1 reached (#${i})` }],
    pool: { vs: "tcp:198.51.100.50:80", protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: null, reals: [], fallback: null },
  }, { source: { service: "controller", node: "lb1" }, causationId: null });
}

/** Publishes what a site publishes: results, decisions re-sent three times, heartbeats (not recorded). */
function publishMix(nc: NatsConnection, from: number, n: number, sent: Event[]): void {
  for (let i = from; i < from + n; i++) {
    const h = health(i);
    nc.publish(subjects.health(SITE, "lb1", h.data.vs, h.data.real), JSON.stringify(h));
    sent.push(h);
    if (i % 5 === 0) {
      const d = decision(i);
      for (let k = 0; k < 3; k++) nc.publish(subjects.decisionPool(SITE, "lb1", "tcp:198.51.100.50:80"), JSON.stringify(d));
      sent.push(d);
    }
    nc.publish(subjects.heartbeat(SITE, "lb1"), JSON.stringify(makeEvent("node.heartbeat", { node: "lb1", priority: 1, seq: i, startedAt: "x", appliedGeneration: 0, owned: [], faults: [], driver: "nftables" }, { source: { service: "executor", node: "lb1" } })));
  }
}

async function recorder(natsUrl: string, redisUrl: string, opts: RecorderOptions = {}) {
  const bus = await new Bus({ servers: [natsUrl], name: "recorder-test", site: SITE, node: "recorder", service: "recorder", log }).connect();
  const svc = await startRecorder({ site: SITE, node: "recorder", model, configVersion: "cfg", bus, log, redisUrl, httpPort: 0, stateDir: tmpdir() }, opts);
  // Bounded: teardown must not hang when a test failed with the servers already gone.
  return { svc, async stop() { await Promise.race([(async () => { await svc.stop(); await bus.close(); })(), sleep(5000)]); } };
}

function assertExactlyOnceInOrder(history: Event[], sent: Event[]): void {
  const ids = history.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, "no event twice");
  assert.deepEqual(ids, sent.map((e) => e.id), "every event, in the order the bus carried it");
}

test("recorder: exactly once and in order; heartbeats and invalid messages are not recorded; inputs go to their own stream", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const rec = await recorder(servers.natsUrl, servers.redisUrl);
  t.after(() => rec.stop());
  const redis = new Redis(servers.redisUrl); redis.on("error", () => undefined);
  t.after(() => redis.disconnect());

  const sent: Event[] = [];
  publishMix(nc, 0, 40, sent);
  nc.publish(subjects.health(SITE, "lb1", "x", "y"), "{not json");
  const inputs = makeEvent("controller.inputs", { node: "lb1", boot: "boot-1", seq: 0, from: 1, to: 2, count: 0, start: true, encoding: "deflate-json-base64", entries: "" }, { source: { service: "controller", node: "lb1" } });
  nc.publish(subjects.inputs(SITE, "lb1"), JSON.stringify(inputs));
  await nc.flush();
  assert.ok(await until(async () => (await redis.xlen(keys.events(SITE))) >= sent.length && (await redis.xlen(keys.inputs(SITE))) >= 1, 10_000), "recorded");
  await sleep(300);
  assertExactlyOnceInOrder(await readHistory(redis, SITE, {}), sent);
  assert.equal(await redis.xlen(keys.inputs(SITE)), 1);
  const h = rec.svc.health();
  assert.equal(h.durable, true);
  assert.equal(h.ok, true);
});

test("recorder: Redis stops (no persistence) and the recorder restarts meanwhile: the buffer rebuilds the whole history, exactly once, in order", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  let rec = await recorder(servers.natsUrl, servers.redisUrl);
  t.after(() => rec.stop());
  const sent: Event[] = [];
  publishMix(nc, 0, 20, sent);
  await nc.flush();
  let redis = new Redis(servers.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  assert.ok(await until(async () => (await redis.xlen(keys.events(SITE))) >= sent.length, 10_000));
  redis.disconnect();

  const outageAt = Date.now();
  await servers.stopRedis();
  publishMix(nc, 20, 30, sent);
  await nc.flush();
  await sleep(1500);
  // The recorder dies while Redis is away; a new one starts, still without Redis.
  await rec.stop();
  rec = await recorder(servers.natsUrl, servers.redisUrl);
  publishMix(nc, 50, 20, sent);
  await nc.flush();
  await sleep(1500);
  assert.equal(rec.svc.health().ok, false, "unhealthy while Redis is away");
  await servers.startRedis(); // empty: this Redis keeps nothing across restarts
  console.log(`# redis away for ${Date.now() - outageAt} ms, ${sent.length} events published`);
  redis = new Redis(servers.redisUrl); redis.on("error", () => undefined);
  t.after(() => redis.disconnect());
  assert.ok(await until(async () => (await redis.xlen(keys.events(SITE))) >= sent.length, 15_000), "caught up");
  await sleep(500);
  assertExactlyOnceInOrder(await readHistory(redis, SITE, {}), sent);
});

test("recorder: Redis with persistence stops for 8 s: writing resumes at the cursor, exactly once, in order", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-redis-aof-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const startRedis = async () => { const p = startProc("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir]); await waitForPort(port); return p; };
  let redisProc: Proc = await startRedis();
  t.after(() => redisProc.stop());
  const url = `redis://127.0.0.1:${port}`;
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const rec = await recorder(servers.natsUrl, url);
  t.after(() => rec.stop());
  const sent: Event[] = [];
  const loop = (async () => { for (let i = 0; i < 100; i++) { publishMix(nc, i * 2, 2, sent); await sleep(100); } })();
  await sleep(2000);
  await redisProc.stop();
  await sleep(8000);
  redisProc = await startRedis();
  await loop;
  await nc.flush();
  const redis = new Redis(url); redis.on("error", () => undefined);
  t.after(() => redis.disconnect());
  assert.ok(await until(async () => (await redis.xlen(keys.events(SITE))) >= sent.length, 15_000), "caught up");
  await sleep(500);
  const hist = await readHistory(redis, SITE, {});
  assertExactlyOnceInOrder(hist, sent);
  // Stream ids follow event time: an event written late is still found at its own time.
  const late = hist[Math.floor(hist.length / 2)]!;
  const around = await readHistory(redis, SITE, { since: Date.parse(late.time), until: Date.parse(late.time) });
  assert.ok(around.some((e) => e.id === late.id), "found by its own time");
});

test("recorder: retention by age and by size; the in-memory fallback says it is not durable", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const retention = { ...DEFAULT_RETENTION, events: { maxAgeMs: parseDuration("1h"), maxEntries: 1_000_000, maxBytes: parseBytes("64k") } };
  const rec = await recorder(servers.natsUrl, servers.redisUrl, { retention, trimEveryMs: 300, durable: "memory" });
  t.after(() => rec.stop());
  assert.equal(rec.svc.health().durable, false);
  const redis = new Redis(servers.redisUrl); redis.on("error", () => undefined);
  t.after(() => redis.disconnect());
  // 300 events from two days ago, then 1500 fresh ones: the old go by age, the rest is cut to size.
  const old = new Date(Date.now() - 2 * 86_400_000);
  for (let i = 0; i < 300; i++) { const h = health(i, true, old); nc.publish(subjects.health(SITE, "lb1", "v", "r"), JSON.stringify(h)); }
  for (let i = 0; i < 1500; i++) { const h = health(i); nc.publish(subjects.health(SITE, "lb1", "v", "r"), JSON.stringify(h)); }
  await nc.flush();
  assert.ok(await until(async () => Number(await redis.get(keys.seen(SITE, health(0).id)) ?? 0) >= 0 && rec.svc.health().written === 1800, 30_000), `all written (${JSON.stringify(rec.svc.health())})`);
  assert.ok(await until(async () => {
    const hist = await readHistory(redis, SITE, {});
    return hist.length > 0 && hist.every((e) => Date.parse(e.time) > Date.now() - 3_600_000);
  }, 10_000), "entries older than the age limit are gone");
  assert.ok(await until(async () => Number(await redis.call("MEMORY", "USAGE", keys.events(SITE), "SAMPLES", "100")) <= 64 * 1024 * 1.3, 10_000), "cut to about the size limit");
  const len = await redis.xlen(keys.events(SITE));
  console.log(`# retention: ${len} of 1800 entries kept under 64 KiB`);
  assert.ok(len < 1500 && len > 50, `kept ${len}`);
});

test("recorder: a nats-server without JetStream gives the in-memory fallback; once the server has JetStream the recorder switches to it", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-js-later-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  let nats: Proc = startProc("nats-server", ["-a", "127.0.0.1", "-p", String(port)]);
  t.after(() => nats.stop());
  await waitForPort(port);
  const url = `nats://127.0.0.1:${port}`;
  const rec = await recorder(url, servers.redisUrl);
  t.after(() => rec.stop());
  assert.equal(rec.svc.health().durable, false);
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.after(() => nc.close());
  const sent: Event[] = [];
  publishMix(nc, 0, 10, sent);
  await nc.flush();
  const redis = new Redis(servers.redisUrl); redis.on("error", () => undefined);
  t.after(() => redis.disconnect());
  assert.ok(await until(async () => (await redis.xlen(keys.events(SITE))) >= sent.length, 10_000), "recorded from memory");
  await nats.stop();
  nats = startProc("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "js")]);
  await waitForPort(port);
  assert.ok(await until(() => rec.svc.health().durable === true, 20_000), "switched to the JetStream buffer");
  await servers.stopRedis();
  publishMix(nc, 10, 10, sent);
  await nc.flush();
  await sleep(1000);
  await servers.startRedis(); // empty: rebuilt from the buffer, which holds what came after the switch
  const r2 = new Redis(servers.redisUrl); r2.on("error", () => undefined);
  t.after(() => r2.disconnect());
  assert.ok(await until(async () => (await r2.xlen(keys.events(SITE))) >= sent.length - 12, 15_000), "caught up");
  const ids = (await readHistory(r2, SITE, {})).map((e) => e.id);
  assert.deepEqual(ids, sent.slice(-ids.length).map((e) => e.id), "the events after the switch, exactly once, in order");
  assert.equal(ids.length, sent.length - 12, "everything published once the buffer existed (the first 12 went to the Redis that was lost)");
});
