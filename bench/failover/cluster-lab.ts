// The failover lab: the seed's two-balancer topology (services/lab/topology.ts) plus what a
// failover study needs and the everyday lab does not have:
//   - a third namespace <p>w for the witness, with point-to-point management links to lb1 and
//     lb2 (192.0.2.4/30 and 192.0.2.8/30; lb1–lb2 keep sync0, 192.0.2.1/.2), so any pair of
//     voters can be partitioned by taking one link down;
//   - one nats-server per voter namespace, clustered over those links (the real deployment: a
//     NATS cluster across the LBs), instead of the lab's single host nats-server reached through
//     unix-socket relays: with one server, cutting an LB's links would never cut its bus, and
//     "the owner's nats-server dies" could not be told apart from "the bus dies";
//   - lvsflow (`run node` per LB, `run witness` in <p>w) or keepalived (VRRP only, -P) as the
//     address mover, over the same nftables data plane;
//   - an echo server on each real (:9000) for long-lived connections.
// Every process is recorded by PID in <dir>/pids and stopped by PID; down() removes every namespace.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { labUp, labDown, labTopology, setLinks, startLabProcess, mustRun, runArgv, nsExec, listNamespaces, type LbName } from "../../services/lab/topology.ts";
import { NftablesDriver } from "../../services/executor/nft/driver.ts";
import type { PoolSpec } from "../../shared/schemas/events.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "bin/lvsflow.mjs");
const TSX = ["--import", "tsx"];
export const VIP = "198.51.100.50";
export const MGMT: Record<"lb1" | "lb2" | "w", Record<string, string>> = {
  lb1: { lb2: "192.0.2.2", w: "192.0.2.6" },
  lb2: { lb1: "192.0.2.1", w: "192.0.2.10" },
  w: { lb1: "192.0.2.5", lb2: "192.0.2.9" },
};
export type System = "lvsflow" | "keepalived-v2" | "keepalived-v3";
export type Link = "lb1-lb2" | "lb1-w" | "lb2-w";

export interface ClusterOptions {
  dir: string;
  prefix: string;
  system: System;
  /** lvsflow only: run a witness (quorum mode). */
  witness?: boolean;
  timers?: { heartbeatMs?: number; deadMs?: number };
  /** Extra environment for lvsflow processes. */
  env?: NodeJS.ProcessEnv;
  /** Run lvsflow and nats-server with realtime scheduling (chrt -f 10), as load-anchors.md recommends. */
  rt?: boolean;
}

export class ClusterLab {
  readonly topo;
  readonly config: string;
  constructor(readonly o: ClusterOptions) {
    this.topo = labTopology(o.prefix);
    this.config = join(o.dir, "cluster.yaml");
  }
  ns(n: string) { return `${this.o.prefix}${n}`; }
  get witnessNs() { return this.ns("w"); }

  private proc(name: string, ns: string | null, argv: string[], env?: NodeJS.ProcessEnv) {
    // chrt execs the command: the recorded PID stays the command's own.
    if (this.o.rt && /^(nats-|lb[12]-node|w-witness)/.test(name)) argv = ["chrt", "-f", "10", ...argv];
    return startLabProcess(this.o.dir, name, ns, argv, { ...process.env, LVSFLOW_LOG_JSON: "1", LVSFLOW_LOG_LEVEL: "info", ...this.o.env, ...env });
  }

  writeConfig(): void {
    const t = this.o.timers ?? {};
    const vs = (port: number) => `  - protocol: tcp
    address: ${VIP}
    port: ${port}
    scheduler: wlc
    check: { type: connect, interval: 1, timeout: 1, failureCount: 3 }
    reals:
      - { address: 203.0.113.11, port: ${port}, forwarding: masq }
      - { address: 203.0.113.12, port: ${port}, forwarding: masq }`;
    writeFileSync(this.config, `site: bench
nodes:
  - { name: lb1, priority: 150 }
  - { name: lb2, priority: 100 }
${this.o.witness ? "global: { witnesses: [w] }\n" : ""}${t.heartbeatMs || t.deadMs ? `timers: { ${[t.heartbeatMs ? `heartbeatMs: ${t.heartbeatMs}` : "", t.deadMs ? `deadMs: ${t.deadMs}` : ""].filter(Boolean).join(", ")} }\n` : ""}groups:
  - name: web
    preempt: true
    addresses:
      - { address: ${VIP}, prefix: 24, interface: front }
      - { address: 203.0.113.1, prefix: 24, interface: back }
virtualServices:
${vs(80)}
${vs(9000)}
`);
  }

