// Test harness: starts real nats-server and redis-server processes on free loopback ports, and
// stops exactly those processes (by PID) when the test ends, also on failure.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initSecurity, type SecurityInitOptions, type SecurityLayout } from "../services/cli/security.ts";
import { natsAuthFromEnv, natsConnectOptions, redisAuthFromEnv, type RedisAuth } from "../shared/secrets.ts";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

export async function waitForPort(port: number, host = "127.0.0.1", ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const c = tcpConnect(port, host, () => { c.destroy(); r(true); });
      c.on("error", () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${ms} ms`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Proc { child: ChildProcess; stop(): Promise<void> }

export function startProc(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; log?: boolean } = {}): Proc {
  const child = spawn(cmd, args, { stdio: opts.log ? "inherit" : "ignore", env: opts.env ?? process.env });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface Servers {
  natsUrl: string; natsPort: number; redisUrl: string; redisPort: number; stopNats(): Promise<void>; startNats(): Promise<void>; stopRedis(): Promise<void>; startRedis(): Promise<void>; stop(): Promise<void>;
  /** With `auth`: the generated credentials (infra/nats/roles.ts permissions, Redis ACL users). */
  security: SecurityLayout | null;
  /** connect() options of an identity ("executor-lb1", "operator-operator"…); {} without auth. */
  natsAuth(identity: string): ReturnType<typeof natsConnectOptions>;
  /** ioredis options of a Redis user's identity ("recorder-recorder", "operator-operator"); {} without auth. */
  redisAuth(identity: string): RedisAuth;
}

export interface ServersOptions {
  /** Run with the permission configuration `lvsflow security init` writes (nkeys per role and node, Redis ACL users). */
  auth?: Omit<SecurityInitOptions, "dir">;
}

/** Starts nats-server (with JetStream in a temp dir) and redis-server (no persistence). */
export async function startServers(opts: ServersOptions = {}): Promise<Servers> {
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-test-"));
  const security = opts.auth ? initSecurity({ ...opts.auth, dir: join(dir, "secrets") }) : null;
  const natsPort = await freePort();
  const redisPort = await freePort();
  let nats: Proc | null = null;
  let redis: Proc | null = null;
  const s: Servers = {
    natsPort, redisPort,
    natsUrl: `nats://127.0.0.1:${natsPort}`,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    security,
    natsAuth: (id) => (security ? natsConnectOptions(natsAuthFromEnv(security.env(id))) : {}),
    redisAuth: (id) => (security ? redisAuthFromEnv(security.env(id)) : {}),
    async startNats() { nats = startProc("nats-server", [...(security ? ["-c", security.natsConf] : []), "-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", join(dir, "js")]); await waitForPort(natsPort); },
    async stopNats() { await nats?.stop(); nats = null; },
    async startRedis() { redis = startProc("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, ...(security ? ["--aclfile", security.redisAcl] : [])]); await waitForPort(redisPort); },
    async stopRedis() { await redis?.stop(); redis = null; },
    async stop() { await s.stopNats(); await s.stopRedis(); rmSync(dir, { recursive: true, force: true }); },
  };
  try { await s.startNats(); await s.startRedis(); } catch (e) { await s.stop(); throw e; }
  return s;
}
