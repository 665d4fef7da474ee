// The prober service end to end on a real nats-server: results and streaks as a controller sees
// them, a real whose listener closes turning down in time, summaries, and schema validity.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { Model } from "../shared/schemas/config.ts";
import { Event } from "../shared/schemas/events.ts";
import { Bus } from "../shared/bus.ts";
import { registry } from "../shared/metrics.ts";
import { subjects } from "../shared/subjects.ts";
import { startProber } from "../services/prober/main.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServers, freePort, sleep } from "./harness.ts";

const SITE = "itest";
const NODE = "lb1";

interface Got { subject: string; ev: Event; at: number }

function listen(srv: { listen: (port: number, host: string, cb: () => void) => unknown; address: () => unknown; once: (e: string, f: (err: Error) => void) => unknown }): Promise<number> {
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve((srv.address() as { port: number }).port));
  });
}

/** Polls `cond` every 20 ms until it holds or `ms` passes; returns whether it held. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

test("prober publishes results, streaks, down transitions and summaries over NATS", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());

  const http = createHttpServer((req, res) => res.end(req.url === "/aaaa.html" ? "aaaa\n" : "nope\n"));
  const httpPort = await listen(http);
  t.after(() => { http.closeAllConnections(); return new Promise<void>((r) => http.close(() => r())); });
  let tcp: TcpServer | null = createTcpServer((s) => s.destroy());
  const tcpPort = await listen(tcp);
  t.after(() => new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r())));
  const closedPort = await freePort();

  const model = Model.parse({
    site: SITE,
    virtualServices: [
      {
        id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
        scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
        check: { type: "negotiate", service: "http", request: "aaaa.html", receive: "aaaa", port: null, interval: 0.3, timeout: 0.3, failureCount: 2 },
        reals: [
          { address: "127.0.0.1", port: httpPort, forwarding: "masq", weight: 1 },
          { address: "127.0.0.1", port: closedPort, forwarding: "masq", weight: 1 },
        ],
      },
      {
        id: "tcp:198.51.100.51:22", protocol: "tcp", address: "198.51.100.51", port: 22, fwmark: null, family: "ipv4",
        scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
        check: { type: "connect", service: "none", request: "", receive: "", port: null, interval: 0.2, timeout: 0.3, failureCount: 3 },
        reals: [{ address: "127.0.0.1", port: tcpPort, forwarding: "gate", weight: 1 }],
      },
    ],
  });
  const vsHttp = model.virtualServices[0].id, vsTcp = model.virtualServices[1].id;
  const realA = `127.0.0.1:${httpPort}`, realB = `127.0.0.1:${closedPort}`, realC = `127.0.0.1:${tcpPort}`;

  // A raw subscriber, as any consumer would see the bus (not through the Bus class).
  const nc: NatsConnection = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const got: Got[] = [];
  const invalid: string[] = [];
  nc.subscribe(subjects.healthAll(SITE), {
    callback: (err, m) => {
      if (err) return void invalid.push(String(err));
      const parsed = Event.safeParse(JSON.parse(m.string()));
      if (!parsed.success) return void invalid.push(`${m.subject}: ${parsed.error.message}`);
      got.push({ subject: m.subject, ev: parsed.data, at: Date.now() });
    },
  });
  await nc.flush();

  const log = pino({ level: process.env.LVSFLOW_LOG_LEVEL ?? "silent" });
  const bus = await new Bus({ servers: [servers.natsUrl], name: "prober-test", site: SITE, node: NODE, service: "prober", log }).connect();
  t.after(() => bus.close());
  const stateDir = mkdtempSync(join(tmpdir(), "lvsflow-prober-"));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const prober = await startProber({ site: SITE, node: NODE, model, configVersion: "cfg-test-1", bus, log, redisUrl: servers.redisUrl, httpPort: 0, stateDir });
  t.after(() => prober.stop());

  const results = (vs: string, real: string) => got.filter((g) => g.ev.type === "health.result" && g.ev.data.vs === vs && g.ev.data.real === real)
    .map((g) => g.ev.data as { ok: boolean; streak: number; error: string | null; check: string });
  const summaries = () => got.filter((g) => g.ev.type === "health.summary");

  // Steady state: each real reports up to its failureCount streak, then goes quiet.
  assert.ok(await until(() => results(vsHttp, realA).length >= 2 && results(vsHttp, realB).length >= 2 && results(vsTcp, realC).length >= 3, 5000),
    `initial results missing: ${JSON.stringify(got.map((g) => g.subject))}`);
  await sleep(800); // several more intervals: nothing more may come while the results stay equal
  assert.deepEqual(results(vsHttp, realA).map((r) => [r.ok, r.streak]), [[true, 1], [true, 2]]);
  assert.deepEqual(results(vsHttp, realB).map((r) => [r.ok, r.streak]), [[false, 1], [false, 2]]);
  assert.match(results(vsHttp, realB)[0].error ?? "", /ECONNREFUSED/);
  assert.equal(results(vsHttp, realA)[0].check, "negotiate/http");
  assert.deepEqual(results(vsTcp, realC).map((r) => [r.ok, r.streak]), [[true, 1], [true, 2], [true, 3]]);
  assert.deepEqual(prober.health(), { ok: true, targets: 3, up: 2, down: 1, unknown: 0 });

  // The connect-checked real's listener closes: down within interval × failureCount + timeout + slack.
  const closedAt = Date.now();
  await new Promise<void>((r) => tcp!.close(() => r()));
  tcp = null;
  const bound = 0.2 * 3 * 1000 + 300 + 700;
  assert.ok(await until(() => results(vsTcp, realC).some((r) => !r.ok && r.streak >= 3), bound + 500), "real never reached 3 failures");
  const downAt = got.find((g) => g.ev.type === "health.result" && g.ev.data.real === realC && !g.ev.data.ok && g.ev.data.streak === 3)!.at;
  assert.ok(downAt - closedAt <= bound, `took ${downAt - closedAt} ms to count 3 failures (bound ${bound} ms)`);
  assert.deepEqual(results(vsTcp, realC).map((r) => [r.ok, r.streak]), [[true, 1], [true, 2], [true, 3], [false, 1], [false, 2], [false, 3]]);

  // Summaries: one per max(1 s, smallest interval), with every checked real.
  assert.ok(await until(() => summaries().length >= 2, 2500), "fewer than 2 summaries");
  const last = summaries().at(-1)!;
  assert.equal(last.subject, subjects.healthSummary(SITE, NODE));
  assert.ok(last.ev.type === "health.summary");
  if (last.ev.type === "health.summary") {
    assert.equal(last.ev.data.intervalMs, 1000);
    const byReal = Object.fromEntries(last.ev.data.results.map((r) => [`${r.vs}|${r.real}`, r]));
    assert.equal(byReal[`${vsHttp}|${realA}`].ok, true);
    assert.equal(byReal[`${vsHttp}|${realB}`].ok, false);
    assert.equal(byReal[`${vsTcp}|${realC}`].ok, false);
    assert.ok(byReal[`${vsHttp}|${realA}`].streak >= 2, "streak keeps counting while quiet");
    for (const r of last.ev.data.results) assert.ok(r.ageMs >= 0 && r.ageMs < 1500, `stale result ${JSON.stringify(r)}`);
  }

  // Envelope: every message valid, stamped with the prober and config version, on its subject.
  assert.deepEqual(invalid, []);
  for (const g of got) {
    assert.deepEqual(g.ev.source, { service: "prober", node: NODE });
    assert.equal(g.ev.configVersion, "cfg-test-1");
    if (g.ev.type === "health.result") assert.equal(g.subject, subjects.health(SITE, NODE, g.ev.data.vs, g.ev.data.real));
  }
  const metricsText = await registry.getSingleMetricAsString("lvsflow_prober_checks_total");
  assert.match(metricsText, /check="connect",result="fail"/);

  // stop(): nothing more is published.
  await prober.stop();
  await sleep(100);
  const n = got.length;
  await sleep(1200);
  assert.equal(got.length, n, "messages after stop()");
});