  async up(): Promise<void> {
    mkdirSync(join(this.o.dir, "state"), { recursive: true });
    await labUp({ prefix: this.o.prefix, dir: this.o.dir });
    await this.witnessLinks();
    for (const r of ["rs1", "rs2"]) {
      this.proc(`http-${r}`, this.ns(r), [process.execPath, ...TSX, join(ROOT, "services/lab/rs-server.ts"), "--name", r, "--bind", "0.0.0.0", "--http", "80"]);
      this.proc(`echo-${r}`, this.ns(r), [process.execPath, ...TSX, join(ROOT, "bench/failover/echo.ts"), "server", "9000", r]);
    }
    if (this.o.system === "lvsflow") {
      this.writeConfig();
      this.proc("redis", null, ["redis-server", "--port", "0", "--unixsocket", join(this.o.dir, "redis.sock"), "--save", "", "--appendonly", "no", "--dir", this.o.dir]);
      for (const v of this.voters()) this.startNats(v);
      await waitFor(async () => (await Promise.all(this.voters().map((v) => this.natsReady(v)))).every(Boolean), 15_000, "nats-servers");
      for (const lb of ["lb1", "lb2"] as LbName[]) this.startNode(lb);
      if (this.o.witness) this.startWitness();
    } else {
      for (const lb of ["lb1", "lb2"] as LbName[]) {
        // keepalived moves addresses only: the same nftables rules on both LBs (per-node selection,
        // as a keepalived + nftables setup has them), applied once by lvsflow's driver.
        const d = new NftablesDriver({ netns: this.ns(lb) });
        const r = await d.apply(POOLS);
        if (!r.ok) throw new Error(`nft on ${lb}: ${r.error}`);
        this.startKeepalived(lb);
      }
    }
  }

  voters(): ("lb1" | "lb2" | "w")[] { return this.o.witness ? ["lb1", "lb2", "w"] : ["lb1", "lb2"]; }

  /** The witness namespace and its two point-to-point links (created even without a witness: cheap). */
  private async witnessLinks(): Promise<void> {
    const w = this.witnessNs;
    await mustRun(["ip", "netns", "add", w]);
    await mustRun(["ip", "-n", w, "link", "set", "lo", "up"]);
    for (const [lb, wIf, lbAddr, wAddr] of [["lb1", "l1", "192.0.2.5", "192.0.2.6"], ["lb2", "l2", "192.0.2.9", "192.0.2.10"]] as const) {
      await mustRun(["ip", "-n", this.ns(lb), "link", "add", "wl", "type", "veth", "peer", "name", wIf, "netns", w]);
      await mustRun(["ip", "-n", this.ns(lb), "addr", "add", `${lbAddr}/30`, "dev", "wl"]);
      await mustRun(["ip", "-n", w, "addr", "add", `${wAddr}/30`, "dev", wIf]);
      await mustRun(["ip", "-n", this.ns(lb), "link", "set", "wl", "up"]);
      await mustRun(["ip", "-n", w, "link", "set", wIf, "up"]);
    }
  }

  startNats(v: "lb1" | "lb2" | "w"): void {
    const routes = Object.values(MGMT[v]).map((a) => `nats://${a}:6222`).join(",");
    this.proc(`nats-${v}`, this.ns(v), ["nats-server", "-a", "0.0.0.0", "-p", "4222", "--cluster", "nats://0.0.0.0:6222", "--cluster_name", "bench", "--routes", routes]);
  }

