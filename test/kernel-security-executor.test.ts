// Defence in depth at the executor: the real executor process (`lvsflow run executor`, root) runs
// inside a private network namespace with its own nftables and a `front` interface (a veth pair inside it), reaching
// a real nats-server that enforces the permission configuration through the management relay.
// Forged decisions — another node's, an older term's (also after a restart), addresses or real
// servers outside the configuration — are refused whole and reported to the audit stream, while
// the legitimate controller's decisions are applied. No host kernel state is touched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { makeEvent, Event, type EventOf } from "../shared/schemas/events.ts";
import { subjects } from "../shared/subjects.ts";
import { runCmd } from "../services/executor/run.ts";
import { startHostRelay, type Relay } from "../services/lab/relay.ts";
import { startServers, sleep, type Servers } from "./harness.ts";
import { samples, eventTypes, mutate, accepted, rng } from "./fuzz-events.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SITE = "sx";
const NS = `lvs${randomBytes(3).toString("hex")}-lb1`;
const VIP = "198.51.100.50";
const VS = `tcp:${VIP}:80`;
const METRICS_PORT = 9105; // inside the private namespace
const dir = mkdtempSync(join(tmpdir(), "lvsflow-secx-"));
const CONFIG = join(dir, "sx.yaml");
writeFileSync(CONFIG, `site: ${SITE}
nodes:
  - { name: lb1, priority: 150 }
  - { name: lb2, priority: 100 }
groups:
  - name: web
    garpScheduleMs: []
    addresses:
      - { address: ${VIP}, prefix: 24, interface: front }
virtualServices:
  - { address: ${VIP}, port: 80, scheduler: rr, reals: [{ address: 203.0.113.11, forwarding: masq }, { address: 203.0.113.12, forwarding: masq }] }
`);

let servers: Servers;
let relay: Relay;
const procs: ChildProcess[] = [];
const conns: NatsConnection[] = [];
const seen: Event[] = [];
let executorLog = "";

