// Kernel test: builds the namespace lab under a unique prefix, checks reachability, the
// management relay and link cuts, then tears it down. Needs root, `ip` and namespaces.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Server } from "node:net";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import {
  labUp, labDown, labTopology, setLinks, nsExec, nsHttpGet, listNamespaces, startLabProcess, runArgv, type LabTopology,
} from "../services/lab/topology.ts";
import { startHostRelay, startNsRelay, type Relay } from "../services/lab/relay.ts";
import { freePort, sleep } from "./harness.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsx = (file: string, ...args: string[]) => [process.execPath, "--import", "tsx", join(root, file), ...args];
const isRoot = process.getuid?.() === 0;
// Short prefix: namespace names have no tight limit, but keep `ip` output readable.
const prefix = `lvl${randomBytes(2).toString("hex")}-`;
const dir = mkdtempSync(join(tmpdir(), "lvsflow-lab-"));
let t: LabTopology;
const closers: (() => Promise<unknown>)[] = [];

async function waitForLog(log: string, needle: string, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    let text = "";
    try { text = readFileSync(log, "utf8"); } catch { /* not yet */ }
    if (text.includes(needle)) return;
    await sleep(50);
  }
  throw new Error(`"${needle}" not in ${log} after ${ms} ms: ${readFileSync(log, "utf8")}`);
}

// Sends `msg` from inside a namespace to 127.0.0.1:port and prints what comes back (half-closes after sending).
const ECHO_SCRIPT = `
const s = require('net').connect(+process.argv[1], '127.0.0.1', () => s.end(process.argv[2]));
let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => { process.stdout.write(JSON.stringify({ body: b })); process.exit(0); });
s.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code })); process.exit(0); });
setTimeout(() => { process.stdout.write(JSON.stringify({ error: 'ETIMEDOUT' })); process.exit(0); }, 3000);`;

async function echoFromNs(ns: string, port: number, msg: string): Promise<{ body?: string; error?: string }> {
  const r = await runArgv(nsExec(ns, [process.execPath, "-e", ECHO_SCRIPT, String(port), msg]), { timeoutMs: 8000 });
  return JSON.parse(r.stdout || `{"error":"exit ${r.code}"}`) as { body?: string; error?: string };
}

