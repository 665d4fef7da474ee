// End to end in the lab: every decision explainable afterwards. A real failure, an LB failover and
// a configuration change each leave a complete chain that `lvsflow why` prints (evidence →
// decision → kernel change, with times and latencies); Redis stops for 30 s while a real fails
// and returns and lb1 fails over, and afterwards the history holds every event exactly once, in
// order; `lvsflow replay` over the whole recorded run reproduces 100 % of the decisions.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { Lab, waitFor } from "../services/lab/main.ts";
import { nsHttpGet, runArgv, startLabProcess } from "../services/lab/topology.ts";
import { Event, type EventOf } from "../shared/schemas/events.ts";
import { AUDITED } from "../shared/subjects.ts";
import { readHistory } from "../services/cli/audit.ts";
import type { WhyResult } from "../services/cli/why.ts";
import type { ReplayReport } from "../services/controller/replayer.ts";
import { freePort, sleep } from "./harness.ts";
import { tearDownLab } from "./lab-client.ts";

const CLI = fileURLToPath(new URL("../bin/lvsflow.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "lvsflow-e2e-audit-"));
const VIP80 = "http://198.51.100.50/aaaa.html";
const VS80 = "tcp:198.51.100.50:80";
let lab: Lab;
let nc: NatsConnection;
let redis: Redis;
let labStart = 0;
let subscribedAt = 0;
/** The recorder's buffer exists from its first start on: events published before it are not captured. */
let capturedFrom = 0;
const seen: { at: number; ev: Event }[] = [];

/** Runs the lvsflow CLI as the lab's operator (read-only Redis user, operator NATS identity). */
function cli(args: string[], timeoutMs = 60_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, ...(lab.security?.env("operator-operator") ?? {}) };
    const c = spawn(process.execPath, [CLI, ...args, "--site", "lab", "--redis", lab.redisUrl], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
    c.on("close", (code) => { clearTimeout(t); resolve({ code: code ?? -1, out, err }); });
  });
}

const show = (s: string) => console.log(s.trimEnd().split("\n").map((l) => `# ${l}`).join("\n"));

async function holdsVip(lb: "lb1" | "lb2"): Promise<boolean> {
  const r = await runArgv(["ip", "-n", lab.ns(lb), "-j", "addr", "show", "dev", "front"]);
  return r.stdout.includes('"198.51.100.50"');
}

const poolChange = (node: string, real: string, to: "up" | "down", after: number) => seen.find((s) => s.at >= after && s.ev.type === "decision.pool" && s.ev.data.node === node && s.ev.data.pool.vs === VS80 && s.ev.data.changes.some((c) => c.real === real && c.to === to))?.ev as EventOf<"decision.pool"> | undefined;
const appliedAfter = (node: string, kind: string, after: number) => seen.find((s) => s.at >= after && s.ev.type === "executor.applied" && s.ev.data.node === node && s.ev.data.kind === kind && s.ev.data.ok);