async function sh(argv: string[], netns?: string): Promise<string> {
  const r = await runCmd(argv, { netns, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${argv.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

function startInNs(argv: string[], env: Record<string, string>, capture: boolean): ChildProcess {
  const child = spawn("ip", ["netns", "exec", NS, ...argv], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", capture ? "pipe" : "ignore"] });
  if (capture) child.stderr!.on("data", (b: Buffer) => (executorLog += b.toString()));
  procs.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(t);
}

const startExecutor = () => startInNs([process.execPath, join(ROOT, "bin/lvsflow.mjs"), "run", "executor", "--node", "lb1", "--config", CONFIG,
  "--nats", "nats://127.0.0.1:4222", "--state-dir", join(dir, "state"), "--http-port", String(METRICS_PORT)], { ...servers.security!.env("executor-lb1"), LVSFLOW_LOG_JSON: "1" }, true);

/** The executor's /metrics, read from inside its namespace. */
async function executorRejections(): Promise<Record<string, number>> {
  const text = await sh([process.execPath, "-e", `fetch("http://127.0.0.1:${METRICS_PORT}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`], NS);
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^lvsflow_events_rejected_total\{subject="([^"]+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function as(identity: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const nc = await connect({ servers: servers.natsUrl, name: identity, ...servers.natsAuth(identity) });
  conns.push(nc);
  const errors: string[] = [];
  void (async () => { for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error)); })();
  return { nc, errors };
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await cond()) return; await sleep(50); }
  assert.fail(`timed out after ${ms} ms waiting for ${what}\n--- executor log ---\n${executorLog.slice(-4000)}`);
}

const frontAddresses = async () => (JSON.parse(await sh(["ip", "-j", "addr", "show", "dev", "front"], NS)) as { addr_info: { local: string }[] }[])[0]!.addr_info.map((a) => a.local);
const nftTables = async () => (await sh(["nft", "list", "tables"], NS)).trim();
const rejections = () => seen.filter((e): e is EventOf<"bus.rejected"> => e.type === "bus.rejected" && e.source.service === "executor");
const ctl = { source: { service: "controller" as const, node: "lb1" } };

const owner = (o: { node?: string; generation: number; role: "owner" | "backup"; term: number; addresses?: { address: string; prefix: number; interface: string }[] }) =>
  makeEvent("decision.owner", { node: o.node ?? "lb1", generation: o.generation, group: "web", role: o.role, term: o.term, owner: o.role === "owner" ? "lb1" : "lb2",
    addresses: o.addresses ?? [{ address: VIP, prefix: 24, interface: "front" }], garpScheduleMs: [], why: "test" }, ctl);
const realSpec = (address: string) => ({ address, port: 80, forwarding: "masq" as const, weight: 1, lowerThreshold: null, upperThreshold: null });
const pool = (generation: number, reals: string[]) => makeEvent("decision.pool", { node: "lb1", generation, changes: [], fallbackActive: false,
  pool: { vs: VS, protocol: "tcp", family: "ipv4", address: VIP, port: 80, fwmark: null, scheduler: "rr", persistence: null, reals: reals.map(realSpec), fallback: null } }, ctl);

before(async () => {
  servers = await startServers({ auth: { site: SITE, nodes: ["lb1", "lb2"] } });
  await sh(["ip", "netns", "add", NS]);
  await sh(["ip", "link", "set", "lo", "up"], NS);
  // `front` is one end of a veth pair whose both ends live in the namespace (no dummy module needed).
  await sh(["ip", "link", "add", "front", "type", "veth", "peer", "name", "frontp"], NS);
  await sh(["ip", "link", "set", "front", "up"], NS);
  await sh(["ip", "link", "set", "frontp", "up"], NS);
  // The namespace reaches the host's nats-server through a unix socket (services/lab/relay.ts).
  relay = await startHostRelay(join(dir, "nats.sock"), servers.natsPort, { log: () => undefined });
  startInNs([process.execPath, "--import", "tsx", join(ROOT, "services/lab/relay.ts"), "ns", "4222", join(dir, "nats.sock")], {}, false);
  const { nc } = await as("operator-operator");
  const sub = nc.subscribe(`lvsflow.${SITE}.>`);
  // The fuzz test publishes garbage on these subjects too: m.json() may throw.
  void (async () => { for await (const m of sub) { try { const p = Event.safeParse(m.json()); if (p.success) seen.push(p.data); } catch { /* not JSON */ } } })();
  await nc.flush();
  startExecutor();
  await until(() => seen.some((e) => e.type === "node.heartbeat" && e.data.node === "lb1"), 30_000, "the executor's first heartbeat");
});

after(async () => {
  for (const c of conns) await c.close().catch(() => undefined);
  for (const p of procs.reverse()) await stop(p);
  await relay?.close();
  await runCmd(["ip", "netns", "del", NS], { timeoutMs: 10_000 });
  await servers?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the controller's decision is applied: the VIP appears on front in the namespace", async () => {
  const { nc } = await as("controller-lb1");
  const d = owner({ generation: 1, role: "owner", term: 5 });
  nc.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(d));
  await until(() => seen.some((e) => e.type === "executor.applied" && e.causationId === d.id && e.data.ok), 15_000, "executor.applied for the owner decision");
  assert.ok((await frontAddresses()).includes(VIP));
});

test("a decision from an older term is refused and reported; the VIP stays", async () => {
  const { nc } = await as("controller-lb1");
  const stale = owner({ generation: 2, role: "backup", term: 3 });
  nc.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(stale));
  await until(() => rejections().some((r) => r.causationId === stale.id), 10_000, "the old-term refusal on the bus");
  const r = rejections().find((x) => x.causationId === stale.id)!;
  assert.match(r.data.reason, /decision\.owner refused \(old-term\): term 3 < 5 for group web/);
  assert.equal(r.data.subject, subjects.decisionOwner(SITE, "lb1", "web"));
  await sleep(1500); // longer than the executor's repair period: a half-accepted release would show now
  assert.ok((await frontAddresses()).includes(VIP), "still holding the VIP");
  assert.match(executorLog, /ignored a decision from an older term/);
});

test("a decision naming another node is refused on this node's subject; on the other node's subject the server refuses it", async () => {
  const { nc } = await as("controller-lb1");
  const forged = owner({ node: "lb2", generation: 3, role: "backup", term: 9 });
  nc.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(forged));
  await until(() => rejections().some((r) => r.causationId === forged.id), 10_000, "the other-node refusal");
  assert.match(rejections().find((x) => x.causationId === forged.id)!.data.reason, /refused \(other-node\): for node lb2/);

  // lb2's controller key cannot even reach lb1's executor.
  const { nc: lb2, errors } = await as("controller-lb2");
  const intruder = owner({ generation: 4, role: "backup", term: 10 });
  lb2.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(intruder));
  await lb2.flush();
  await until(() => errors.some((e) => e.includes(`Publish to "${subjects.decisionOwner(SITE, "lb1", "web")}"`)), 5000, "the server's refusal");
  await sleep(1500);
  assert.ok(!seen.some((e) => e.id === intruder.id), "nobody received it");
  assert.ok((await frontAddresses()).includes(VIP));
});