function echoServer(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    // allowHalfOpen: answer after the client's FIN, proving the relay forwards half-close both ways.
    const server = createServer({ allowHalfOpen: true }, (s) => {
      let b = "";
      s.on("data", (d) => (b += d));
      s.on("end", () => s.end(`echo:${b}`));
      s.on("error", () => {});
    });
    server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

test("relay: in-process host + ns relay pair (root namespace)", async () => {
  const { server, port } = await echoServer();
  const sock = join(dir, "unit.sock");
  const logs: unknown[] = [];
  const host = await startHostRelay(sock, port, { log: (o) => logs.push(o) });
  const nsPort = await freePort();
  const ns = await startNsRelay(nsPort, sock, { log: (o) => logs.push(o) });
  try {
    const got = await new Promise<string>((resolve, reject) => {
      const c = connect(nsPort, "127.0.0.1", () => c.end("ping"));
      let b = "";
      c.on("data", (d) => (b += d));
      c.on("end", () => resolve(b));
      c.on("error", reject);
    });
    assert.equal(got, "echo:ping");
    // Upstream down: the connection is closed, the relay survives and logs the error.
    server.close();
    const closed = await new Promise<string>((resolve) => {
      const c = connect(nsPort, "127.0.0.1");
      c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      c.on("close", () => resolve("closed"));
    });
    assert.ok(["closed", "ECONNRESET"].includes(closed));
    assert.ok(logs.some((l) => (l as { msg?: string }).msg === "connection error"));
  } finally {
    await ns.close();
    await host.close();
    server.close();
  }
});

test("namespace lab", { skip: isRoot ? false : "needs root" }, async (s) => {
  t = await labUp({ prefix, dir });
  {
    const run = (name: string, ns: string, args: string[]) => startLabProcess(dir, name, ns, tsx("services/lab/rs-server.ts", ...args));
    const procs = [
      ...t.reals.map((r) => run(`http-${r.name}`, r.ns, ["--name", r.name, "--http", "80", "--https", "443", "--bind", "0.0.0.0"])),
      // Sorry server on all of lb1's addresses so the client can reach lb1 itself (link-cut test).
      run("http-sorry-lb1", t.lbs.lb1.ns, ["--name", "sorry-lb1", "--sorry", "--http", "80", "--bind", "0.0.0.0"]),
    ];
    await Promise.all(procs.map((p) => waitForLog(p.log, '"listening"')));
  }

  await s.test("topology is complete", async () => {
    const names = await listNamespaces();
    for (const n of t.namespaces) assert.ok(names.includes(n), `${n} missing`);
    assert.deepEqual(labTopology(prefix).namespaces, t.namespaces);
    const addrs = (await runArgv(["ip", "-n", t.lbs.lb1.ns, "-br", "addr"])).stdout;
    assert.match(addrs, /front@\S+\s+UP\s+198\.51\.100\.2\/24/);
    assert.match(addrs, /back@\S+\s+UP\s+203\.0\.113\.2\/24/);
    assert.match(addrs, /sync0@\S+\s+UP\s+192\.0\.2\.1\/24/);
    const fwd = (await runArgv(nsExec(t.lbs.lb2.ns, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.conf.front.route_localnet"]))).stdout;
    assert.deepEqual(fwd.trim().split("\n"), ["1", "1"]);
    const route = (await runArgv(["ip", "-n", t.reals[0].ns, "route", "show", "default"])).stdout;
    assert.match(route, /default via 203\.0\.113\.1 dev eth0/);
  });

  await s.test("client cannot reach a real directly", async () => {
    const r = await nsHttpGet(t.client.ns, `http://${t.reals[0].addr}/aaaa.html`, 1000);
    assert.ok(r.error, `expected failure, got ${JSON.stringify(r)}`);
  });

  await s.test("lb1 reaches rs1/rs2 over HTTP and HTTPS", async () => {
    for (const rs of t.reals) {
      const h = await nsHttpGet(t.lbs.lb1.ns, `http://${rs.addr}/aaaa.html`);
      assert.deepEqual(h, { status: 200, rs: rs.name, body: "aaaa" });
      const hs = await nsHttpGet(t.lbs.lb1.ns, `https://${rs.addr}/aaaa.html`);
      assert.deepEqual(hs, { status: 200, rs: rs.name, body: "aaaa" });
    }
    const who = await nsHttpGet(t.lbs.lb2.ns, `http://${t.reals[1].addr}/whoami`);
    assert.match(who.body ?? "", /^rs2 203\.0\.113\.3:\d+$/);
    const slow = await nsHttpGet(t.lbs.lb1.ns, `http://${t.reals[0].addr}/slow?ms=200`);
    assert.equal(slow.body, "rs1 slow 200");
    assert.equal((await nsHttpGet(t.lbs.lb1.ns, `http://${t.reals[0].addr}/nope`)).status, 404);
  });

  await s.test("client reaches lb1 (sorry server on it)", async () => {
    const r = await nsHttpGet(t.client.ns, `http://${t.lbs.lb1.addrs.front}/aaaa.html`);
    assert.deepEqual(r, { status: 200, rs: "sorry-lb1", body: "sorry from sorry-lb1" });
  });

  await s.test("relay: lb1 namespace reaches a host loopback server", async () => {
    const { server, port } = await echoServer();
    closers.push(() => new Promise((r) => server.close(r)));
    const sock = join(dir, "mgmt.sock");
    const host: Relay = await startHostRelay(sock, port, { log: () => {} });
    closers.push(() => host.close());
    const nsPort = await freePort(); // free on the host; the lb1 namespace has its own port space anyway
    const p = startLabProcess(dir, "relay-lb1", t.lbs.lb1.ns, tsx("services/lab/relay.ts", "ns", String(nsPort), sock));
    await waitForLog(p.log, '"listening"');
    assert.deepEqual(await echoFromNs(t.lbs.lb1.ns, nsPort, "hello"), { body: "echo:hello" });
    // lb2 has no relay: its 127.0.0.1 is its own, nothing listens there.
    assert.ok((await echoFromNs(t.lbs.lb2.ns, nsPort, "hello")).error);
    // Killing the node's relay = that node loses the bus.
    process.kill(p.pid, "SIGTERM");
    const until = Date.now() + 5000;
    let r = await echoFromNs(t.lbs.lb1.ns, nsPort, "again");
    while (!r.error && Date.now() < until) { await sleep(100); r = await echoFromNs(t.lbs.lb1.ns, nsPort, "again"); }
    assert.equal(r.error, "ECONNREFUSED");
  });

  await s.test("setLinks cuts and restores lb1", async () => {
    const url = `http://${t.lbs.lb1.addrs.front}/`;
    await setLinks("lb1", false, prefix);
    assert.ok((await nsHttpGet(t.client.ns, url, 1000)).error, "lb1 still reachable after cut");
    assert.ok((await nsHttpGet(t.lbs.lb2.ns, `http://${t.lbs.lb1.addrs.sync}/`, 1000)).error, "sync link still up");
    await setLinks("lb1", true, prefix);
    let r = await nsHttpGet(t.client.ns, url, 1000);
    for (let i = 0; i < 10 && r.error; i++) { await sleep(200); r = await nsHttpGet(t.client.ns, url, 1000); }
    assert.equal(r.body, "sorry from sorry-lb1");
    assert.equal((await nsHttpGet(t.lbs.lb2.ns, `http://${t.lbs.lb1.addrs.sync}/`, 1000)).body, "sorry from sorry-lb1");
  });

  await s.test("labDown removes everything and is idempotent", async () => {
    const pids = ["http-rs1", "http-rs2", "http-sorry-lb1"].map((n) => Number(readFileSync(join(dir, "pids", n), "utf8").split(" ")[0]));
    const res = await labDown({ dir }); // prefix comes from <dir>/lab.json
    assert.deepEqual([...res.deleted].sort(), [...t.namespaces].sort());
    assert.deepEqual(res.leftoverPids, {});
    const names = await listNamespaces();
    for (const n of t.namespaces) assert.ok(!names.includes(n), `${n} still exists`);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), `pid ${pid} still alive`);
    const again = await labDown({ prefix, dir });
    assert.deepEqual(again, { killed: [], deleted: [], leftoverPids: {} });
  });
});

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  if (isRoot) await labDown({ prefix, dir }).catch((e) => console.error("labDown failed", e));
  rmSync(dir, { recursive: true, force: true });
});
