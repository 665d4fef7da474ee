// Kernel test of the nftables driver and floating addresses (root, nft, ip; no IPVS needed).
// Builds its own namespaces under a random prefix:
//   cli  eth0 198.51.100.10/24 (+ .100-.119 as extra client sources)  ── veth ──  lb front 198.51.100.2/24 (+ VIP .50)
//   lb   back 203.0.113.2/24 ── sw (bridge brb) ── r1 eth0 203.0.113.11/24, r2 eth0 203.0.113.12/24 (default via .2)
// Node HTTP servers answer their own name: r1/r2 on :80 and :443, "fallback" on the lb's 127.0.0.1.
// Teardown kills exactly the PIDs started here and deletes exactly the namespaces created here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { PoolSpec } from "../shared/schemas/events.ts";
import { runCmd } from "../services/executor/run.ts";
import { NftablesDriver } from "../services/executor/nft/driver.ts";
import { affSetName, epChainName, svcChainName } from "../services/executor/nft/render.ts";
import { ensureAddresses, readAddresses, sendGarp } from "../services/executor/addresses.ts";

const isRoot = process.getuid?.() === 0;
const hasNft = spawnSync("nft", ["--version"]).status === 0;
const skip = !isRoot || !hasNft ? "needs root and nft" : false;

const P = `lvt-${randomBytes(3).toString("hex")}-`;
const NS = { cli: `${P}cli`, lb: `${P}lb`, sw: `${P}sw`, r1: `${P}r1`, r2: `${P}r2` };
const created: string[] = [];
const procs: ChildProcess[] = [];
let torn = false;

const VIP = "198.51.100.50";
const VIP_ADDR = { address: VIP, prefix: 24, interface: "front" };
const R1 = "203.0.113.11", R2 = "203.0.113.12";
const extra = (from: number, n: number) => Array.from({ length: n }, (_, i) => `198.51.100.${from + i}`);

