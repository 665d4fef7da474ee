// The namespace lab: the seed's two-balancer cluster rebuilt on one machine.
//
//   <p>sw   : bridge brf (front, 198.51.100.0/24) and bridge brb (back, 203.0.113.0/24)
//   <p>cli  : eth0 198.51.100.10                          (front only: reals are not reachable directly)
//   <p>lb1  : front 198.51.100.2, back 203.0.113.2, sync0 192.0.2.1 <-> <p>lb2 sync0 192.0.2.2
//   <p>lb2  : front 198.51.100.3, back 203.0.113.3
//   <p>rs1/2: eth0 203.0.113.11/.12, default via the floating gateway VIP 203.0.113.1 (LVS-NAT)
//   VIP 198.51.100.50 and GW VIP 203.0.113.1 are NOT configured here: they float, the executor owns them.
//
// Every veth is created inside a lab namespace, so nothing ever lands in the root namespace and
// deleting the namespaces removes every link. Interface names are fixed (the namespaces isolate
// them), only namespace names carry the prefix, so several labs can coexist.
import { spawn } from "node:child_process";
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const DEFAULT_PREFIX = "lab-";
export const VIP = "198.51.100.50";
export const GW_VIP = "203.0.113.1";
export const FRONT_NET = "198.51.100.0/24";
export const BACK_NET = "203.0.113.0/24";
export const SYNC_NET = "192.0.2.0/24";
export const PREFIX_LEN = 24;

export type LbName = "lb1" | "lb2";
export type RealName = "rs1" | "rs2";

export interface LbNode {
  name: LbName;
  ns: string;
  /** Interface names inside the LB namespace. */
  ifaces: { front: "front"; back: "back"; sync: "sync0" };
  addrs: { front: string; back: string; sync: string };
  /** This LB's ports on the switch (inside the switch namespace). */
  swPorts: { front: string; back: string };
}

export interface RealNode { name: RealName; ns: string; iface: "eth0"; addr: string; gateway: string; swPort: string }

export interface LabTopology {
  prefix: string;
  /** Every namespace of this lab, switch first. labDown deletes exactly these. */
  namespaces: string[];
  sw: { ns: string; bridges: { front: "brf"; back: "brb" } };
  client: { name: "client"; ns: string; iface: "eth0"; addr: string; swPort: string };
  lbs: Record<LbName, LbNode>;
  reals: RealNode[];
  vip: string;
  gwVip: string;
  prefixLen: number;
}

export function labTopology(prefix = DEFAULT_PREFIX): LabTopology {
  const ns = (n: string) => `${prefix}${n}`;
  const lb = (name: LbName, host: number, sync: string): LbNode => ({
    name, ns: ns(name),
    ifaces: { front: "front", back: "back", sync: "sync0" },
    addrs: { front: `198.51.100.${host}`, back: `203.0.113.${host}`, sync },
    swPorts: { front: `${name}-f`, back: `${name}-b` },
  });
  const rs = (name: RealName, host: number): RealNode =>
    ({ name, ns: ns(name), iface: "eth0", addr: `203.0.113.${host}`, gateway: GW_VIP, swPort: `${name}-b` });
  return {
    prefix,
    namespaces: ["sw", "cli", "lb1", "lb2", "rs1", "rs2"].map(ns),
    sw: { ns: ns("sw"), bridges: { front: "brf", back: "brb" } },
    client: { name: "client", ns: ns("cli"), iface: "eth0", addr: "198.51.100.10", swPort: "cli-f" },
    lbs: { lb1: lb("lb1", 2, "192.0.2.1"), lb2: lb("lb2", 3, "192.0.2.2") },
    reals: [rs("rs1", 11), rs("rs2", 12)],
    vip: VIP, gwVip: GW_VIP, prefixLen: PREFIX_LEN,
  };
}

/** argv that runs a command inside a namespace (no shell involved). */
export function nsExec(ns: string, argv: string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs argv (never through a shell) and collects its output; resolves even on a non-zero exit. */
export function runArgv(argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], timeout: opts.timeoutMs ?? 30_000 });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.stdin.on("error", () => {}); // the command may exit before reading its input
    child.stdin.end(opts.input ?? "");
    child.on("error", (e) => resolve({ code: -1, stdout, stderr: stderr + String(e) }));
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
  });
}