  private async natsReady(v: string): Promise<boolean> {
    const r = await runArgv(nsExec(this.ns(v), ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/4222 && head -c 4 <&3"]), { timeoutMs: 2000 });
    return r.stdout.startsWith("INFO");
  }

  /** `lvsflow run node` inside the LB's namespace, on its own nats-server (others found by gossip). */
  startNode(lb: LbName): void {
    this.proc(`${lb}-node`, this.ns(lb), [process.execPath, CLI, "run", "node", "--node", lb, "--config", this.config, "--nats", "nats://127.0.0.1:4222", "--redis", `unix://${join(this.o.dir, "redis.sock")}`, "--state-dir", join(this.o.dir, "state")]);
  }

  startWitness(): void {
    this.proc("w-witness", this.witnessNs, [process.execPath, CLI, "run", "witness", "--node", "w", "--config", this.config, "--nats", "nats://127.0.0.1:4222", "--redis", `unix://${join(this.o.dir, "redis.sock")}`, "--state-dir", join(this.o.dir, "state")]);
  }

  startKeepalived(lb: LbName): void {
    const v3 = this.o.system === "keepalived-v3";
    const dir = join(this.o.dir, "ka");
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, `${lb}.conf`);
    writeFileSync(conf, `global_defs {
    router_id ${lb}
    vrrp_version ${v3 ? 3 : 2}
    vrrp_garp_master_repeat 5
    vrrp_garp_master_delay 5
    vrrp_garp_master_refresh 0
    script_user root
    enable_script_security
}
vrrp_instance VI_WEB {
    state BACKUP
    interface front
    virtual_router_id 51
    priority ${lb === "lb1" ? 150 : 100}
    advert_int ${v3 ? "0.1" : "1"}
    virtual_ipaddress {
        ${VIP}/24 dev front
        203.0.113.1/24 dev back
    }
}
`);
    for (const f of ["pid", "vrrp.pid", "chk.pid"]) rmSync(join(dir, `${lb}.${f}`), { force: true });
    this.proc(`${lb}-keepalived`, this.ns(lb), ["keepalived", "-n", "-l", "-D", "-P", "-f", conf, "-p", join(dir, `${lb}.pid`), "-r", join(dir, `${lb}.vrrp.pid`), "-c", join(dir, `${lb}.chk.pid`)]);
  }

  private pid(name: string): number | null {
    const f = join(this.o.dir, "pids", name);
    if (!existsSync(f)) return null;
    const p = Number(readFileSync(f, "utf8").split(/\s+/)[0]);
    return Number.isInteger(p) && p > 1 ? p : null;
  }

  private signal(name: string, sig: NodeJS.Signals): boolean {
    const p = this.pid(name);
    if (!p) return false;
    try { process.kill(p, sig); return true; } catch { return false; }
  }

  private async exited(name: string, ms = 5000): Promise<void> {
    const p = this.pid(name);
    if (!p) return;
    await waitFor(() => { try { process.kill(p, 0); return false; } catch { return true; } }, ms, `${name} (${p}) to exit`);
    rmSync(join(this.o.dir, "pids", name), { force: true });
  }

  /** SIGKILL of every process of the node's address mover (keepalived: parent and VRRP child in one go). */
  async kill9(lb: LbName): Promise<void> {
    if (this.o.system === "lvsflow") { this.signal(`${lb}-node`, "SIGKILL"); await this.exited(`${lb}-node`); return; }
    const child = Number(readFileSync(join(this.o.dir, "ka", `${lb}.vrrp.pid`), "utf8").trim());
    const parent = this.pid(`${lb}-keepalived`);
    for (const p of [parent, child]) if (p && p > 1) try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
    await this.exited(`${lb}-keepalived`);
  }

  /** Graceful stop (SIGTERM): lvsflow hands over; keepalived sends priority 0. */
  async stop(lb: LbName): Promise<void> {
    const name = this.o.system === "lvsflow" ? `${lb}-node` : `${lb}-keepalived`;
    this.signal(name, "SIGTERM");
    await this.exited(name, 10_000);
  }

  async restart(lb: LbName): Promise<void> {
    if (this.o.system === "lvsflow") this.startNode(lb);
    else this.startKeepalived(lb);
  }

  killNats(v: "lb1" | "lb2" | "w"): void { this.signal(`nats-${v}`, "SIGKILL"); }
  async restartNats(v: "lb1" | "lb2" | "w"): Promise<void> {
    await this.exited(`nats-${v}`).catch(() => undefined);
    this.startNats(v);
    await waitFor(() => this.natsReady(v), 30_000, `nats-${v}`);
  }

  /** The LB's cables (front, back, sync0) and its link to the witness. */
  async links(lb: LbName, up: boolean): Promise<void> {
    // Down: management links first, so the node goes silent at once, as a dead node would (cut
    // one by one, its executor would report "interface front down" over a still-live sync0 and
    // the peer would take over on that fault, faster than a dead node allows).
    // One `ip -batch` in the node's namespace takes all its links down in a few ms (carrier goes
    // at the peers too), so the failure instant is sharp even on a loaded machine.
    if (!up) await mustRun(["ip", "-n", this.ns(lb), "-batch", "-"], { input: ["sync0", "wl", "front", "back"].map((i) => `link set ${i} down`).join("\n") + "\n" });
    await setLinks(lb, up, this.o.prefix);
    if (up) await mustRun(["ip", "-n", this.ns(lb), "link", "set", "wl", "up"]);
  }

  /**
   * The node dies to the network at one instant: one nft transaction drops every frame in and out
   * of all its interfaces (netdev ingress/egress). Links stay up (no carrier change for anyone to
   * notice, no flooding), so what the others see is exactly a dead or unplugged node.
   * (Taking veths down is no sharp instant on a loaded machine: each `link set down` waits for an
   * RCU grace period, hundreds of ms apart.)
   */
  async isolate(lb: LbName, on: boolean): Promise<void> {
    const ifs = ["front", "back", "sync0", "wl"];
    const script = on
      ? `table netdev lvsflow_bench_cut {
${ifs.map((i) => `  chain in_${i} { type filter hook ingress device "${i}" priority -500; policy drop; }
  chain out_${i} { type filter hook egress device "${i}" priority -500; policy drop; }`).join("\n")}
}
`
      : "delete table netdev lvsflow_bench_cut\n";
    await mustRun(nsExec(this.ns(lb), ["nft", "-f", "-"]), { input: script });
  }

  /** One management link between two voters (both ends). */
  async link(l: Link, up: boolean): Promise<void> {
    const st = up ? "up" : "down";
    if (l === "lb1-lb2") { for (const lb of ["lb1", "lb2"]) await mustRun(["ip", "-n", this.ns(lb), "link", "set", "sync0", st]); return; }
    const lb = l.split("-")[0]!;
    await mustRun(["ip", "-n", this.ns(lb), "link", "set", "wl", st]);
    await mustRun(["ip", "-n", this.witnessNs, "link", "set", lb === "lb1" ? "l1" : "l2", st]);
  }

  /**
   * Forget every neighbour entry of the client and the reals, so a trial starts from the current
   * owner's MAC. Without it, an entry learnt from the backup during a preempt overlap can outlive
   * the owner's gratuitous ARPs (Linux ignores them for `locktime`, 1 s, after an update), and the
   * backup, which has the same rules, silently keeps forwarding: cutting the owner would then
   * measure nothing.
   */
  async flushNeighbours(): Promise<void> {
    for (const n of ["cli", "rs1", "rs2"]) await mustRun(["ip", "-n", this.ns(n), "neigh", "flush", "all"]);
  }

  async holds(lb: LbName): Promise<boolean> {
    const r = await runArgv(["ip", "-n", this.ns(lb), "-j", "addr", "show", "dev", "front"]);
    return r.stdout.includes(`"${VIP}"`);
  }

  async down(): Promise<void> {
    await labDown({ prefix: this.o.prefix, dir: this.o.dir });
    if ((await listNamespaces()).includes(this.witnessNs)) {
      // Its processes were recorded and stopped by labDown; the namespace itself is ours to delete.
      await runArgv(["ip", "netns", "del", this.witnessNs]);
    }
  }
}

/** The data plane keepalived runs over: the same two services lvsflow's configuration declares. */
export const POOLS: PoolSpec[] = [80, 9000].map((port) => ({
  vs: `tcp:${VIP}:${port}`, protocol: "tcp", family: "ipv4", address: VIP, port, fwmark: null, scheduler: "wlc", persistence: null, fallback: null,
  reals: [11, 12].map((h) => ({ address: `203.0.113.${h}`, port, forwarding: "masq" as const, weight: 1, lowerThreshold: null, upperThreshold: null })),
}));

export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Watches the VIP on each LB with `ip monitor address`: a timeline of who held it when. */
export class VipWatch {
  private readonly procs: ChildProcess[] = [];
  readonly events: { t: number; lb: LbName; held: boolean }[] = [];
  constructor(private readonly lab: Pick<ClusterLab, "ns" | "holds">) {}
  async start(): Promise<void> {
    for (const lb of ["lb1", "lb2"] as LbName[]) {
      this.events.push({ t: Date.now(), lb, held: await this.lab.holds(lb) });
      // -ts: ip stamps each event itself (local time, µs), so a busy reader does not skew the timeline.
      const p = spawn("ip", ["-ts", "-n", this.lab.ns(lb), "monitor", "address"], { stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, TZ: "UTC" } });
      let buf = "";
      p.stdout!.on("data", (d) => {
        buf += d;
        let k;
        while ((k = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, k);
          buf = buf.slice(k + 1);
          const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (.*)$/.exec(line);
          if (!m || !m[2]!.includes(` ${VIP}/`)) continue;
          this.events.push({ t: Date.parse(m[1]!.slice(0, 23) + "Z"), lb, held: !m[2]!.startsWith("Deleted") });
        }
      });
      this.procs.push(p);
    }
  }
  stop(): void { for (const p of this.procs) p.kill("SIGTERM"); }
  heldAt(lb: LbName, t: number): boolean {
    let h = false;
    for (const e of this.events) if (e.lb === lb && e.t <= t) h = e.held;
    return h;
  }
  /** First time after `from` the VIP was added on `lb`. */
  firstAdd(lb: LbName, from: number): number | null {
    return this.events.find((e) => e.lb === lb && e.held && e.t >= from)?.t ?? null;
  }
  /** Samples the timeline every `stepMs`: instants at which both LBs held the VIP. */
  doubleSamples(from: number, to: number, stepMs = 10): { samples: number; double: number; none: number } {
    let samples = 0, double = 0, none = 0;
    for (let t = from; t <= to; t += stepMs) {
      samples++;
      const a = this.heldAt("lb1", t), b = this.heldAt("lb2", t);
      if (a && b) double++;
      if (!a && !b) none++;
    }
    return { samples, double, none };
  }
}