async function sh(argv: string[], netns?: string): Promise<string> {
  const r = await runCmd(argv, { netns, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${argv.join(" ")}${netns ? ` (in ${netns})` : ""} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

const SERVER = `
const http = require('http'); const [name, host] = process.argv.slice(1); let n = 0;
for (const port of [80, 443]) http.createServer((q, s) => s.end(name + ' ' + q.socket.remoteAddress + '\\n'))
  .listen(port, host, () => { if (++n === 2) console.log('ready'); });`;

// Sequential GETs, one TCP connection each (Connection: close, no agent); sources rotate.
const CLIENT = `
const http = require('http'); const [url, count, srcs] = process.argv.slice(1);
const src = srcs ? srcs.split(',') : [undefined];
const get = (la) => new Promise((res) => {
  const t0 = Date.now();
  const q = http.get(url, { agent: false, headers: { Connection: 'close' }, localAddress: la, timeout: 1500 }, (r) => {
    let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => res({ src: la, who: b.trim().split(' ')[0], ms: Date.now() - t0 }));
  });
  q.on('timeout', () => q.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
  q.on('error', (e) => res({ src: la, who: 'ERR:' + (e.code || e.message), ms: Date.now() - t0 }));
});
(async () => { const out = []; for (let i = 0; i < +count; i++) out.push(await get(src[i % src.length])); console.log(JSON.stringify(out)); })();`;

interface Hit { src?: string; who: string; ms: number }
async function hits(port: number, count: number, srcs: string[] = []): Promise<Hit[]> {
  const args = ["node", "-e", CLIENT, `http://${VIP}:${port}/`, String(count), ...(srcs.length ? [srcs.join(",")] : [])];
  const r = await runCmd(args, { netns: NS.cli, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Hit[];
}
const tally = (hs: Hit[]) => hs.reduce<Record<string, number>>((m, h) => ((m[h.who] = (m[h.who] ?? 0) + 1), m), {});

function startServer(ns: string, name: string, host: string): Promise<void> {
  const child = spawn("ip", ["netns", "exec", ns, "node", "-e", SERVER, name, host], { stdio: ["ignore", "pipe", "inherit"] });
  procs.push(child);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} in ${ns} not ready`)), 10_000);
    child.stdout!.on("data", (d: Buffer) => { if (d.toString().includes("ready")) { clearTimeout(t); resolve(); } });
    child.once("exit", (c) => { clearTimeout(t); reject(new Error(`${name} exited ${c}`)); });
  });
}

function pool(port: number, over: Partial<PoolSpec> = {}, reals: [string, number][] = [[R1, 1], [R2, 1]]): PoolSpec {
  return {
    vs: `tcp:${VIP}:${port}`, protocol: "tcp", family: "ipv4", address: VIP, port, fwmark: null, scheduler: "wlc",
    persistence: { timeout: 120, netmask: "255.255.255.0" },
    reals: reals.map(([address, weight]) => ({ address, port, forwarding: "masq" as const, weight, lowerThreshold: null, upperThreshold: null })),
    fallback: { address: "127.0.0.1", port, forwarding: "masq" },
    ...over,
  };
}
const seedPools = () => [pool(80), pool(443)];
const driver = new NftablesDriver({ netns: NS.lb });

async function buildLab(): Promise<void> {
  for (const ns of Object.values(NS)) {
    await sh(["ip", "netns", "add", ns]);
    created.push(ns);
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await sh(["ip", "-n", NS.sw, "link", "add", "brb", "type", "bridge", "stp_state", "0", "forward_delay", "0"]);
  await sh(["ip", "-n", NS.sw, "link", "set", "brb", "up"]);
  // veth ends are created inside the namespaces: nothing ever appears in the root namespace
  await sh(["ip", "-n", NS.lb, "link", "add", "front", "type", "veth", "peer", "name", "eth0", "netns", NS.cli]);
  for (const [ns, port, ifname] of [[NS.lb, "lbb", "back"], [NS.r1, "r1b", "eth0"], [NS.r2, "r2b", "eth0"]]) {
    await sh(["ip", "-n", NS.sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns]);
    await sh(["ip", "-n", NS.sw, "link", "set", port, "master", "brb", "up"]);
    await sh(["ip", "-n", ns, "link", "set", ifname, "up"]);
  }
  await sh(["ip", "-n", NS.lb, "link", "set", "front", "up"]);
  await sh(["ip", "-n", NS.cli, "link", "set", "eth0", "up"]);
  for (const a of ["198.51.100.10", ...extra(100, 20)]) await sh(["ip", "-n", NS.cli, "addr", "add", `${a}/24`, "dev", "eth0"]);
  await sh(["ip", "-n", NS.lb, "addr", "add", "198.51.100.2/24", "dev", "front"]);
  await sh(["ip", "-n", NS.lb, "addr", "add", "203.0.113.2/24", "dev", "back"]);
  for (const [ns, a] of [[NS.r1, R1], [NS.r2, R2]]) {
    await sh(["ip", "-n", ns, "addr", "add", `${a}/24`, "dev", "eth0"]);
    await sh(["ip", "-n", ns, "route", "add", "default", "via", "203.0.113.2"]); // LVS-NAT: replies return through the LB
  }
  await Promise.all([startServer(NS.r1, "r1", "0.0.0.0"), startServer(NS.r2, "r2", "0.0.0.0"), startServer(NS.lb, "fallback", "127.0.0.1")]);
}

function teardown(): void {
  if (torn) return;
  torn = true;
  for (const p of procs) if (p.exitCode === null && p.signalCode === null && p.pid) { try { process.kill(p.pid, "SIGKILL"); } catch { /* gone */ } }
  for (const ns of created) spawnSync("ip", ["netns", "del", ns]);
}
process.once("exit", teardown); // also when the run is interrupted

before(async () => {
  if (skip) return;
  try { await buildLab(); } catch (e) { teardown(); throw e; }
});

after(async () => {
  teardown();
  if (skip) return;
  const left = spawnSync("ip", ["netns", "list"]).stdout.toString();
  assert.ok(!left.includes(P), `namespaces left behind: ${left}`);
});

test("addresses: ensureAddresses adds and removes the VIP in the lb namespace", { skip }, async () => {
  assert.deepEqual(await ensureAddresses([VIP_ADDR], true, NS.lb), [`ip addr add ${VIP}/24 dev front`]);
  assert.ok((await readAddresses(NS.lb)).some((a) => a.address === VIP && a.prefix === 24 && a.interface === "front"));
  assert.deepEqual(await ensureAddresses([VIP_ADDR], true, NS.lb), [], "idempotent");
  assert.deepEqual(await ensureAddresses([VIP_ADDR], false, NS.lb), [`ip addr del ${VIP}/24 dev front`]);
  assert.ok(!(await readAddresses(NS.lb)).some((a) => a.address === VIP));
  assert.deepEqual(await ensureAddresses([VIP_ADDR], false, NS.lb), []);
  await assert.rejects(ensureAddresses([{ ...VIP_ADDR, interface: "front;reboot" }], true, NS.lb));
  await assert.rejects(ensureAddresses([{ ...VIP_ADDR, prefix: 33 }], true, NS.lb));
  await assert.rejects(ensureAddresses([{ ...VIP_ADDR, address: "198.51.100.500" }], true, NS.lb));
  await ensureAddresses([VIP_ADDR], true, NS.lb);
  const argv = sendGarp(VIP, "front", NS.lb);
  assert.deepEqual(argv.slice(-6), ["-U", "-c", "1", "-I", "front", VIP]);
  assert.throws(() => sendGarp(VIP, "front x", NS.lb));
});

test("no persistence, rr: both reals get new connections; re-apply runs no nft", { skip }, async () => {
  const pools = seedPools().map((p) => ({ ...p, scheduler: "rr", persistence: null, fallback: null }));
  const r = await driver.apply(pools);
  assert.equal(r.ok, true, r.error ?? "");
  assert.equal(r.readback, "2 services, 4 reals, 0 fallbacks, 0 affinity entries");
  assert.ok(r.ops.includes("sysctl net.ipv4.ip_forward=1"));
  assert.equal((await sh(["sysctl", "-n", "net.ipv4.ip_forward"], NS.lb)).trim(), "1");
  assert.deepEqual(tally(await hits(80, 20)), { r1: 10, r2: 10 }, "numgen inc: exact round robin");
  assert.deepEqual(Object.keys(tally(await hits(443, 4))).sort(), ["r1", "r2"]);
  const again = await driver.apply(pools);
  assert.deepEqual({ ok: again.ok, ops: again.ops, changes: again.changes }, { ok: true, ops: [], changes: 0 });
});

test("persistence /24: one client network sticks to one real; removing it moves new connections, other sets survive", { skip }, async () => {
  const r = await driver.apply(seedPools());
  assert.equal(r.ok, true, r.error ?? "");
  const hs = await hits(80, 12, ["198.51.100.10", ...extra(100, 5)]);
  const who = Object.keys(tally(hs));
  assert.equal(who.length, 1, `all requests on one real: ${JSON.stringify(tally(hs))}`);
  const stuck = who[0], other = stuck === "r1" ? "r2" : "r1";
  const stuckIp = stuck === "r1" ? R1 : R2;
  const before = await driver.read();
  const keptSet = affSetName(`tcp:${VIP}:443`, `${R1}:443`);
  assert.equal(before.sets[affSetName(`tcp:${VIP}:80`, `${stuckIp}:80`)].elements, 1, "one entry: 198.51.100.0");

  const pools = seedPools();
  pools[0].reals = pools[0].reals.filter((x) => x.address !== stuckIp);
  const rm = await driver.apply(pools);
  assert.equal(rm.ok, true, rm.error ?? "");
  assert.ok(rm.ops.includes(`delete set ip lvsflow ${affSetName(`tcp:${VIP}:80`, `${stuckIp}:80`)}`));
  assert.ok(rm.ops.includes(`delete chain ip lvsflow ${epChainName(`tcp:${VIP}:80`, `${stuckIp}:80`)}`));
  const afterRm = await driver.read();
  assert.equal(afterRm.sets[keptSet].handle, before.sets[keptSet].handle, "sets of reals that stay are not recreated");
  assert.deepEqual(tally(await hits(80, 6)), { [other]: 6 });
});

test("quiescent real (weight 0): no new clients, clients with affinity keep going to it", { skip }, async () => {
  assert.equal((await driver.apply([])).ok, true); // empties the table: all chains and sets go
  assert.equal((await driver.read()).sets[affSetName(`tcp:${VIP}:80`, `${R1}:80`)], undefined);
  const host = { timeout: 120, netmask: "255.255.255.255" };
  assert.equal((await driver.apply([pool(80, { scheduler: "rr", persistence: host, fallback: null })])).ok, true);
  const first = await hits(80, 10, extra(100, 10));
  assert.deepEqual(tally(first), { r1: 5, r2: 5 });
  const onR2 = first.filter((h) => h.who === "r2").map((h) => h.src);

  const q = await driver.apply([pool(80, { scheduler: "rr", persistence: host, fallback: null }, [[R1, 1], [R2, 0]])]);
  assert.equal(q.ok, true, q.error ?? "");
  assert.ok(q.ops.every((o) => !o.startsWith("delete")) && q.ops.some((o) => o.includes(svcChainName(`tcp:${VIP}:80`))));
  const again = await hits(80, 10, extra(100, 10));
  for (const h of again) assert.equal(h.who, onR2.includes(h.src) ? "r2" : "r1", `client ${h.src}`);
  assert.deepEqual(tally(await hits(80, 10, extra(110, 10))), { r1: 10 }, "new clients only on the weighted real");
});

test("empty pool: fallback on the lb's 127.0.0.1 answers; without fallback connections are refused at once", { skip }, async () => {
  const r = await driver.apply([pool(80, { reals: [] })]);
  assert.equal(r.ok, true, r.error ?? "");
  assert.equal(r.readback, "1 service, 0 reals, 1 fallback, 0 affinity entries");
  assert.equal((await sh(["sysctl", "-n", "net.ipv4.conf.all.route_localnet"], NS.lb)).trim(), "1");
  assert.deepEqual(tally(await hits(80, 4)), { fallback: 4 });
  assert.equal((await driver.apply([pool(80, { reals: [], fallback: null })])).ok, true);
  const refused = await hits(80, 3);
  for (const h of refused) {
    assert.equal(h.who, "ERR:ECONNREFUSED");
    assert.ok(h.ms < 1000, `refused fast (${h.ms} ms)`);
  }
});

test("drift: a hand-deleted rule is detected by read/plan and repaired", { skip }, async () => {
  assert.equal((await driver.apply(seedPools())).ok, true);
  const svc = svcChainName(`tcp:${VIP}:443`);
  const st = await driver.read();
  assert.equal(driver.plan(seedPools(), st).changes, 0);
  await sh(["nft", "delete", "rule", "ip", "lvsflow", svc, "handle", String(st.chains[svc].rules[0].handle)], NS.lb);
  const plan = driver.plan(seedPools(), await driver.read());
  assert.ok(plan.changes > 0);
  assert.deepEqual(plan.reasons, [`chain ${svc} rules differ (tcp:${VIP}:443)`]);
  const fix = await driver.apply(seedPools());
  assert.equal(fix.ok, true, fix.error ?? "");
  assert.equal(fix.changes, plan.changes);
  assert.equal(driver.plan(seedPools(), await driver.read()).changes, 0);
  assert.equal(Object.keys(tally(await hits(443, 2))).length, 1);
});

test("misfits: a squatting set of the wrong type and a chain with the wrong hook are replaced in one transaction", { skip }, async () => {
  assert.equal((await driver.apply(seedPools())).ok, true);
  const pools = seedPools();
  pools[0].reals.push({ address: "203.0.113.13", port: 80, forwarding: "masq", weight: 1, lowerThreshold: null, upperThreshold: null });
  const vs = `tcp:${VIP}:80`;
  await sh(["nft", "add", "set", "ip", "lvsflow", affSetName(vs, "203.0.113.13:80"), "{ type ipv6_addr; flags timeout; timeout 120s; }"], NS.lb);
  await sh(["nft", "add", "chain", "ip", "lvsflow", epChainName(vs, "203.0.113.13:80"), "{ type filter hook input priority 0; }"], NS.lb);
  const r = await driver.apply(pools);
  assert.equal(r.ok, true, r.error ?? "");
  assert.ok(r.ops.includes(`delete set ip lvsflow ${affSetName(vs, "203.0.113.13:80")}`));
  assert.ok(r.ops.includes(`delete chain ip lvsflow ${epChainName(vs, "203.0.113.13:80")}`));
  const st = await driver.read();
  assert.equal(st.sets[affSetName(vs, "203.0.113.13:80")].type, "ipv4_addr");
  assert.equal(st.chains[epChainName(vs, "203.0.113.13:80")].hook, null);
});

test("nft failure: ok:false with nft's error and the failing statement, nothing half-applied", { skip }, async () => {
  assert.equal((await driver.apply(seedPools())).ok, true);
  // Forged drift the planner cannot see: a rule rewritten by hand with its comment kept. It
  // jumps to the endpoint chain the next apply deletes, so that delete fails (EBUSY) late in
  // the transaction, after the service chain was already flushed and refilled.
  const vs = `tcp:${VIP}:80`, doomed = epChainName(vs, `${R2}:80`);
  const st0 = await driver.read();
  const rule = st0.chains.output.rules[0];
  const comment = `${vs} #${rule.hash}`;
  assert.equal(svcChainName(vs) < svcChainName(`tcp:${VIP}:443`), true, "output rule 0 is the port 80 dispatch");
  await sh(["nft", "replace", "rule", "ip", "lvsflow", "output", "handle", String(rule.handle), "ip", "daddr", VIP, "tcp", "dport", "80", "goto", doomed, "comment", `"${comment}"`], NS.lb);
  const before = await driver.read();
  const pools = seedPools();
  pools[0].reals = pools[0].reals.filter((x) => x.address !== R2);
  const r = await driver.apply(pools);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", new RegExp(`nft -f failed .*nothing applied: [\\s\\S]*busy[\\s\\S]*failing statement: delete chain ip lvsflow ${doomed}`, "i"));
  assert.ok(r.ops.some((o) => o.startsWith(`flush chain ip lvsflow ${svcChainName(vs)}`)), "earlier statements were in the same transaction");
  assert.deepEqual(await driver.read(), before, "all or nothing");
  await sh(["nft", "delete", "rule", "ip", "lvsflow", "output", "handle", String(rule.handle)], NS.lb);
  assert.equal((await driver.apply(pools)).ok, true, "drift (now visible) is repaired");
});

test("a table owned by another process (nft flags owner) fails safe: ok:false, nothing run", { skip }, async () => {
  await sh(["nft", "delete", "table", "ip", "lvsflow"], NS.lb);
  const owner = spawn("ip", ["netns", "exec", NS.lb, "nft", "-i"], { stdio: ["pipe", "ignore", "ignore"] });
  procs.push(owner);
  const gone = new Promise((res) => owner.once("exit", res));
  try {
    owner.stdin!.write("add table ip lvsflow { flags owner; }\n");
    const until = Date.now() + 5000;
    while ((await runCmd(["nft", "list", "tables"], { netns: NS.lb })).stdout.trim() === "") {
      assert.ok(Date.now() < until, "owned table not created");
      await new Promise((res) => setTimeout(res, 50));
    }
    const r = await driver.apply(seedPools());
    assert.equal(r.ok, false);
    assert.deepEqual(r.ops, []);
    assert.ok(r.error, "an error is reported");
  } finally {
    owner.stdin!.end(); // the owned table dies with its owner
    await gone;
  }
  const again = await driver.apply(seedPools());
  assert.equal(again.ok, true, again.error ?? "");
});

test("invalid desired state is rejected before nft runs", { skip }, async () => {
  const before = await driver.read();
  const gate = seedPools();
  gate[1].reals[0].forwarding = "gate";
  const r = await driver.apply(gate);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", /LVS-DR/);
  assert.deepEqual(r.ops, []);
  assert.deepEqual(await driver.read(), before);
});
