// Live reload in the running lab (the seed's cluster in network namespaces, real nats-server,
// redis-server, nftables and TCP traffic from the client namespace): configuration changes made
// while a client sends requests through the VIP fail no request.
//   (a) autoreload: the seed's ldirectord.cf edited in place (autoreload=yes): a weight, a new
//       virtual service; the unchanged virtual service is not touched in the kernel, health kept;
//   (b) lvsflow config push: the client's real removed from both virtual services, drained per
//       quiescent (yes on :80: kept at weight 0 with its affinity; no on :443: gone at once);
//   (c) an invalid edit: rejected by every service, the kernel keeps what it had.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Lab, waitFor } from "../services/lab/main.ts";
import { nsHttpGet, runArgv, nsExec } from "../services/lab/topology.ts";
import { svcChainName, epChainName } from "../services/executor/nft/render.ts";
import { Event, type EventOf } from "../shared/schemas/events.ts";
import { freePort, sleep } from "./harness.ts";
import { runProbeLoop, tearDownLab } from "./lab-client.ts";

const CLI = fileURLToPath(new URL("../bin/lvsflow.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "lvsflow-e2e-reload-"));
let lab: Lab;
let nc: NatsConnection;
const seen: { at: number; ev: Event }[] = [];
const VIP = "198.51.100.50";
const VS80 = `tcp:${VIP}:80`, VS443 = `tcp:${VIP}:443`, VS8080 = `tcp:${VIP}:8080`;
const SERVICES = ["lb1/executor", "lb1/controller", "lb1/prober", "lb2/executor", "lb2/controller", "lb2/prober"];

function ok(v: unknown, msg = "expected a truthy value"): asserts v {
  assert.ok(v, msg);
}
const since = (t0: number) => seen.filter((s) => s.at >= t0).map((s) => s.ev);
const reports = <T extends "config.applied" | "config.rejected">(type: T, t0: number) =>
  since(t0).filter((e): e is EventOf<T> => e.type === type && SERVICES.includes(`${e.data.node}/${e.data.service}`));
const nft = async (lb: "lb1" | "lb2") => (await runArgv(nsExec(lab.ns(lb), ["nft", "list", "table", "ip", "lvsflow"]))).stdout;
const cliEnv = () => ({ ...process.env, ...(lab.security?.env("operator-operator") ?? {}), LVSFLOW_NATS: lab.natsUrl, LVSFLOW_REDIS: lab.redisUrl, LVSFLOW_LOG_LEVEL: "warn" });

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env: cliEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => c.kill("SIGKILL"), 60_000);
    c.on("close", (code) => { clearTimeout(t); resolve({ code: code ?? 1, out, err }); });
  });
}

before(async () => {
  lab = new Lab({ dir, prefix: `r${randomBytes(2).toString("hex")}-`, natsPort: await freePort(), redisPort: await freePort() });
  await lab.up();
  nc = await connect(lab.natsOptions());
  const sub = nc.subscribe("lvsflow.lab.>");
  void (async () => { for await (const m of sub) { const p = Event.safeParse(m.json()); if (p.success && p.data.type !== "node.heartbeat") seen.push({ at: Date.now(), ev: p.data }); } })();
  await waitFor(async () => (await nsHttpGet(lab.ns("cli"), `http://${VIP}/aaaa.html`, 1000)).body === "aaaa", 90_000, "the VIP to answer");
  // Both balancers have both reals in the kernel: the configuration is running everywhere.
  await waitFor(async () => /dnat to 203\.0\.113\.12:80/.test(await nft("lb2")) && /dnat to 203\.0\.113\.11:80/.test(await nft("lb2")), 30_000, "lb2's rules");
});

after(async () => {
  await nc?.close().catch(() => undefined);
  await tearDownLab(() => lab.down(), lab.topo.prefix, dir);
});

