// The lab: the seed's two-balancer cluster on one machine. Namespaces for client, lb1, lb2,
// rs1, rs2; nats-server and redis-server on the host's loopback; every lvsflow service of an LB
// node running inside that node's namespace, reaching the bus through the management relay.
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { labUp, labDown, labTopology, setLinks, startLabProcess, killRecorded, type LabTopology, type LbName, type RealName, DEFAULT_PREFIX } from "./topology.ts";
import { mapSeedAddresses } from "../../shared/config/lab-map.ts";
import { initSecurity, type SecurityLayout } from "../cli/security.ts";
import { natsAuthFromEnv, natsConnectOptions, redisAuthFromEnv, type NatsAuth, type RedisAuth } from "../../shared/secrets.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "bin/lvsflow.mjs");
const TSX = ["--import", "tsx"];
/** Port of the bus and Redis as every namespace sees them on its own loopback (via the relay). */
const NS_NATS_PORT = 4222;
const NS_REDIS_PORT = 6379;

export interface LabOptions {
  dir: string; prefix?: string; natsPort?: number; redisPort?: number; node?: string;
  /** Per-role credentials and permissions on NATS and Redis (infra/nats/roles.ts, infra/redis/acl.ts); default true. */
  auth?: boolean;
  /** Start the dashboard on this port of the host's loopback (`lvsflow lab up`: 18080; default none). */
  dashboardPort?: number;
  /** Add a quorum witness (`lvsflow run witness`, named w1) on the host: three voters, quorum mode. Default: none (VRRP mode, as the seed). */
  witness?: boolean;
  /** The witness's /healthz and /metrics on the host's loopback (`lvsflow lab up --witness`: 18081; default off). */
  witnessHttpPort?: number;
}
/** The lab witness's name (global.witnesses). */
export const LAB_WITNESS = "w1";
/** /healthz and /metrics of each LB service, on its namespace's loopback (ip netns exec … curl). */
export const LAB_HTTP_PORTS = { executor: 9101, controller: 9102, prober: 9103 } as const;
/** The identity operators' tools (status, audit, tests) use in the lab. */
const OPERATOR = "operator-operator";

export class Lab {
  readonly topo: LabTopology;
  readonly natsPort: number;
  readonly redisPort: number;
  readonly configFile: string;
  mapping: [string, string][] = [];
  /** Credentials written to <dir>/secrets by up() (null with auth: false). */
  security: SecurityLayout | null = null;

  constructor(readonly opts: LabOptions) {
    this.topo = labTopology(opts.prefix ?? DEFAULT_PREFIX);
    this.natsPort = opts.natsPort ?? 14222;
    this.redisPort = opts.redisPort ?? 16379;
    this.configFile = join(opts.dir, "lab.yaml");
  }

  get dir() { return this.opts.dir; }
  get natsUrl() { return `nats://127.0.0.1:${this.natsPort}`; }
  get dashboardUrl() { return `http://127.0.0.1:${this.opts.dashboardPort}/`; }
  /** File holding the dashboard's operator password (written by up()). */
  get dashboardPasswordFile() { return join(this.dir, "dashboard.password"); }
  get redisUrl() { return `redis://127.0.0.1:${this.redisPort}`; }
  ns(name: string) { return `${this.topo.prefix}${name}`; }

  /** Generates (or reuses) the lab's credentials: one NATS identity per role and LB node, Redis users. */
  private ensureSecurity(): SecurityLayout | null {
    if (this.opts.auth === false) return null;
    this.security ??= initSecurity({ dir: join(this.dir, "secrets"), site: "lab", nodes: ["lb1", "lb2"], recorders: ["recorder"], operators: ["operator"], witnesses: this.opts.witness ? [LAB_WITNESS] : [] });
    return this.security;
  }
  private idEnv(identity: string): Record<string, string> {
    return this.ensureSecurity()?.env(identity) ?? {};
  }
  /** NATS credentials of an identity (default: the operator's, which reads everything of the site). */
  natsAuth(identity = OPERATOR): NatsAuth { return natsAuthFromEnv(this.idEnv(identity)); }
  /** connect() options for the lab's bus as `identity`. */
  natsOptions(identity = OPERATOR) { return { servers: [this.natsUrl], ...natsConnectOptions(this.natsAuth(identity)) }; }
  /** ioredis options of the read-only cli user (or the recorder's with "recorder-recorder"). */
  redisAuth(identity = OPERATOR): RedisAuth { return redisAuthFromEnv(this.idEnv(identity)); }

