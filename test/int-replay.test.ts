// Controllers, prober and recorder on real nats-server (JetStream) and redis-server, with real TCP
// checks on loopback: a real fails and returns, a controller restarts (restored from its Redis
// snapshot, resuming at once), a node goes silent and returns (failover, preempt). Afterwards the
// recorded input journals replay to exactly the recorded decisions, and `why` finds the evidence.
// The executors are stand-ins (heartbeats and held groups only): the kernel part needs root and is
// covered by test/e2e-audit.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { pino } from "pino";
import { Model } from "../shared/schemas/config.ts";
import { Event, makeEvent, type EventOf } from "../shared/schemas/events.ts";
import { Bus } from "../shared/bus.ts";
import { subjects } from "../shared/subjects.ts";
import { keys } from "../shared/redis.ts";
import { startController } from "../services/controller/main.ts";
import { startProber } from "../services/prober/main.ts";
import { startRecorder } from "../services/recorder/main.ts";
import { readHistory } from "../services/cli/audit.ts";
import { replayRange, renderReplay } from "../services/cli/replay.ts";
import { why, renderWhy } from "../services/cli/why.ts";
import { startServers, sleep } from "./harness.ts";
import type { RunningService, ServiceContext } from "../shared/service.ts";

const SITE = "reptest";
const log = pino({ level: process.env.LVSFLOW_LOG_LEVEL ?? "silent" });

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await cond()) return; await sleep(50); }
  if (!(await cond())) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function listen(): Promise<{ srv: Server; port: number }> {
  return new Promise((resolve) => { const srv = createServer((s) => { s.on("error", () => undefined); s.end(); }); srv.listen(0, "127.0.0.1", () => resolve({ srv, port: (srv.address() as { port: number }).port })); });
}