const cfPath = () => join(dir, "ldirectord.cf");
const loop = (url: string) => runProbeLoop(lab.ns("cli"), url, { intervalMs: 50, timeoutMs: 2000, count: 300, durationMs: 10_000 });
const failed = (rs: { ok: boolean }[]) => rs.filter((r) => !r.ok);

test("(a) autoreload during traffic: a weight and a new virtual service; :443 untouched in the kernel; no request fails", async () => {
  const original = readFileSync(cfPath(), "utf8");
  const t0 = Date.now();
  const traffic = loop(`http://${VIP}/aaaa.html`);
  await sleep(1500);
  writeFileSync(cfPath(), original.replace("real=203.0.113.12:80 masq", "real=203.0.113.12:80 masq 2")
    + "virtual=198.51.100.50:8080\n    real=203.0.113.11:80 masq\n    real=203.0.113.12:80 masq\n    checktype=connect\n    scheduler=rr\n");
  await waitFor(() => reports("config.applied", t0).length >= 6, 30_000, "config.applied from all six services");
  const results = await traffic;
  assert.deepEqual(failed(results), [], `${results.length} requests`);
  ok(results.length >= 150, `${results.length} requests sent`);
  console.log(`# (a) ${results.length} requests during the autoreload, ${failed(results).length} failed`);

  for (const a of reports("config.applied", t0)) {
    assert.equal(a.data.trigger, "autoreload");
    assert.deepEqual(a.data.changes.virtualServicesAdded, [VS8080]);
    assert.deepEqual(a.data.changes.virtualServicesChanged, [VS80]);
  }
  // The new virtual service serves, through the kernel of the VIP's owner.
  await waitFor(async () => (await nsHttpGet(lab.ns("cli"), `http://${VIP}:8080/aaaa.html`, 1000)).body === "aaaa", 20_000, ":8080 to answer");
  await waitFor(async () => /dport 8080/.test(await nft("lb2")), 20_000, "lb2 has :8080 too");
  // The unchanged virtual service: its chains (service, endpoints) and affinity sets were not
  // touched. (The dispatch chains list every service, so adding one rewrites them, atomically.)
  const h443 = svcChainName(VS443).slice(4);
  const ops = since(t0).filter((e): e is EventOf<"executor.applied"> => e.type === "executor.applied" && e.data.kind === "pool").flatMap((e) => e.data.ops);
  ok(ops.some((o) => /dport 8080/.test(o)), "the executors added :8080 to the kernel");
  assert.deepEqual(ops.filter((o) => new RegExp(`(chain|rule|set|element) ip lvsflow (svc|ep|aff)-${h443}`).test(o)), [], "nothing of :443 touched");
  // Health kept: the :80 pool's first decision under the new version changes no real's state.
  const d80 = since(t0).find((e): e is EventOf<"decision.pool"> => e.type === "decision.pool" && e.data.node === "lb1" && e.data.pool.vs === VS80 && e.data.pool.reals.some((r) => r.weight === 2))!;
  assert.deepEqual(d80.data.changes, [], "no real went through unknown again");
});

