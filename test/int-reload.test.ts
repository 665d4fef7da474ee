// Live reload end to end on real nats-server and redis-server, with `lvsflow run controller` and
// `lvsflow run prober` as separate processes (as on an LB node; the executor is left out: it
// changes the kernel and has its own test in the lab). One path for the three triggers:
// SIGHUP, autoreload (a watched file) and `lvsflow config push`; unchanged virtual services keep
// their health state; an invalid configuration is rejected with an event and the running one
// stays; every accepted configuration is a version in Redis; a service started without --config
// runs the newest stored version.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { Event, type EventOf } from "../shared/schemas/events.ts";
import { VersionStore } from "../shared/config/versions.ts";
import { startServers, startProc, sleep, type Proc } from "./harness.ts";

const CLI = fileURLToPath(new URL("../bin/lvsflow.mjs", import.meta.url));
const SITE = `rl${randomBytes(3).toString("hex")}`;

function ok(v: unknown, msg = "expected a truthy value"): asserts v {
  assert.ok(v, msg);
}
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (cond()) return; await sleep(25); }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}
function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => c.kill("SIGKILL"), 60_000);
    c.on("close", (code) => { clearTimeout(t); resolve({ code: code ?? 1, out, err }); });
  });
}

const ld = (o: { autoreload: boolean; weight2: number; extra?: string; broken?: boolean }, p1: number, p2: number) => `# reload test
checkinterval=1
checktimeout=1
autoreload=${o.autoreload ? "yes" : "no"}
quiescent=no

virtual=192.0.2.10:80
    real=127.0.0.1:${p1} masq
    real=127.0.0.2:${p2} masq ${o.weight2}
    checktype=connect
    scheduler=wrr
${o.extra ?? ""}${o.broken ? "virtual=192.0.2.10:81\n    real=127.0.0.1:99999 masq\n" : ""}`;