/** Like runArgv, but throws with the command line and stderr on failure. */
export async function mustRun(argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await runArgv(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} -> exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function listNamespaces(): Promise<string[]> {
  const out = await mustRun(["ip", "netns", "list"]);
  // Lines look like "lab-lb1 (id: 3)" or just "lab-lb1".
  return out.split("\n").map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
}

/** Creates the whole topology. Fails (after cleaning up what it made) if any lab namespace exists. */
export async function labUp(opts: { prefix?: string; dir: string }): Promise<LabTopology> {
  const t = labTopology(opts.prefix);
  const existing = new Set(await listNamespaces());
  const clash = t.namespaces.filter((n) => existing.has(n));
  if (clash.length) throw new Error(`lab namespaces already exist (${clash.join(", ")}); run lab down first`);
  mkdirSync(join(opts.dir, "pids"), { recursive: true });
  mkdirSync(join(opts.dir, "logs"), { recursive: true });
  // Recorded so `down` after a crash knows which prefix this directory's lab used.
  writeFileSync(join(opts.dir, "lab.json"), JSON.stringify({ prefix: t.prefix, namespaces: t.namespaces }) + "\n");
  try {
    await build(t);
  } catch (e) {
    await deleteNamespaces(t);
    throw e;
  }
  return t;
}

async function build(t: LabTopology): Promise<void> {
  const ip = (ns: string, ...args: string[]) => mustRun(["ip", "-n", ns, ...args]);
  const sysctl = (ns: string, kv: string) => mustRun(nsExec(ns, ["sysctl", "-qw", kv]));
  const sw = t.sw.ns;
  for (const n of t.namespaces) {
    await mustRun(["ip", "netns", "add", n]);
    await ip(n, "link", "set", "lo", "up");
  }
  // Plain learning bridges: STP off and no forward delay, so a port is forwarding as soon as it is up.
  for (const br of [t.sw.bridges.front, t.sw.bridges.back]) {
    await ip(sw, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0");
    await ip(sw, "link", "set", br, "up");
  }
  // One veth per cable: the switch end stays in the switch ns, the peer is created directly in the node ns.
  const plug = async (ns: string, ifname: string, port: string, bridge: string, addr: string) => {
    await ip(sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns);
    await ip(sw, "link", "set", port, "master", bridge, "up");
    await ip(ns, "addr", "add", `${addr}/${t.prefixLen}`, "dev", ifname);
    await ip(ns, "link", "set", ifname, "up");
  };
  await plug(t.client.ns, t.client.iface, t.client.swPort, t.sw.bridges.front, t.client.addr);
  for (const lb of Object.values(t.lbs)) {
    await plug(lb.ns, lb.ifaces.front, lb.swPorts.front, t.sw.bridges.front, lb.addrs.front);
    await plug(lb.ns, lb.ifaces.back, lb.swPorts.back, t.sw.bridges.back, lb.addrs.back);
  }
  for (const r of t.reals) {
    await plug(r.ns, r.iface, r.swPort, t.sw.bridges.back, r.addr);
    // LVS-NAT: replies must go back through whichever LB holds the gateway VIP, keeping the client IP.
    await ip(r.ns, "route", "add", "default", "via", r.gateway);
  }
  // Direct LB-to-LB link (spare: state sync / unicast heartbeats).
  const { lb1, lb2 } = t.lbs;
  await ip(lb1.ns, "link", "add", lb1.ifaces.sync, "type", "veth", "peer", "name", lb2.ifaces.sync, "netns", lb2.ns);
  for (const lb of [lb1, lb2]) {
    await ip(lb.ns, "addr", "add", `${lb.addrs.sync}/${t.prefixLen}`, "dev", lb.ifaces.sync);
    await ip(lb.ns, "link", "set", lb.ifaces.sync, "up");
    await sysctl(lb.ns, "net.ipv4.ip_forward=1");
    // DNAT to a 127.0.0.1 sorry server only works for forwarded traffic with route_localnet on the ingress.
    await sysctl(lb.ns, "net.ipv4.conf.all.route_localnet=1");
    await sysctl(lb.ns, `net.ipv4.conf.${lb.ifaces.front}.route_localnet=1`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === "EPERM"; }
}

/** Kernel start time of a process (field 22 of /proc/<pid>/stat), to detect PID reuse. */
export function procStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch { return null; }
}

/** Pid file format: "<pid>" or "<pid> <starttime>"; with a start time we refuse to kill a reused PID. */
export function writePidFile(dir: string, name: string, pid: number): void {
  mkdirSync(join(dir, "pids"), { recursive: true });
  writeFileSync(join(dir, "pids", name), `${pid} ${procStartTime(pid) ?? ""}`.trim() + "\n");
}

/** Kills the processes recorded in <dir>/pids/* (and only those): TERM, then KILL after 3 s. */
export async function killRecorded(dir: string): Promise<string[]> {
  const pidDir = join(dir, "pids");
  let files: string[] = [];
  try { files = readdirSync(pidDir); } catch { return []; }
  const targets: { name: string; pid: number }[] = [];
  for (const f of files) {
    const [p, start] = readFileSync(join(pidDir, f), "utf8").trim().split(/\s+/);
    const pid = Number(p);
    if (Number.isInteger(pid) && pid > 1 && alive(pid) && (!start || procStartTime(pid) === start)) {
      try { process.kill(pid, "SIGTERM"); targets.push({ name: f, pid }); } catch { /* already gone */ }
    }
    rmSync(join(pidDir, f), { force: true });
  }
  const until = Date.now() + 3000;
  while (targets.some((t) => alive(t.pid)) && Date.now() < until) await sleep(50);
  for (const t of targets) if (alive(t.pid)) try { process.kill(t.pid, "SIGKILL"); } catch { /* gone */ }
  return targets.map((t) => `${t.name}:${t.pid}`);
}

async function deleteNamespaces(t: LabTopology): Promise<string[]> {
  const existing = new Set(await listNamespaces());
  const deleted: string[] = [];
  // Deleting a namespace destroys its veth ends, and a veth pair dies with either end.
  for (const n of t.namespaces) {
    if (!existing.has(n)) continue;
    const r = await runArgv(["ip", "netns", "del", n]);
    if (r.code === 0) deleted.push(n);
  }
  return deleted;
}

export interface DownResult { killed: string[]; deleted: string[]; leftoverPids: Record<string, number[]> }

/**
 * Tears the lab down; safe to run any number of times, also after a crash. Uses the prefix from
 * opts, else the one recorded in <dir>/lab.json, else the default. Processes still inside a lab
 * namespace that we did not record are reported, not killed (they keep the namespace alive).
 */
export async function labDown(opts: { prefix?: string; dir: string }): Promise<DownResult> {
  let prefix = opts.prefix;
  if (prefix === undefined) {
    try { prefix = (JSON.parse(readFileSync(join(opts.dir, "lab.json"), "utf8")) as { prefix: string }).prefix; } catch { /* none */ }
  }
  const t = labTopology(prefix);
  const killed = await killRecorded(opts.dir);
  const leftoverPids: Record<string, number[]> = {};
  const existing = new Set(await listNamespaces());
  for (const n of t.namespaces.filter((x) => existing.has(x))) {
    const r = await runArgv(["ip", "netns", "pids", n]);
    const pids = r.stdout.split(/\s+/).filter(Boolean).map(Number);
    if (pids.length) leftoverPids[n] = pids;
  }
  const deleted = await deleteNamespaces(t);
  rmSync(join(opts.dir, "lab.json"), { force: true });
  return { killed, deleted, leftoverPids };
}

/**
 * Cuts (up=false) or restores an LB's cables: its front/back switch ports and its own front, back
 * and sync0 links. Taking both ends down makes it a real cut: the switch stops forwarding to it and
 * the peer on the sync link sees no carrier.
 */
export async function setLinks(node: LbName, up: boolean, prefix = DEFAULT_PREFIX): Promise<void> {
  const t = labTopology(prefix);
  const lb = t.lbs[node];
  const state = up ? "up" : "down";
  for (const port of [lb.swPorts.front, lb.swPorts.back]) await mustRun(["ip", "-n", t.sw.ns, "link", "set", port, state]);
  for (const ifname of [lb.ifaces.front, lb.ifaces.back, lb.ifaces.sync]) await mustRun(["ip", "-n", lb.ns, "link", "set", ifname, state]);
}

/**
 * Starts a long-running process inside a namespace (ns = null: root namespace), stdout+stderr to
 * <dir>/logs/<name>.log, PID recorded in <dir>/pids/<name> so labDown stops it. `ip netns exec`
 * execs the command, so the recorded PID is the command's own PID.
 */
export function startLabProcess(dir: string, name: string, ns: string | null, argv: string[], env?: NodeJS.ProcessEnv): { pid: number; log: string } {
  mkdirSync(join(dir, "logs"), { recursive: true });
  const log = join(dir, "logs", `${name}.log`);
  const fd = openSync(log, "a");
  const full = ns ? nsExec(ns, argv) : argv;
  try {
    const child = spawn(full[0], full.slice(1), { stdio: ["ignore", fd, fd], detached: true, env: env ?? process.env });
    if (!child.pid) throw new Error(`could not start ${full.join(" ")}`);
    child.unref();
    writePidFile(dir, name, child.pid);
    return { pid: child.pid, log };
  } finally {
    closeSync(fd);
  }
}

export interface NsHttpResult { status?: number; rs?: string; body?: string; error?: string }

// Runs in a fresh `node -e` inside the namespace; the URL and timeout come in as argv, never as code.
const HTTP_GET_SCRIPT = `
const [url, ms] = process.argv.slice(1); const u = new URL(url);
const m = require(u.protocol === 'https:' ? 'https' : 'http');
const out = (o) => { process.stdout.write(JSON.stringify(o)); process.exit(0); };
const r = m.get(u, { rejectUnauthorized: false, agent: false, timeout: +ms, headers: { connection: 'close' } }, (res) => {
  let b = ''; res.setEncoding('utf8'); res.on('data', (d) => (b += d));
  res.on('end', () => out({ status: res.statusCode, rs: res.headers['x-rs'], body: b }));
});
r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
r.on('error', (e) => out({ error: e.code || e.message }));
setTimeout(() => out({ error: 'ETIMEDOUT' }), +ms + 500).unref();`;

/** One HTTP(S) GET from inside a namespace (certificate not verified), bounded by timeoutMs. */
export async function nsHttpGet(ns: string, url: string, timeoutMs = 2000): Promise<NsHttpResult> {
  const r = await runArgv(nsExec(ns, [process.execPath, "-e", HTTP_GET_SCRIPT, url, String(timeoutMs)]), { timeoutMs: timeoutMs + 5000 });
  try { return JSON.parse(r.stdout) as NsHttpResult; } catch { return { error: `exit ${r.code}: ${r.stderr.trim()}` }; }
}