test("(b) config push during traffic removes the client's real: drained on :80 (quiescent), gone at once on :443; no request fails", async () => {
  const pinned = (await nsHttpGet(lab.ns("cli"), `http://${VIP}/aaaa.html`, 2000)).rs!;
  const pinnedAddr = pinned === "rs1" ? "203.0.113.11" : "203.0.113.12";
  const other = pinned === "rs1" ? "rs2" : "rs1";
  // The pushed configuration: the lab's, with the client's real removed and :80 quiescent.
  const cf = readFileSync(cfPath(), "utf8")
    .split("\n").filter((l) => !l.startsWith(`real=${pinnedAddr}:`)).join("\n")
    .replace("virtual=198.51.100.50:80\n", "virtual=198.51.100.50:80\nquiescent=yes\n");
  writeFileSync(join(dir, "pushed.cf"), cf);
  writeFileSync(join(dir, "pushed.yaml"), readFileSync(lab.configFile, "utf8").replace("include: ldirectord.cf", "include: pushed.cf"));
  const t0 = Date.now();
  const t80 = loop(`http://${VIP}/aaaa.html`);
  const t443 = loop(`https://${VIP}/aaaa.html`);
  await sleep(1500);
  const pushed = await cli(["config", "push", join(dir, "pushed.yaml"), "--by", "e2e", "--wait", "5"]);
  assert.equal(pushed.code, 0, pushed.out + pushed.err);
  assert.match(pushed.out, /[67] service\(s\) applied it, 0 refused it/);
  const [r80, r443] = await Promise.all([t80, t443]);
  console.log(`# (b) ${r80.length} + ${r443.length} requests during the push, ${failed(r80).length + failed(r443).length} failed`);
  assert.deepEqual(failed(r80), [], "no :80 request failed");
  assert.deepEqual(failed(r443), [], "no :443 request failed");
  const pushedAt = seen.find((s) => s.at >= t0 && s.ev.type === "config.pushed")!.at - t0;
  // :443 (quiescent no): the client moved to the other real once the push was applied.
  ok(r443.filter((r) => r.t > pushedAt + 3000).every((r) => r.rs === other), ":443 served by the remaining real after the push");
  // :80 (quiescent yes): the removed real drains at weight 0 and keeps its persistent client.
  ok(r80.filter((r) => r.t > pushedAt + 3000).every((r) => r.rs === pinned), ":80's persistent client stays on the draining real");
  for (const lb of ["lb1", "lb2"] as const) {
    await waitFor(async () => !new RegExp(`dnat to ${pinnedAddr.replaceAll(".", "\\.")}:443`).test(await nft(lb)), 15_000, `${lb}: the removed real is gone from :443`);
    const rules = await nft(lb);
    ok(rules.includes(epChainName(VS80, `${pinnedAddr}:80`)), `${lb}: the draining real keeps its :80 endpoint`);
    const vmapLine = rules.split("\n").find((l) => l.includes(svcChainName(VS80)) === false && /vmap/.test(l) && l.includes(epChainName(VS80, `${pinned === "rs1" ? "203.0.113.12" : "203.0.113.11"}:80`)));
    ok(vmapLine && !vmapLine.includes(epChainName(VS80, `${pinnedAddr}:80`)), `${lb}: no new connection is scheduled to the draining real`);
  }
});

test("(c) an invalid edit is rejected by every service during traffic; the kernel keeps what it had", async () => {
  const before1 = await nft("lb1");
  const t0 = Date.now();
  const traffic = loop(`http://${VIP}/aaaa.html`);
  await sleep(1000);
  writeFileSync(cfPath(), readFileSync(cfPath(), "utf8") + "virtual=198.51.100.50:9090\n    real=203.0.113.11:80 nat\n");
  await waitFor(() => reports("config.rejected", t0).length >= 6, 30_000, "config.rejected from all six services");
  const results = await traffic;
  assert.deepEqual(failed(results), []);
  for (const r of reports("config.rejected", t0)) {
    assert.equal(r.data.trigger, "autoreload");
    assert.match(r.data.errors[0]!, /ldirectord\.cf:\d+:\d+: error: real: forwarding method must be gate, masq or ipip, not "nat"/);
  }
  await sleep(1500);
  const strip = (s: string) => s.replace(/expires \S+/g, "").replace(/counter packets \d+ bytes \d+/g, "").replace(/elements = \{[^}]*\}/g, "");
  assert.equal(strip(await nft("lb1")), strip(before1), "lb1's table is unchanged");
  ok(!/dport 9090/.test(await nft("lb1")));
  const hist = await cli(["config", "history", "--site", "lab", "--json"]);
  const entries = hist.out.trim().split("\n").map((l) => JSON.parse(l) as { trigger: string; by: string });
  assert.deepEqual(entries.slice(0, 3).map((e) => e.trigger), ["push", "autoreload", "startup"]);
  assert.equal(entries[0]!.by, "e2e");
});