test("controllers' input journals replay to 100 % of the recorded decisions; a restarted controller resumes from its snapshot", async (t) => {
  const servers = await startServers();
  const cleanup: (() => Promise<unknown>)[] = [];
  t.after(async () => { for (const c of cleanup.reverse()) await Promise.race([c().catch(() => undefined), sleep(5000)]); await servers.stop(); });

  const a = await listen();
  let b = await listen();
  const bPort = b.port;
  cleanup.push(() => new Promise((r) => a.srv.close(r)), () => new Promise((r) => b.srv.close(r)));
  const model = Model.parse({
    site: SITE,
    nodes: [{ name: "lb1", priority: 150 }, { name: "lb2", priority: 100 }],
    groups: [{ name: "web", addresses: [{ address: "198.51.100.50", prefix: 24, interface: "front" }], preempt: true }],
    virtualServices: [{
      id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false,
      fallback: { address: "127.0.0.1", port: 80, forwarding: "masq" },
      check: { type: "connect", service: "none", request: "", receive: "", port: null, interval: 0.3, timeout: 0.3, failureCount: 2 },
      reals: [{ address: "127.0.0.1", port: a.port, forwarding: "masq", weight: 1 }, { address: "127.0.0.1", port: bPort, forwarding: "masq", weight: 1 }],
    }],
  });
  const realB = `127.0.0.1:${bPort}`;
  const ctxFor = async (node: string, service: "controller" | "prober" | "recorder" | "executor"): Promise<ServiceContext> => {
    const bus = await new Bus({ servers: [servers.natsUrl], name: `${service}-${node}`, site: SITE, node, service, log }).connect();
    cleanup.push(() => bus.close());
    return { site: SITE, node, model, configVersion: "cfg-1", bus, log, redisUrl: servers.redisUrl, httpPort: 0, stateDir: tmpdir() };
  };
  const start = async (svc: Promise<RunningService>) => { const s = await svc; cleanup.push(() => s.stop()); return s; };

  // Everything the bus carries, as the test sees it.
  const nc = await connect({ servers: servers.natsUrl });
  cleanup.push(() => nc.close());
  const seen: { at: number; ev: Event }[] = [];
  const sub = nc.subscribe(`lvsflow.${SITE}.>`);
  void (async () => { for await (const m of sub) { const p = Event.safeParse(m.json()); if (p.success && p.data.type !== "node.heartbeat") seen.push({ at: Date.now(), ev: p.data }); } })();

  // Stand-in executors: heartbeats every 50 ms holding what their controller told them to.
  const alive: Record<string, boolean> = { lb1: true, lb2: true };
  for (const node of ["lb1", "lb2"]) {
    const held = new Map<string, number>();
    let seq = 0;
    const ctx = await ctxFor(node, "executor");
    ctx.bus.subscribe(subjects.decisionsFor(SITE, node), ["decision.pool", "decision.owner"], (ev) => {
      if (ev.type === "decision.owner") { if (ev.data.role === "owner") held.set(ev.data.group, ev.data.term); else held.delete(ev.data.group); }
    });
    const timer = setInterval(() => {
      if (!alive[node]) return;
      ctx.bus.publish(subjects.heartbeat(SITE, node), makeEvent("node.heartbeat", { node, priority: node === "lb1" ? 150 : 100, seq: seq++, startedAt: "t", appliedGeneration: 0, owned: [...held].map(([group, term]) => ({ group, term })), faults: [], driver: "stand-in" }, { source: { service: "executor", node } }));
    }, 50);
    cleanup.push(async () => clearInterval(timer));
  }
  const t0 = Date.now();
  await start(startRecorder(await ctxFor("recorder", "recorder")));
  const controllers: Record<string, RunningService> = {};
  for (const node of ["lb1", "lb2"]) {
    controllers[node] = await start(startController(await ctxFor(node, "controller")));
    await start(startProber(await ctxFor(node, "prober")));
  }
  const poolDecisions = (node: string) => seen.filter((s) => s.ev.type === "decision.pool" && s.ev.source.node === node);
  const owner = (node: string) => seen.map((s) => s.ev).filter((e): e is EventOf<"decision.owner"> => e.type === "decision.owner" && e.data.node === node).at(-1);
  await until(() => poolDecisions("lb1").length > 0 && poolDecisions("lb2").length > 0, 10_000, "first pool decisions");
  await until(() => owner("lb1")?.data.role === "owner", 10_000, "lb1 to own the group");

  // 1. real B fails
  await new Promise((r) => b.srv.close(r));
  await until(() => ["lb1", "lb2"].every((n) => poolDecisions(n).some((s) => s.ev.type === "decision.pool" && s.ev.data.changes.some((c) => c.real === realB && c.to === "down"))), 10_000, "real B down on both");

  // 2. lb1's controller restarts: it resumes from its snapshot at once
  await sleep(600); // a snapshot write (every 250 ms) after the last change
  const lastBefore = poolDecisions("lb1").at(-1)!.ev;
  const ownerBefore = owner("lb1")!;
  await controllers.lb1!.stop();
  const restartAt = Date.now();
  controllers.lb1 = await start(startController(await ctxFor("lb1", "controller")));
  await until(() => seen.some((s) => s.at >= restartAt && s.ev.type === "decision.pool" && s.ev.source.node === "lb1"), 5000, "lb1's pool decision after the restart");
  const first = seen.find((s) => s.at >= restartAt && s.ev.type === "decision.pool" && s.ev.source.node === "lb1")!;
  console.log(`# controller restart: first pool decision ${first.at - restartAt} ms after start (without a snapshot it waits up to interval+timeout+1 s = 1600 ms)`);
  assert.equal(first.ev.id, lastBefore.id, "the restored decision is re-sent as it was (same event id)");
  assert.ok(first.at - restartAt < 1000, "resumed at once");
  // Its ownership decision too, but only after the start-up wait: after a whole-node restart a peer
  // may own the group by now, and the executor adding the addresses at once would overlap it.
  await until(() => seen.some((s) => s.at >= restartAt && s.ev.type === "decision.owner" && s.ev.data.node === "lb1"), 5000, "lb1's owner decision after the restart");
  const firstOwner = seen.find((s) => s.at >= restartAt && s.ev.type === "decision.owner" && s.ev.data.node === "lb1")!;
  assert.equal(firstOwner.ev.id, ownerBefore.id, "the restored owner decision, re-sent as it was");
  assert.ok(firstOwner.at - restartAt >= model.timers.deadMs, `re-sent ${firstOwner.at - restartAt} ms after the start: not before the dead time`);
  const h = controllers.lb1!.health() as unknown as { journal: { journalWaiting: number } };
  assert.equal(h.journal.journalWaiting, 0);

  // 3. real B returns
  b = await (async () => { const srv = createServer((s) => { s.on("error", () => undefined); s.end(); }); await new Promise<void>((r) => srv.listen(bPort, "127.0.0.1", () => r())); return { srv, port: bPort }; })();
  await until(() => ["lb1", "lb2"].every((n) => poolDecisions(n).some((s) => s.at > restartAt && s.ev.type === "decision.pool" && s.ev.data.changes.some((c) => c.real === realB && c.to === "up"))), 10_000, "real B up on both");

  // 4. lb1 goes silent: lb2 takes over; lb1 returns and preempts
  alive.lb1 = false;
  await until(() => owner("lb2")?.data.role === "owner", 5000, "lb2 takeover");
  alive.lb1 = true;
  await until(() => owner("lb1")?.data.role === "owner" && seen.filter((s) => s.ev.type === "decision.owner" && s.ev.data.node === "lb1" && s.ev.data.role === "owner").length >= 2, 10_000, "lb1 preempts");
  await until(() => owner("lb2")?.data.role === "backup", 5000, "lb2 steps back");
  await sleep(1500);
  const t1 = Date.now();

  const redis = new Redis(servers.redisUrl);
  redis.on("error", () => undefined);
  cleanup.push(async () => redis.disconnect());
  const published = new Set(seen.filter((s) => s.ev.type.startsWith("decision.")).map((s) => s.ev.id));
  await until(async () => (await readHistory(redis, SITE, { type: "decision" })).length >= published.size, 10_000, "decisions recorded");
  const report = await replayRange(redis, SITE, t0, t1);
  console.log(renderReplay(report).trimEnd().split("\n").map((l) => `# ${l}`).join("\n"));
  assert.deepEqual(report.differences, []);
  assert.deepEqual(report.problems, []);
  assert.equal(report.compared, published.size, "every published decision compared");
  assert.equal(report.identical, report.compared);
  assert.equal(report.nodes.find((n) => n.node === "lb1")!.boots, 2, "lb1's two runs replayed, the second from its restored snapshot");
  assert.ok((await redis.exists(keys.snapshot(SITE, "lb1", "pool:tcp:198.51.100.50:80"))) === 1, "snapshot in Redis");

  // why: the failed real's evidence and both nodes' decisions; the takeover's cause with lb1's last heartbeat.
  const hist = await readHistory(redis, SITE, {});
  const downAt = Date.parse(seen.find((s) => s.ev.type === "decision.pool" && s.ev.data.changes.some((c) => c.real === realB && c.to === "down"))!.ev.time) + 100;
  const w = why(realB, downAt, hist);
  console.log(renderWhy(w).trimEnd().split("\n").map((l) => `# ${l}`).join("\n"));
  assert.equal(w.kind, "real");
  assert.equal(w.chains.length, 2, "one chain per node");
  for (const c of w.chains) {
    assert.ok(c.steps.some((s) => s.kind === "evidence" && /FAIL/.test(s.text) && /tipped/.test(s.text)), "evidence with the tipping result");
    assert.ok(c.steps.some((s) => s.kind === "decision" && /failurecount 2 reached/.test(s.text)), "the threshold that fired");
    assert.ok(c.latency.detectionMs !== null && c.latency.decideMs !== null && c.latency.decideMs < 1000);
  }
});