export interface Running<T> { done: Promise<T>; ready: Promise<void> }

/**
 * Bounded request loop in the client namespace (services/lab/probe-client.ts): one new connection
 * every intervalMs. `ready` resolves at the first result: a fresh node process can take more than
 * a second to start on a loaded machine, and a failure injected before it runs is never seen.
 */
export function probeLoop(lab: ClusterLab, o: { intervalMs: number; timeoutMs: number; count: number; durationMs: number }): Promise<{ t: number; ok: boolean; rs?: string }[]> & Running<{ t: number; ok: boolean; rs?: string }[]> {
  const r = collect(nsExec(lab.ns("cli"), [process.execPath, ...TSX, join(ROOT, "services/lab/probe-client.ts"), `http://${VIP}/aaaa.html`, String(o.intervalMs), String(o.timeoutMs), String(o.count), String(o.durationMs)]), o.durationMs + 30_000, () => true);
  const done = r.done.then((out) => out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { t: number; ok: boolean; rs?: string }).sort((a, b) => a.t - b.t));
  return Object.assign(done, { done, ready: r.ready });
}

/** Long-lived connections (echo.ts client); `ready` once every connection is greeted by its real. */
export function echoClients(lab: ClusterLab, o: { conns: number; intervalMs: number; durationMs: number; graceMs: number }): Promise<{ ok: boolean; err: string | null; sent: number; got: number; maxGapMs: number }[]> & Running<{ ok: boolean; err: string | null; sent: number; got: number; maxGapMs: number }[]> {
  const r = collect(nsExec(lab.ns("cli"), [process.execPath, ...TSX, join(ROOT, "bench/failover/echo.ts"), "client", VIP, "9000", String(o.conns), String(o.intervalMs), String(o.durationMs), String(o.graceMs)]), o.durationMs + o.graceMs + 30_000, (l) => l === "READY");
  const done = r.done.then((out) => JSON.parse(out.trim().split("\n").filter((l) => l !== "READY").at(-1) || "[]"));
  return Object.assign(done, { done, ready: r.ready });
}