test("addresses and real servers outside the configuration are refused whole, never half-applied", async () => {
  const { nc } = await as("controller-lb1");
  const extra = owner({ generation: 5, role: "owner", term: 6, addresses: [{ address: VIP, prefix: 24, interface: "front" }, { address: "203.0.113.99", prefix: 24, interface: "front" }] });
  nc.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(extra));
  const badPool = pool(1, ["203.0.113.11", "192.0.2.66"]);
  nc.publish(subjects.decisionPool(SITE, "lb1", VS), JSON.stringify(badPool));
  await until(() => rejections().some((r) => r.causationId === extra.id) && rejections().some((r) => r.causationId === badPool.id), 10_000, "both outside-config refusals");
  assert.match(rejections().find((x) => x.causationId === extra.id)!.data.reason, /outside-config.*203\.0\.113\.99\/24 on front is not in group web/);
  assert.match(rejections().find((x) => x.causationId === badPool.id)!.data.reason, /outside-config.*real 192\.0\.2\.66:80 is not configured/);
  await sleep(1500);
  assert.deepEqual((await frontAddresses()).filter((a) => a !== VIP && !a.startsWith("fe80")), [], "the valid half (the VIP) was not re-applied with the invalid one");
  assert.doesNotMatch(await nftTables(), /lvsflow/, "no kernel rules from the refused pool");

  // The same path with a configured pool is applied: the refusal above was the guard, not a broken path.
  const good = pool(2, ["203.0.113.11", "203.0.113.12"]);
  nc.publish(subjects.decisionPool(SITE, "lb1", VS), JSON.stringify(good));
  await until(async () => /lvsflow/.test(await nftTables()), 15_000, "the lvsflow table for the valid pool");
});

test("after a crash and restart the executor still refuses the older term (the term is persisted), and keeps the VIP", async () => {
  const running = procs.find((p) => p.spawnargs.includes("executor"))!;
  // SIGKILL: a crash leaves the kernel as it is (a clean stop would hand the VIP over on purpose).
  const exited = new Promise<void>((r) => running.once("exit", () => r()));
  running.kill("SIGKILL");
  await exited;
  assert.ok(existsSync(join(dir, "state", "executor-lb1.json")));
  const restartedAt = seen.length;
  startExecutor();
  await until(() => seen.slice(restartedAt).some((e) => e.type === "node.heartbeat" && e.data.node === "lb1"), 30_000, "the restarted executor's heartbeat");
  assert.ok((await frontAddresses()).includes(VIP), "fail static: the restarted executor kept the VIP it found");
  const { nc } = await as("controller-lb1");
  const replayed = owner({ generation: 1, role: "backup", term: 4 });
  // Re-sent until refused, as a controller re-sends its decisions: the heartbeat above may come
  // before the restarted executor has subscribed to its decisions.
  await until(() => { nc.publish(subjects.decisionOwner(SITE, "lb1", "web"), JSON.stringify(replayed)); return rejections().some((r) => r.causationId === replayed.id); }, 10_000, "the old-term refusal after restart");
  await sleep(1500);
  assert.ok((await frontAddresses()).includes(VIP));
});

test("seeded mutations of every event it listens to: the executor neither crashes nor hangs, and counts each refused message", { timeout: 120_000 }, async () => {
  const all = samples(SITE, "lb1", "lb2");
  // The executor's subscriptions (services/executor/main.ts, shared/config/reload.ts), and who may publish there.
  const targets: { type: Parameters<typeof all.get>[0]; identity: string; takes: string[] }[] = [
    { type: "decision.pool", identity: "controller-lb1", takes: ["decision.pool", "decision.owner"] },
    { type: "decision.owner", identity: "controller-lb1", takes: ["decision.pool", "decision.owner"] },
    { type: "owner.lease", identity: "controller-lb1", takes: ["owner.lease"] },
    { type: "node.heartbeat", identity: "executor-lb2", takes: ["node.heartbeat"] },
    { type: "config.pushed", identity: "operator-operator", takes: ["config.pushed"] },
  ];
  const before = await executorRejections();
  const r = rng(0xe8ec);
  const types = eventTypes();
  const expected: Record<string, number> = {};
  for (const t of targets) {
    const { subject, ev } = all.get(t.type)!;
    const { nc } = await as(t.identity);
    for (let i = 0; i < 150; i++) {
      const payload = mutate(ev, r, types);
      nc.publish(subject, payload);
      if (!accepted(payload, t.takes)) { const k = subject.split(".").slice(0, 3).join("."); expected[k] = (expected[k] ?? 0) + 1; }
    }
    await nc.flush();
  }
  const want = Object.fromEntries(Object.entries(expected).map(([k, n]) => [k, (before[k] ?? 0) + n]));
  let got: Record<string, number> = {};
  await until(async () => { got = await executorRejections(); return Object.entries(want).every(([k, n]) => (got[k] ?? 0) >= n); }, 30_000, `rejections ${JSON.stringify(want)}`);
  await sleep(500);
  got = await executorRejections();
  assert.deepEqual(Object.fromEntries(Object.keys(want).map((k) => [k, got[k] ?? 0])), want);
  const running = procs.filter((p) => p.spawnargs.includes("executor")).at(-1)!;
  assert.equal(running.exitCode, null, "the executor is still running");
  const mark = seen.length;
  await until(() => seen.slice(mark).some((e) => e.type === "node.heartbeat" && e.data.node === "lb1"), 5000, "a heartbeat after the fuzz");
  assert.doesNotMatch(executorLog, /uncaught|unhandled|"level":60/i);
  process.stdout.write(`# executor fuzz: ${targets.length * 150} messages, refused by subject: ${JSON.stringify(expected)}\n`);
});