before(async () => {
  labStart = Date.now();
  lab = new Lab({ dir, prefix: `a${randomBytes(2).toString("hex")}-`, natsPort: await freePort(), redisPort: await freePort() });
  await lab.up();
  nc = await connect(lab.natsOptions());
  const sub = nc.subscribe("lvsflow.lab.>");
  void (async () => { for await (const m of sub) { const p = Event.safeParse(m.json()); if (p.success && p.data.type !== "node.heartbeat") seen.push({ at: Date.now(), ev: p.data }); } })();
  await nc.flush();
  subscribedAt = Date.now();
  redis = new Redis(lab.redisUrl, { ...lab.redisAuth(), maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined);
  await waitFor(async () => (await nsHttpGet(lab.ns("cli"), VIP80, 1000)).body === "aaaa", 60_000, "the VIP to answer");
  await waitFor(async () => await holdsVip("lb1"), 10_000, "lb1 to hold the VIP");
  let first: Event[] = [];
  await waitFor(async () => (first = await readHistory(redis, "lab", {}, 1)).length > 0, 20_000, "the recorder's first event");
  capturedFrom = Math.max(subscribedAt, Date.parse(first[0]!.time)) + 1;
});

after(async () => {
  redis?.disconnect();
  await nc?.close().catch(() => undefined);
  await tearDownLab(() => lab.down(), lab.topo.prefix, dir);
});

test("a real failure: `lvsflow why <real>` prints probe evidence → each node's decision → the kernel change, with latencies", async () => {
  const real = "203.0.113.12:80";
  const t = Date.now();
  await lab.stopReal("rs2");
  await waitFor(() => !!poolChange("lb1", real, "down", t) && !!poolChange("lb2", real, "down", t), 20_000, "rs2 down on both nodes");
  await waitFor(() => !!appliedAfter("lb1", "pool", t) && !!appliedAfter("lb2", "pool", t), 10_000, "both kernels changed");
  await sleep(1500); // the recorder writes within a second
  const r = await cli(["why", real]);
  show(r.out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /went DOWN/);
  assert.match(r.out, /evidence .*FAIL .*tipped the decision/);
  assert.match(r.out, /decision .*failurecount \d+ reached/);
  assert.match(r.out, /kernel .*applied pool .* ok/);
  assert.match(r.out, /latency .*first evidence → decision \d+ ms .*decision → kernel done \d+ ms/);
  const j = JSON.parse((await cli(["why", real, "--json"])).out) as WhyResult;
  assert.deepEqual(j.chains.map((c) => c.steps.find((s) => s.kind === "decision")!.node).sort(), ["lb1", "lb2"]);
  for (const c of j.chains) {
    assert.ok(c.complete, `complete chain: ${c.title}`);
    assert.ok(c.steps.find((s) => s.kind === "kernel")!.ops!.length > 0, "the exact kernel operations");
  }
  lab.startReal("rs2");
  const back = Date.now();
  await waitFor(() => !!poolChange("lb1", real, "up", back), 20_000, "rs2 back");
});

test("Redis stops for 30 s while a real fails and returns and lb1 fails over: afterwards every event exactly once, in order", async () => {
  const outage = Date.now();
  await lab.kill(["redis-server"]);
  // A real fails and comes back while Redis is away.
  await lab.stopReal("rs1");
  await waitFor(() => !!poolChange("lb1", "203.0.113.11:80", "down", outage), 20_000, "rs1 down");
  lab.startReal("rs1");
  const rs1back = Date.now();
  await waitFor(() => !!poolChange("lb1", "203.0.113.11:80", "up", rs1back), 20_000, "rs1 up");
  // lb1 crashes and its links go down: lb2 takes the VIP.
  const crash = Date.now();
  await lab.crashNode("lb1");
  await lab.links("lb1", false);
  await waitFor(() => seen.some((s) => s.at >= crash && s.ev.type === "decision.owner" && s.ev.data.node === "lb2" && s.ev.data.role === "owner"), 10_000, "lb2 takeover");
  await waitFor(async () => await holdsVip("lb2"), 10_000, "lb2 holds the VIP");
  const rest = 30_000 - (Date.now() - outage);
  if (rest > 0) await sleep(rest);
  // Redis returns (empty: the lab's Redis keeps nothing on disk); the recorder rebuilds from its JetStream buffer.
  const sec = lab.security;
  startLabProcess(lab.dir, "redis-server", null, ["redis-server", "--port", String(lab.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", lab.dir, ...(sec ? ["--aclfile", sec.redisAcl] : [])]);
  const back = Date.now();
  console.log(`# redis away for ${back - outage} ms`);
  const recorded = () => {
    const ids = new Set<string>();
    return seen.filter((s) => AUDITED.has(s.ev.type) && Date.parse(s.ev.time) >= capturedFrom && !ids.has(s.ev.id) && ids.add(s.ev.id)).map((s) => s.ev);
  };
  let hist: Event[] = [];
  await waitFor(async () => {
    try { hist = await readHistory(redis, "lab", {}); } catch { return false; }
    const have = new Set(hist.map((e) => e.id));
    return recorded().filter((e) => Date.parse(e.time) < back).every((e) => have.has(e.id));
  }, 60_000, "the recorder to catch up").catch((e) => {
    const have = new Set(hist.map((x) => x.id));
    const missing = recorded().filter((x) => Date.parse(x.time) < back && !have.has(x.id));
    console.log(`# ${missing.length} missing, first: ${missing.slice(0, 5).map((x) => `${x.type}@${x.source.node} ${x.time}`).join(", ")}; history ${hist.length}`);
    show(readFileSync(join(lab.dir, "logs", "recorder.log"), "utf8").split("\n").slice(-30).join("\n"));
    throw e;
  });
  console.log(`# caught up ${Date.now() - back} ms after Redis returned: ${hist.length} events in the history`);
  const observed = recorded().filter((e) => Date.parse(e.time) < back);
  const ids = hist.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, "no event twice");
  const inHist = new Set(ids);
  assert.deepEqual(observed.filter((e) => !inHist.has(e.id)).map((e) => `${e.type} ${e.time}`), [], "every event the bus carried is in the history");
  const seenIds = new Set(recorded().map((e) => e.id));
  assert.deepEqual(hist.filter((e) => !seenIds.has(e.id) && Date.parse(e.time) >= capturedFrom + 1000 && Date.parse(e.time) < back).map((e) => `${e.type} ${e.time}`), [], "nothing else");
  // In order: each publisher's events in the order it published them, and every cause before its effects.
  const bySource = (evs: Event[]) => { const m = new Map<string, string[]>(); for (const e of evs) { const k = `${e.source.service}@${e.source.node}`; (m.get(k) ?? m.set(k, []).get(k)!).push(e.id); } return m; };
  const h = bySource(hist.filter((e) => seenIds.has(e.id)));
  for (const [src, list] of bySource(observed)) assert.deepEqual(h.get(src)!.filter((id) => list.includes(id)), list, `order of ${src}`);
  const pos = new Map(ids.map((id, i) => [id, i]));
  for (const e of hist) if (e.causationId && pos.has(e.causationId)) assert.ok(pos.get(e.causationId)! < pos.get(e.id)!, `${e.type} ${e.id} after its cause`);
  const during = hist.filter((e) => Date.parse(e.time) >= outage && Date.parse(e.time) < back);
  console.log(`# ${during.length} events happened while Redis was away, all recorded`);
  assert.ok(during.some((e) => e.type === "decision.owner") && during.some((e) => e.type === "executor.applied"), "the outage's decisions and kernel changes are there");

  // why <VIP> at the takeover: lb1's silence (its last heartbeat lb2 heard) → lb2 owner → addresses added.
  const takeover = seen.find((s) => s.at >= crash && s.ev.type === "decision.owner" && s.ev.data.node === "lb2" && s.ev.data.role === "owner")!.ev;
  // At the moment lb2's kernel had the addresses: a real's pool change moments later (port 443 is
  // checked on its own schedule) must not be the "last change" found.
  const added = seen.find((s) => s.at >= crash && s.ev.type === "executor.applied" && s.ev.data.node === "lb2" && s.ev.data.kind === "owner" && s.ev.causationId === takeover.id)?.ev;
  const w = await cli(["why", "198.51.100.50", "--at", new Date(Date.parse(added?.time ?? takeover.time) + (added ? 1 : 500)).toISOString()]);
  show(w.out);
  assert.equal(w.code, 0, w.err);
  assert.match(w.out, /last heartbeat of lb1 heard by lb2/);
  assert.match(w.out, /lb2 sees lb1 DEAD/);
  assert.match(w.out, /group web: lb2 becomes OWNER/);
  assert.match(w.out, /kernel .*lb2 applied owner/);
  const wj = JSON.parse((await cli(["why", "198.51.100.50", "--json", "--at", new Date(Date.parse(takeover.time) + 500).toISOString()])).out) as WhyResult;
  assert.ok(wj.chains.some((c) => c.complete && c.steps.some((s) => s.kind === "decision" && s.node === "lb2")), "complete takeover chain");

  // lb1 returns (its controller restores its snapshots) and takes the group back (preempt).
  await lab.links("lb1", true);
  lab.startNode("lb1");
  await waitFor(async () => (await holdsVip("lb1")) && !(await holdsVip("lb2")), 30_000, "lb1 to preempt");
  await waitFor(async () => (await nsHttpGet(lab.ns("cli"), VIP80, 1000)).body === "aaaa", 10_000, "VIP through lb1");
});

test("a configuration change (lvsflow config push): `lvsflow why <vip:port>` prints version → decision → kernel", async () => {
  // A copy of the lab's configuration, changed: the files the services watch (autoreload=yes) stay
  // as they are, so the change arrives only through the push.
  const pushDir = join(lab.dir, "push");
  mkdirSync(pushDir, { recursive: true });
  const text = readFileSync(join(lab.dir, "ldirectord.cf"), "utf8");
  // The :80 virtual service's second real gets weight 3.
  const i = text.indexOf("virtual=198.51.100.50:80");
  assert.ok(i >= 0, "lab config has the :80 virtual service");
  const changed = text.slice(0, i) + text.slice(i).replace(/real=203\.0\.113\.12:80 masq/, "real=203.0.113.12:80 masq 3");
  assert.notEqual(changed, text);
  writeFileSync(join(pushDir, "ldirectord.cf"), changed);
  writeFileSync(join(pushDir, "lab.yaml"), readFileSync(lab.configFile, "utf8"));
  const t = Date.now();
  const push = await cli(["config", "push", join(pushDir, "lab.yaml"), "--by", "e2e-audit", "--nats", lab.natsUrl], 30_000);
  show(push.out + push.err);
  assert.equal(push.code, 0, push.err);
  const weighted = () => seen.find((s) => s.at >= t && s.ev.type === "decision.pool" && s.ev.data.node === "lb1" && s.ev.data.pool.vs === VS80 && s.ev.data.pool.reals.some((r) => r.address === "203.0.113.12" && r.weight === 3))?.ev;
  await waitFor(() => !!weighted(), 20_000, "the weight change decision");
  await waitFor(() => !!appliedAfter("lb1", "pool", Date.parse(weighted()!.time)), 10_000, "the weight change in lb1's kernel");
  await sleep(1500);
  // At the weight change (on a loaded machine another change of the VIP may follow it).
  const atChange = new Date(Date.parse(weighted()!.time) + 500).toISOString();
  const w = await cli(["why", "198.51.100.50:80", "--at", atChange]);
  show(w.out);
  assert.equal(w.code, 0, w.err);
  assert.match(w.out, /config .*e2e-audit pushed configuration/);
  assert.match(w.out, /decision .*203\.0\.113\.12:80\/w3/);
  assert.match(w.out, /kernel .*lb1 applied pool/);
  const wj = JSON.parse((await cli(["why", "198.51.100.50:80", "--json", "--at", atChange])).out) as WhyResult;
  const lb1 = wj.chains.find((c) => c.steps.some((s) => s.kind === "decision" && s.node === "lb1"))!;
  assert.ok(lb1.complete, "complete configuration chain on lb1");
});

test("`lvsflow replay` over the whole recorded run (failures, outage, crash and restart, failover, preempt, reload) reproduces 100 % of the decisions", async () => {
  await sleep(2500); // last journal batches (flushed every second) and decisions recorded
  const to = Date.now() - 1000;
  const t0 = Date.now();
  const r = await cli(["replay", "--from", new Date(labStart).toISOString(), "--to", new Date(to).toISOString()], 180_000);
  show(`${r.out}${r.err}(replay CLI took ${Date.now() - t0} ms, exit ${r.code})`);
  const rj = await cli(["replay", "--json", "--from", new Date(labStart).toISOString(), "--to", new Date(to).toISOString()], 180_000);
  assert.ok(rj.out.trim(), `replay --json printed nothing: exit ${rj.code} ${rj.err}`);
  const j = JSON.parse(rj.out) as ReplayReport;
  const decided = new Set(seen.filter((s) => (s.ev.type === "decision.pool" || s.ev.type === "decision.owner") && s.ev.source.service === "controller" && Date.parse(s.ev.time) <= to).map((s) => s.ev.id));
  assert.deepEqual(j.problems, []);
  assert.deepEqual(j.differences, []);
  assert.equal(j.compared, decided.size, "every decision of the run compared");
  assert.equal(j.identical, j.compared);
  assert.equal(r.code, 0);
  assert.match(r.out, /IDENTICAL: \d+\/\d+ decisions reproduced \(100 %\)/);
  assert.equal(j.nodes.find((n) => n.node === "lb1")!.boots, 2, "lb1's run before the crash and after the restart");
});