  /** Writes the lab configuration: the seed's ldirectord.cf with its addresses mapped, plus nodes and groups. */
  writeConfig(): void {
    const seed = readFileSync(join(ROOT, "infra/lab/seed-ldirectord.cf"), "utf8");
    const { text, mapping } = mapSeedAddresses(seed);
    this.mapping = mapping;
    writeFileSync(join(this.dir, "ldirectord.cf"), text);
    const native = readFileSync(join(ROOT, "infra/lab/lvsflow.yaml"), "utf8");
    // With a witness: three voters, so the LB nodes run in quorum mode (docs: README, failover).
    const witness = this.opts.witness ? `global:\n  witnesses: [${LAB_WITNESS}]\n` : "";
    writeFileSync(this.configFile, `${native.trimEnd()}\n${witness}include: ldirectord.cf\n`);
  }

  private proc(name: string, ns: string | null, argv: string[], identity?: string) {
    return startLabProcess(this.dir, name, ns, argv, { ...process.env, LVSFLOW_LOG_JSON: "1", ...(identity ? this.idEnv(identity) : {}) });
  }

  async up(): Promise<void> {
    mkdirSync(join(this.dir, "state"), { recursive: true });
    this.writeConfig();
    await labUp({ prefix: this.topo.prefix, dir: this.dir });
    const sec = this.ensureSecurity();
    // JetStream: the recorder's durable buffer (services/recorder/buffer.ts) lives in the lab directory.
    this.proc("nats-server", null, ["nats-server", ...(sec ? ["-c", sec.natsConf] : []), "-a", "127.0.0.1", "-p", String(this.natsPort), "-js", "-sd", join(this.dir, "jetstream")]);
    this.proc("redis-server", null, ["redis-server", "--port", String(this.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir, ...(sec ? ["--aclfile", sec.redisAcl] : [])]);
    this.proc("relay-nats", null, [process.execPath, ...TSX, join(ROOT, "services/lab/relay.ts"), "host", join(this.dir, "nats.sock"), String(this.natsPort)]);
    this.proc("relay-redis", null, [process.execPath, ...TSX, join(ROOT, "services/lab/relay.ts"), "host", join(this.dir, "redis.sock"), String(this.redisPort)]);
    for (const r of ["rs1", "rs2"] as RealName[]) this.startReal(r);
    for (const lb of ["lb1", "lb2"] as LbName[]) {
      // The fallback (sorry) server of the seed: 127.0.0.1:80 and :443 on each balancer.
      this.proc(`sorry-${lb}`, this.ns(lb), [process.execPath, ...TSX, join(ROOT, "services/lab/rs-server.ts"), "--name", `sorry-${lb}`, "--sorry", "--bind", "127.0.0.1", "--http", "80", "--https", "443"]);
    }
    await waitFor(() => existsSync(join(this.dir, "nats.sock")) && existsSync(join(this.dir, "redis.sock")), 10_000, "management relays");
    const recorder = this.proc("recorder", null, [process.execPath, CLI, "run", "recorder", "--node", "recorder", "--config", this.configFile, "--nats", this.natsUrl, "--redis", this.redisUrl], "recorder-recorder");
    // The recorder's JetStream buffer captures from its creation on: let it exist before the nodes speak.
    await waitFor(() => existsSync(recorder.log) && readFileSync(recorder.log, "utf8").includes('"msg":"running"'), 30_000, "the recorder").catch(() => undefined);
    for (const lb of ["lb1", "lb2"] as LbName[]) this.startNode(lb);
    if (this.opts.witness) this.startWitness();
    if (this.opts.dashboardPort) this.startDashboard();
  }

  /** The quorum witness: on the host, the lab's "third host", straight on the bus (no relay). */
  startWitness(): void {
    this.proc(`witness-${LAB_WITNESS}`, null, [process.execPath, CLI, "run", "witness", "--node", LAB_WITNESS, "--config", this.configFile, "--nats", this.natsUrl, "--http-port", String(this.opts.witnessHttpPort ?? 0)], `witness-${LAB_WITNESS}`);
  }

  /** The operators' web page on the host's loopback, with a fresh random password. */
  startDashboard(): void {
    if (!existsSync(this.dashboardPasswordFile)) writeFileSync(this.dashboardPasswordFile, randomBytes(12).toString("base64url") + "\n", { mode: 0o600 });
    startLabProcess(this.dir, "dashboard", null, [process.execPath, CLI, "run", "dashboard", "--node", "dashboard", "--config", this.configFile, "--nats", this.natsUrl, "--redis", this.redisUrl],
      { ...process.env, LVSFLOW_LOG_JSON: "1", ...this.idEnv(OPERATOR), LVSFLOW_DASHBOARD_LISTEN: `127.0.0.1:${this.opts.dashboardPort}`, LVSFLOW_DASHBOARD_PASSWORD_FILE: this.dashboardPasswordFile });
  }

  startReal(r: RealName): void {
    this.proc(`http-${r}`, this.ns(r), [process.execPath, ...TSX, join(ROOT, "services/lab/rs-server.ts"), "--name", r, "--bind", "0.0.0.0", "--http", "80", "--https", "443"]);
  }

  async stopReal(r: RealName): Promise<void> {
    await this.kill([`http-${r}`]);
  }

  /** Starts every lvsflow service of an LB node inside its namespace, plus its management relay. */
  startNode(lb: LbName): void {
    const ns = this.ns(lb);
    this.proc(`${lb}-relay-nats`, ns, [process.execPath, ...TSX, join(ROOT, "services/lab/relay.ts"), "ns", String(NS_NATS_PORT), join(this.dir, "nats.sock")]);
    this.proc(`${lb}-relay-redis`, ns, [process.execPath, ...TSX, join(ROOT, "services/lab/relay.ts"), "ns", String(NS_REDIS_PORT), join(this.dir, "redis.sock")]);
    for (const svc of ["executor", "controller", "prober"] as const) this.startService(lb, svc);
  }

  /** One lvsflow service of an LB node, in its namespace (after a kill: a restart). */
  startService(lb: LbName, svc: keyof typeof LAB_HTTP_PORTS): void {
    const common = ["--node", lb, "--config", this.configFile, "--nats", `nats://127.0.0.1:${NS_NATS_PORT}`, "--redis", `redis://127.0.0.1:${NS_REDIS_PORT}`, "--state-dir", join(this.dir, "state"), "--http-port", String(LAB_HTTP_PORTS[svc])];
    this.proc(`${lb}-${svc}`, this.ns(lb), [process.execPath, CLI, "run", svc, ...common], `${svc}-${lb}`);
  }

  /** SIGKILL-free stop of named lab processes (by recorded PID). */
  async kill(names: string[]): Promise<void> {
    const pidDir = join(this.dir, "pids");
    const tmp = join(this.dir, "pids-kill");
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, "pids"), { recursive: true });
    for (const n of names) if (existsSync(join(pidDir, n))) writeFileSync(join(tmp, "pids", n), readFileSync(join(pidDir, n)));
    await killRecorded(tmp);
    for (const n of names) rmSync(join(pidDir, n), { force: true });
  }

  /** Every lvsflow process of an LB node, SIGKILLed: a crash, not a clean stop. */
  async crashNode(lb: LbName): Promise<void> {
    const names = readdirSync(join(this.dir, "pids")).filter((n) => n.startsWith(`${lb}-`));
    for (const n of names) {
      const pid = Number(readFileSync(join(this.dir, "pids", n), "utf8").split(/\s+/)[0]);
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      rmSync(join(this.dir, "pids", n), { force: true });
    }
  }

  async links(lb: LbName, up: boolean): Promise<void> {
    await setLinks(lb, up, this.topo.prefix);
  }

  async down(): Promise<void> {
    await labDown({ prefix: this.topo.prefix, dir: this.dir });
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export async function labCommand(args: string[]): Promise<number> {
  const sub = args[0] ?? "up";
  const dir = process.env.LVSFLOW_LAB_DIR ?? "/tmp/lvsflow-lab";
  const lab = new Lab({ dir, dashboardPort: Number(process.env.LVSFLOW_LAB_DASHBOARD_PORT ?? 18080), witness: args.includes("--witness"), witnessHttpPort: 18081 });
  if (sub === "down") { const r = await labDown({ dir }); process.stdout.write(`stopped ${r.killed.length} process(es), deleted ${r.deleted.length} namespace(s)\n`); return 0; }
  const operatorEnv = join(dir, "secrets", "env", `${OPERATOR}.env`);
  if (sub === "status") {
    if (existsSync(operatorEnv)) process.loadEnvFile(operatorEnv); // the lab's operator credentials
    const { statusCommand } = await import("../cli/status.ts");
    return statusCommand(["--nats", lab.natsUrl, "--site", "lab"]);
  }
  if (sub !== "up" || args.slice(1).some((a) => a !== "--witness")) { process.stderr.write("usage: lvsflow lab up [--witness] | down | status\n"); return 2; }
  if (process.getuid?.() !== 0) { process.stderr.write("lvsflow lab needs root (network namespaces, nftables)\n"); return 1; }
  await labDown({ dir }).catch(() => undefined); // a lab left behind by a crash
  mkdirSync(dir, { recursive: true });
  let stopping = false;
  const stop = async () => { if (stopping) return; stopping = true; process.stdout.write("\ntearing the lab down…\n"); await lab.down(); process.exit(0); };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
  try {
    await lab.up();
  } catch (e) {
    process.stderr.write(`lab failed to start: ${e instanceof Error ? e.message : String(e)}\nlogs: ${dir}/logs\n`);
    await lab.down();
    return 1;
  }
  process.stdout.write(`lvsflow lab is up (logs in ${dir}/logs). Seed addresses mapped to documentation ranges:\n`);
  for (const [from, to] of lab.mapping) process.stdout.write(`  ${from.padEnd(16)} -> ${to}\n`);
  process.stdout.write(`Dashboard: ${lab.dashboardUrl}  (any name, password in ${lab.dashboardPasswordFile})\n`);
  process.stdout.write(lab.opts.witness
    ? `Quorum mode: lb1, lb2 and the witness ${LAB_WITNESS} (on the host; health http://127.0.0.1:${lab.opts.witnessHttpPort}/healthz) vote.\n`
    : "VRRP mode (two nodes, no witness; `lvsflow lab up --witness` for quorum mode).\n");
  process.stdout.write(`Try: ip netns exec ${lab.ns("cli")} curl -s http://198.51.100.50/aaaa.html   |   (set -a; . ${operatorEnv}; lvsflow audit --site lab --redis ${lab.redisUrl})\nCtrl-C stops and removes everything.\n\n`);
  const { collectStatus, renderStatus } = await import("../cli/status.ts");
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    if (stopping) break;
    try { process.stdout.write("\x1b[2J\x1b[H" + renderStatus(await collectStatus([lab.natsUrl], "lab", 1200, lab.natsAuth()))); } catch { /* bus not up yet */ }
  }
  return 0;
}