function collect(argv: string[], killAfterMs: number, isReady: (line: string) => boolean): { done: Promise<string>; ready: Promise<void> } {
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  const done = new Promise<string>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => { out += d; if (out.split("\n").slice(0, -1).some(isReady)) markReady(); });
    const kill = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.on("error", reject);
    child.on("exit", () => { clearTimeout(kill); markReady(); resolve(out); });
  });
  return { done, ready };
}

/**
 * Client-visible gap: the longest stretch of the probe window without the start of a successful
 * probe, less one interval. The window's first and last probes bound it, so an outage at the
 * start or at the end counts too (not only one between two successes).
 */
export function largestGap(rs: { t: number; ok: boolean }[], intervalMs: number): number {
  if (!rs.length) return 0;
  const marks = [rs[0]!.t - intervalMs, ...rs.filter((r) => r.ok).map((r) => r.t), rs.at(-1)!.t + intervalMs];
  let gap = 0;
  for (let i = 1; i < marks.length; i++) gap = Math.max(gap, marks[i]! - marks[i - 1]! - intervalMs);
  return gap;
}

/** Until the VIP answers through the data plane (pools applied, addresses held). */
export async function untilServing(lab: ClusterLab, ms = 30_000): Promise<void> {
  await waitFor(async () => (await probeLoop(lab, { intervalMs: 50, timeoutMs: 500, count: 5, durationMs: 300 })).every((r) => r.ok), ms, "the VIP to answer");
}
