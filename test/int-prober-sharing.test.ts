// Probers sharing checks in a probe group, on a real nats-server: the targets are split without
// overlap, a prober that dies silently (its NATS connection cut) has its reals checked by the
// others within about one interval, a clean stop hands over at once, and a joining prober takes
// its share. The takeover times seen are printed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { Model } from "../shared/schemas/config.ts";
import { Event } from "../shared/schemas/events.ts";
import { Bus } from "../shared/bus.ts";
import { subjects } from "../shared/subjects.ts";
import { startProber, type Prober } from "../services/prober/main.ts";
import { startServers, sleep } from "./harness.ts";

const SITE = "share";
const INTERVAL = 0.4;
const REALS = 30;

test("a probe group shares checks, survives a dead prober within an interval, rebalances on join", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const listeners: Server[] = [];
  t.after(() => Promise.all(listeners.map((l) => new Promise<void>((r) => l.close(() => r())))));
  const ports: number[] = [];
  for (let i = 0; i < REALS; i++) {
    const l = createServer((s) => s.destroy());
    await new Promise<void>((r) => l.listen(0, "127.0.0.1", () => r()));
    listeners.push(l);
    ports.push((l.address() as { port: number }).port);
  }
  const model = Model.parse({
    site: SITE,
    virtualServices: [{
      id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
      scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
      check: { type: "connect", service: "none", request: "", receive: "", port: null, interval: INTERVAL, timeout: 0.3, failureCount: 1 },
      reals: ports.map((port) => ({ address: "127.0.0.1", port, forwarding: "masq", weight: 1 })),
    }],
  });
  const realIds = ports.map((p) => `127.0.0.1:${p}`);

  // Every health.result as a controller sees it: who checked which real, when.
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const seen: { prober: string; real: string; at: number }[] = [];
  nc.subscribe(subjects.healthAll(SITE), {
    callback: (_e, m) => {
      const ev = Event.safeParse(JSON.parse(m.string()));
      if (ev.success && ev.data.type === "health.result") seen.push({ prober: ev.data.data.prober, real: ev.data.data.real, at: Date.now() });
    },
  });
  await nc.flush();

  const log = pino({ level: process.env.LVSFLOW_LOG_LEVEL ?? "silent" });
  const stateDir = mkdtempSync(join(tmpdir(), "lvsflow-share-"));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const running = new Map<string, { prober: Prober; bus: Bus }>();
  t.after(async () => { for (const { prober, bus } of running.values()) { await prober.stop(); await bus.close(); } });
  const start = async (name: string) => {
    const bus = await new Bus({ servers: [servers.natsUrl], name, site: SITE, node: name, service: "prober", log }).connect();
    const prober = await startProber({ site: SITE, node: name, model, configVersion: "v1", bus, log, redisUrl: servers.redisUrl, httpPort: 0, stateDir }, { group: "g" });
    running.set(name, { prober, bus });
  };
  const owned = (name: string) => new Set(running.get(name)!.prober.states().map((s) => s.real));

  await Promise.all([start("p1"), start("p2"), start("p3")]);
  await sleep(1500);
  for (const n of ["p1", "p2", "p3"]) assert.deepEqual(running.get(n)!.prober.members(), ["p1", "p2", "p3"]);
  const shares = ["p1", "p2", "p3"].map(owned);
  assert.equal(shares.reduce((a, s) => a + s.size, 0), REALS, `shares ${shares.map((s) => s.size)} overlap or miss reals`);
  assert.deepEqual([...new Set(shares.flatMap((s) => [...s]))].sort(), [...realIds].sort());
  for (const s of shares) assert.ok(s.size > 0, "a member got no checks");

  // p2 dies without a word: its NATS connection is cut and its timers stop.
  const p2reals = [...owned("p2")];
  const dead = running.get("p2")!;
  running.delete("p2");
  await dead.bus.close();
  const diedAt = Date.now();
  await dead.prober.stop();
  const takenOver = async (reals: string[], by: string[], since: number, ms: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const times = reals.map((r) => seen.find((s) => s.real === r && by.includes(s.prober) && s.at >= since)?.at);
      if (times.every((x) => x !== undefined)) return Math.max(...(times as number[])) - since;
      await sleep(20);
    }
    return null;
  };
  const crashMs = await takenOver(p2reals, ["p1", "p3"], diedAt, 5000);
  console.log(`silent death: ${p2reals.length} reals of p2 checked by p1/p3 within ${crashMs} ms (interval ${INTERVAL * 1000} ms)`);
  assert.ok(crashMs !== null, "p2's reals were never taken over");
  // Detection (2.5 heartbeats of 100 ms) + first check within a quarter interval, plus slack for a busy machine.
  assert.ok(crashMs <= INTERVAL * 1000 + 400, `takeover took ${crashMs} ms`);
  assert.equal(owned("p1").size + owned("p3").size, REALS);

  // p3 stops cleanly: it says so, p1 takes everything at once.
  const p3reals = [...owned("p3")];
  const leaving = running.get("p3")!;
  running.delete("p3");
  const leftAt = Date.now();
  await leaving.prober.stop();
  await leaving.bus.close();
  const leaveMs = await takenOver(p3reals, ["p1"], leftAt, 5000);
  console.log(`clean leave: ${p3reals.length} reals of p3 checked by p1 within ${leaveMs} ms`);
  assert.ok(leaveMs !== null && leaveMs <= INTERVAL * 1000 + 300, `clean handover took ${leaveMs} ms`);
  assert.equal(owned("p1").size, REALS);

  // p4 joins: it takes a share and p1 lets go of exactly those.
  await start("p4");
  await sleep(1000);
  const [a, b] = [owned("p1"), owned("p4")];
  assert.ok(b.size > 0 && a.size + b.size === REALS, `p1 ${a.size} + p4 ${b.size}`);
  assert.deepEqual([...a].filter((r) => b.has(r)), []);
});
