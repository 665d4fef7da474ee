// The two examples in examples/: the in-process probe module loaded by the prober's loader and run
// as a plugin check against a real HTTP server, and the out-of-process publisher (plain Node)
// publishing health.result events on a real nats-server that pass the bus's own validation — the
// same validation every controller applies before it counts a result.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { VirtualService } from "../shared/schemas/config.ts";
import { Bus } from "../shared/bus.ts";
import { subjects } from "../shared/subjects.ts";
import type { EventOf } from "../shared/schemas/events.ts";
import { runCheck } from "../services/prober/checks.ts";
import { loadProbeModule, unregisterProbe } from "../services/prober/checks/plugins.ts";
import { startServers, freePort } from "./harness.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

test("examples/probe-module.ts: http-json probe, loaded by name, up / down / deadline", async (t) => {
  assert.deepEqual(await loadProbeModule(`${root}/examples/probe-module.ts`), ["http-json"]);
  t.after(() => unregisterProbe("http-json"));
  const srv = createServer((req, res) => {
    if (req.url === "/health") return res.end(JSON.stringify({ status: "ok" }));
    if (req.url === "/degraded") return res.end(JSON.stringify({ status: "degraded" }));
    // /stall never answers
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  t.after(() => { srv.closeAllConnections(); return new Promise<void>((r) => srv.close(() => r())); });
  const port = (srv.address() as { port: number }).port;
  const target = (path: string) => {
    const v = VirtualService.parse({
      id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
      check: { type: "plugin", plugin: "http-json", pluginOptions: { path }, service: "none", request: "", receive: "", port: null, interval: 1, timeout: 0.5, failureCount: 1 },
      reals: [{ address: "127.0.0.1", port, forwarding: "masq", weight: 1 }],
    });
    return { vs: v, real: v.reals[0] };
  };
  const up = await runCheck(target("/health"), new AbortController().signal);
  assert.deepEqual([up.ok, up.matched], [true, 'status="ok"'], up.error ?? "");
  const down = await runCheck(target("/degraded"), new AbortController().signal);
  assert.deepEqual([down.ok, down.error], [false, 'status="degraded", want "ok"']);
  const t0 = Date.now();
  const stall = await runCheck(target("/stall"), new AbortController().signal);
  assert.equal(stall.ok, false);
  assert.ok(Date.now() - t0 < 500 + 200, "the probe outlived its deadline");
});

test("examples/external-publisher.mjs: its health.result events are valid on the bus", async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const up = createServer((_req, res) => res.end("ok"));
  await new Promise<void>((r) => up.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => up.close(() => r())));
  const upReal = `127.0.0.1:${(up.address() as { port: number }).port}`;
  const downReal = `127.0.0.1:${await freePort()}`;
  const log = pino({ level: "silent" });
  const bus = await new Bus({ servers: [servers.natsUrl], name: "ext-test", site: "ext", node: "observer", service: "controller", log }).connect();
  t.after(() => bus.close());
  const got: EventOf<"health.result">[] = [];
  bus.subscribe(subjects.healthAll("ext"), ["health.result"], (ev) => void got.push(ev));
  await new Promise((r) => setTimeout(r, 100));
  const child = spawn(process.execPath, [`${root}/examples/external-publisher.mjs`, "--nats", servers.natsUrl, "--site", "ext", "--name", "ext1",
    "--vs", "tcp:198.51.100.50:80", "--real", upReal, "--real", downReal, "--interval", "0.2", "--count", "3"], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => { const k = setTimeout(() => child.kill("SIGKILL"), 15_000); child.once("exit", (c) => { clearTimeout(k); r(c); }); });
  assert.equal(code, 0, stderr);
  await new Promise((r) => setTimeout(r, 200));
  const of = (real: string) => got.filter((e) => e.data.real === real).map((e) => [e.data.ok, e.data.streak]);
  assert.deepEqual(of(upReal), [[true, 1], [true, 2], [true, 3]]);
  assert.deepEqual(of(downReal), [[false, 1], [false, 2], [false, 3]]);
  for (const e of got) assert.deepEqual([e.source.service, e.data.prober, e.data.vs], ["external", "ext1", "tcp:198.51.100.50:80"]);
});
