// A probe group votes as one vantage point, end to end on real nats-server and redis-server:
// `lvsflow run controller` and two `lvsflow run prober --probe-group g1` processes, real TCP
// reals on loopback. The member checking a real is SIGKILLed as that real stops answering; the
// other member takes the real over and the controller removes it at once — it does not wait for
// the dead member's last "up" to age out (freshness: 3 intervals + timeout), which it did while
// each prober was its own vantage point. Also: the flag refuses a bad group name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { Event, type EventOf } from "../shared/schemas/events.ts";
import { startServers, startProc, sleep, type Proc } from "./harness.ts";

const CLI = fileURLToPath(new URL("../bin/lvsflow.mjs", import.meta.url));
const SITE = `pg${randomBytes(3).toString("hex")}`;
const INTERVAL = 1, TIMEOUT = 5; // freshness 8 s: a stale vote would hold the removal for seconds
const VS = "tcp:192.0.2.10:80";

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(25)) if (cond()) return;
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

test("probe group: a member SIGKILLed as its real fails does not delay the removal with a stale vote", { timeout: 60_000 }, async (t) => {
  const servers = await startServers();
  t.after(() => servers.stop());
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-pgroup-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const listeners = new Map<number, Server>();
  t.after(() => { for (const l of listeners.values()) l.close(); });
  const listen = () => new Promise<number>((res) => { const s = createServer((c) => c.destroy()); s.listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; listeners.set(p, s); res(p); }); });
  const ports = [await listen(), await listen()];
  const reals = ports.map((p) => `127.0.0.1:${p}`);

  writeFileSync(join(dir, "ldirectord.cf"), `checkinterval=${INTERVAL}\nchecktimeout=${TIMEOUT}\nquiescent=no\n\nvirtual=192.0.2.10:80\n${ports.map((p) => `    real=127.0.0.1:${p} masq\n`).join("")}    checktype=connect\n    scheduler=wrr\n`);
  const yaml = join(dir, "lvsflow.yaml");
  writeFileSync(yaml, `site: ${SITE}\nnodes:\n  - { name: lb1, priority: 100 }\ninclude: ldirectord.cf\n`);

  const seen: { at: number; ev: Event }[] = [];
  const nc = await connect({ servers: servers.natsUrl });
  t.after(() => nc.close());
  const sub = nc.subscribe(`lvsflow.${SITE}.>`);
  void (async () => { for await (const m of sub) { const p = Event.safeParse(m.json()); if (p.success) seen.push({ at: Date.now(), ev: p.data }); } })();
  await nc.flush();
  const of = <T extends Event["type"]>(type: T, since = 0) => seen.filter((s) => s.at >= since && s.ev.type === type) as { at: number; ev: EventOf<T> }[];

  const env = { ...process.env, LVSFLOW_LOG_LEVEL: "warn", LVSFLOW_PROBE_GROUP: "" };
  const common = ["--config", yaml, "--nats", servers.natsUrl, "--redis", servers.redisUrl, "--state-dir", join(dir, "state")];
  const procs = new Map<string, Proc>();
  t.after(async () => { for (const p of procs.values()) await p.stop(); });
  procs.set("lb1", startProc(process.execPath, [CLI, "run", "controller", "--node", "lb1", ...common], { env }));
  for (const p of ["p1", "p2"]) procs.set(p, startProc(process.execPath, [CLI, "run", "prober", "--node", p, "--probe-group", "g1", ...common], { env }));

  // Both members heard, both reals in the pool, and the group's results say so.
  await until(() => ["p1", "p2"].every((p) => of("prober.heartbeat").some((s) => s.ev.data.prober === p && s.ev.data.group === "g1")), 30_000, "both members' heartbeats");
  await until(() => of("decision.pool").some((s) => s.ev.data.pool.reals.length === 2), 30_000, "the first pool decision with both reals");
  assert.ok(of("health.result").every((s) => s.ev.data.group === "g1"), "every result names the group");
  // Who checks reals[0] now: the member whose summaries list it (after the shares settled).
  await sleep(2500);
  const recent = of("health.summary", Date.now() - 1500);
  const checker = recent.find((s) => s.ev.data.results.some((r) => r.real === reals[0]))?.ev.data.prober;
  assert.ok(checker === "p1" || checker === "p2", `a member checks ${reals[0]}`);
  assert.ok(!recent.some((s) => s.ev.data.prober !== checker && s.ev.data.results.some((r) => r.real === reals[0])), "exactly one member checks it");
  const other = checker === "p1" ? "p2" : "p1";

  // The checker dies without a word and, at the same moment, its real stops answering.
  procs.get(checker)!.child.kill("SIGKILL");
  await new Promise<void>((r) => listeners.get(ports[0]!)!.close(() => r()));
  const failedAt = Date.now();
  const removed = () => of("decision.pool", failedAt).find((s) => s.ev.data.changes.some((c) => c.real === reals[0] && c.to === "down"));
  await until(() => removed() !== undefined, 15_000, `the removal of ${reals[0]}`);
  const r = removed()!;
  const ms = r.at - failedAt;
  const why = r.ev.data.changes.find((c) => c.real === reals[0])!.why;
  const takeover = of("health.result", failedAt).find((s) => s.ev.data.real === reals[0]);
  console.log(`# ${checker} SIGKILLed as ${reals[0]} failed: ${other} reported it ${takeover ? takeover.at - failedAt : "?"} ms later, removal decided ${ms} ms after the failure (interval ${INTERVAL} s, timeout ${TIMEOUT} s, stale vote would hold up to ${(3 * INTERVAL + TIMEOUT) * 1000} ms): ${why}`);
  assert.equal(takeover?.ev.data.prober, other, "the surviving member took the real over");
  assert.match(why, new RegExp(`group g1 \\(via prober ${other}\\)`));
  assert.deepEqual(r.ev.data.pool.reals.map((x) => `${x.address}:${x.port}`), [reals[1]]);
  // Bounded by interval + timeout: a dead member's last "up" (its summary, at most an interval
  // old) would have held the removal for at least 3 intervals + timeout - 2 intervals = that much.
  assert.ok(ms < (INTERVAL + TIMEOUT) * 1000, `removal took ${ms} ms`);
});

test("lvsflow run --probe-group refuses a bad name and services without a prober", () => {
  const run = (args: string[], group = "") => spawnSync(process.execPath, [CLI, "run", ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, LVSFLOW_PROBE_GROUP: group } });
  const bad = run(["prober", "--probe-group", "Site.A", "--config", "/nonexistent.yaml"]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--probe-group: invalid probe group name "Site\.A": use lowercase letters, digits, - and _/);
  const wrong = run(["controller", "--probe-group", "g1", "--config", "/nonexistent.yaml"]);
  assert.equal(wrong.status, 2);
  assert.match(wrong.stderr, /--probe-group applies to lvsflow run prober and lvsflow run node, not controller/);
  const env = run(["node", "--config", "/nonexistent.yaml"], "g 1");
  assert.equal(env.status, 2);
  assert.match(env.stderr, /LVSFLOW_PROBE_GROUP: invalid probe group name "g 1"/);
  const help = run(["--help"]);
  assert.match(help.stderr, /--probe-group NAME +LVSFLOW_PROBE_GROUP/);
});