test("reload: SIGHUP, autoreload and push take one path; state kept; invalid rejected; versions in Redis", { timeout: 180_000 }, async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-reload-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const listeners: Server[] = [];
  t.after(() => { for (const l of listeners) l.close(); });
  const listen = (host: string) => new Promise<number>((res) => { const s = createServer((c) => c.destroy()); listeners.push(s); s.listen(0, host, () => res((s.address() as { port: number }).port)); });
  const p1 = await listen("127.0.0.1"), p2 = await listen("127.0.0.2"), p3 = await listen("127.0.0.1");

  const yaml = join(dir, "lvsflow.yaml"), cf = join(dir, "ldirectord.cf");
  writeFileSync(yaml, `site: ${SITE}\nnodes:\n  - { name: n1, priority: 100 }\ninclude: ldirectord.cf\n`);
  writeFileSync(cf, ld({ autoreload: false, weight2: 1 }, p1, p2));

  // What the services say, as they say it.
  const seen: { at: number; ev: Event }[] = [];
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const sub = nc.subscribe(`lvsflow.${SITE}.>`);
  void (async () => { for await (const m of sub) { const p = Event.safeParse(m.json()); if (p.success && p.data.type !== "node.heartbeat") seen.push({ at: Date.now(), ev: p.data }); } })();
  const since = (t0: number) => seen.filter((s) => s.at >= t0).map((s) => s.ev);
  const configEvents = <T extends "config.applied" | "config.rejected">(type: T, t0: number) => since(t0).filter((e): e is EventOf<T> => e.type === type);
  const poolDecisions = (vs: string, t0: number) => since(t0).filter((e): e is EventOf<"decision.pool"> => e.type === "decision.pool" && e.data.pool.vs === vs);

  const env = { ...process.env, LVSFLOW_LOG_LEVEL: "warn" };
  const common = ["--node", "n1", "--nats", servers.natsUrl, "--redis", servers.redisUrl, "--state-dir", join(dir, "state")];
  const procs: Proc[] = [];
  t.after(async () => { for (const p of procs) await p.stop(); });
  const controller = startProc(process.execPath, [CLI, "run", "controller", "--config", yaml, ...common], { env });
  const prober = startProc(process.execPath, [CLI, "run", "prober", "--config", yaml, ...common], { env });
  procs.push(controller, prober);

  const VS = "tcp:192.0.2.10:80", VS2 = "tcp:192.0.2.10:8080";
  await until(() => poolDecisions(VS, 0).some((d) => d.data.pool.reals.length === 2), 30_000, "the first pool decision with both reals up");
  const v1 = poolDecisions(VS, 0).at(-1)!.configVersion!;
  const redis = new Redis(servers.redisUrl);
  redis.on("error", () => undefined); // the server stops before this client in the after hooks
  t.after(() => redis.disconnect());
  const store = new VersionStore(redis, SITE);
  for (let i = 0; i < 100 && (await store.history()).length === 0; i++) await sleep(50);
  const h0 = await store.history();
  assert.equal(h0.length, 1, "two services started from the same files: one version");
  assert.equal(h0[0]!.version, v1);
  assert.equal(h0[0]!.trigger, "startup");

  // The prober's streak must be past 1 before the reload, or "not reset by the reload" below
  // could not be told from a fresh start.
  await until(() => seen.some((s) => s.ev.type === "health.summary" && s.ev.data.results.some((r) => r.vs === VS && r.real === `127.0.0.1:${p1}` && r.streak >= 2)), 10_000, "a streak of 2 before the reload");

  // 1. SIGHUP: a changed weight and a new virtual service. Both services apply it; the unchanged
  //    reals keep their state (no re-explanation of "unknown → up"), the new one is decided.
  let t0 = Date.now();
  writeFileSync(cf, ld({ autoreload: false, weight2: 3, extra: `virtual=192.0.2.10:8080\n    real=127.0.0.1:${p3} masq\n    checktype=connect\n` }, p1, p2));
  controller.child.kill("SIGHUP");
  prober.child.kill("SIGHUP");
  await until(() => configEvents("config.applied", t0).length === 2, 15_000, "config.applied from both services");
  const applied = configEvents("config.applied", t0);
  for (const a of applied) {
    assert.equal(a.data.trigger, "sighup");
    assert.equal(a.data.previous, v1);
    assert.deepEqual(a.data.changes.virtualServicesAdded, [VS2]);
    assert.deepEqual(a.data.changes.virtualServicesChanged, [VS]);
  }
  const v2 = applied[0]!.data.version;
  await until(() => poolDecisions(VS, t0).some((d) => d.data.pool.reals.some((r) => r.port === p2 && r.weight === 3)), 10_000, "the new weight decided");
  const reweighted = poolDecisions(VS, t0).find((d) => d.data.pool.reals.some((r) => r.port === p2 && r.weight === 3))!;
  assert.deepEqual(reweighted.data.changes, [], "no real changed state: health kept across the reload");
  assert.equal(reweighted.configVersion, v2);
  await until(() => poolDecisions(VS2, t0).some((d) => d.data.pool.reals.length === 1), 15_000, "the added virtual service decided");
  // The prober kept its streaks: a summary right after the reload still counts from before it.
  await until(() => since(t0).some((e) => e.type === "health.summary" && e.configVersion === v2), 5000, "a summary under the new version");
  const sum = since(t0).find((e): e is EventOf<"health.summary"> => e.type === "health.summary" && e.configVersion === v2)!;
  const streak = sum.data.results.find((r) => r.vs === VS && r.real === `127.0.0.1:${p1}`)!.streak;
  const elapsed = (t0 - seen.find((s) => s.ev.type === "decision.pool")!.at) / 1000;
  ok(streak >= 2 && streak >= Math.floor(elapsed) - 1, `streak ${streak} after ~${elapsed.toFixed(1)} s of checks every second: not reset by the reload`);

  // 2. An invalid file (SIGHUP): rejected by both, with FILE:LINE:COL errors; the running
  //    configuration stays (decisions keep version v2).
  t0 = Date.now();
  writeFileSync(cf, ld({ autoreload: false, weight2: 3, broken: true }, p1, p2));
  controller.child.kill("SIGHUP");
  prober.child.kill("SIGHUP");
  await until(() => configEvents("config.rejected", t0).length === 2, 15_000, "config.rejected from both services");
  for (const r of configEvents("config.rejected", t0)) {
    assert.equal(r.data.running, v2);
    assert.match(r.data.errors[0]!, new RegExp(`^${cf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+: error: real: port 99999 is out of range`));
  }
  await sleep(1500);
  const after = poolDecisions(VS, t0);
  ok(after.every((d) => d.configVersion === v2), "decisions still under the running version");
  assert.equal((await store.history())[0]!.version, v2, "the rejected file is not a version");

  // 3. autoreload: turn it on (SIGHUP once), then a plain edit of the file is picked up.
  t0 = Date.now();
  writeFileSync(cf, ld({ autoreload: true, weight2: 2 }, p1, p2));
  controller.child.kill("SIGHUP");
  prober.child.kill("SIGHUP");
  await until(() => configEvents("config.applied", t0).length === 2, 15_000, "autoreload switched on");
  const v3 = configEvents("config.applied", t0)[0]!.data.version;
  ok(configEvents("config.applied", t0).every((a) => a.data.changes.virtualServicesRemoved.includes(VS2)));
  await until(() => !poolDecisions(VS2, Date.now() - 1500).length, 5000, "the removed virtual service no longer re-sent");
  t0 = Date.now();
  writeFileSync(cf, ld({ autoreload: true, weight2: 5 }, p1, p2));
  await until(() => configEvents("config.applied", t0).length === 2, 15_000, "autoreload picked up the edit");
  for (const a of configEvents("config.applied", t0)) { assert.equal(a.data.trigger, "autoreload"); assert.equal(a.data.previous, v3); }
  await until(() => poolDecisions(VS, t0).some((d) => d.data.pool.reals.some((r) => r.port === p2 && r.weight === 5)), 10_000, "weight 5 decided");

  // 4. config push: validated, stored, announced; the CLI lists who applied it.
  const pushFile = join(dir, "pushed.cf");
  writeFileSync(pushFile, ld({ autoreload: false, weight2: 7 }, p1, p2));
  const cliEnv = { ...env, LVSFLOW_NATS: servers.natsUrl, LVSFLOW_REDIS: servers.redisUrl };
  // An ldirectord.cf alone has no site (its model's is "default"): pushed to this site, every
  // service would refuse it, so the CLI refuses first and stores nothing.
  const pushed = await run(["config", "push", pushFile, "--site", SITE, "--by", "alice", "--wait", "0"], cliEnv);
  assert.equal(pushed.code, 1, pushed.out + pushed.err);
  assert.match(pushed.err, /site "default".*--site/);
  const good = join(dir, "pushed.yaml");
  writeFileSync(good, `site: ${SITE}\nnodes:\n  - { name: n1, priority: 100 }\ninclude: pushed.cf\n`);
  t0 = Date.now();
  const pushed2 = await run(["config", "push", good, "--by", "alice", "--wait", "4"], cliEnv);
  assert.equal(pushed2.code, 0, pushed2.out + pushed2.err);
  assert.match(pushed2.out, /2 service\(s\) applied it, 0 refused it/);
  const v5 = /configuration ([0-9a-f]{16}) stored/.exec(pushed2.out)![1]!;
  for (const a of configEvents("config.applied", t0)) { assert.equal(a.data.trigger, "push"); assert.equal(a.data.version, v5); }
  ok(since(t0).some((e) => e.type === "config.pushed" && e.data.by === "alice" && e.data.version === v5), "config.pushed names who pushed");
  await until(() => poolDecisions(VS, t0).some((d) => d.data.pool.reals.some((r) => r.port === p2 && r.weight === 7)), 10_000, "the pushed weight decided");
  // A push of an invalid file stores nothing.
  writeFileSync(join(dir, "bad.cf"), "virtual=192.0.2.10:80\n    real=127.0.0.1:80 nat\n");
  const bad = await run(["config", "push", join(dir, "bad.cf"), "--site", SITE, "--wait", "0"], cliEnv);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /bad\.cf:2:\d+: error: real: forwarding method must be gate, masq or ipip/);

  // 5. The history and a diff.
  const hist = await run(["config", "history", "--site", SITE, "--json"], cliEnv);
  const entries = hist.out.trim().split("\n").map((l) => JSON.parse(l) as { version: string; trigger: string; by: string });
  assert.deepEqual(entries.map((e) => e.trigger), ["push", "autoreload", "sighup", "sighup", "startup"]);
  assert.deepEqual(entries.map((e) => e.version), [v5, entries[1]!.version, v3, v2, v1]);
  assert.equal(entries[0]!.by, "alice");
  const diff = await run(["config", "diff", v2, "latest", "--site", SITE], cliEnv);
  assert.equal(diff.code, 0, diff.err);
  assert.match(diff.out, /- virtual service tcp:192\.0\.2\.10:8080/);
  assert.match(diff.out, new RegExp(`~ ${VS}: real 127\\.0\\.0\\.2:${p2} \\(weight\\)`));
  const show = await run(["config", "show", v5.slice(0, 6), "--site", SITE], cliEnv);
  assert.match(show.out, /real=127\.0\.0\.2:\d+ masq 7/);

  // 6. A controller started without --config runs the newest stored version.
  t0 = Date.now();
  const fresh = startProc(process.execPath, [CLI, "run", "controller", "--site", SITE, "--node", "n2", "--nats", servers.natsUrl, "--redis", servers.redisUrl, "--state-dir", join(dir, "state2")], { env });
  procs.push(fresh);
  await until(() => since(t0).some((e) => e.type === "decision.pool" && e.data.node === "n2"), 30_000, "a decision from the controller started without --config");
  assert.equal(since(t0).find((e) => e.type === "decision.pool" && e.data.node === "n2")!.configVersion, v5);
});
