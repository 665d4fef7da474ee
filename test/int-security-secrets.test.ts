// Secrets after a run that uses them: a prober, a controller and a recorder (real `lvsflow run`
// processes) authenticate to nats-server with nkey seeds and to Redis with ACL passwords read from
// files, and the prober logs in to an FTP real and a RADIUS real with configured credentials. The
// FTP server is hostile: it echoes the login and the password back in its refusal, so the
// secrets reach the prober's error text. Afterwards none of the secrets is in any log line, in the
// audit stream in Redis or in `lvsflow audit --json`; the echoed ones show up as [redacted].
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { startServers, sleep } from "./harness.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "bin/lvsflow.mjs");
const FTP_LOGIN = "Ftp-Login-Name-77", FTP_PASS = "Ftp-Passw0rd-3e1d";
const RAD_USER = "Radius-User-5a61", RAD_PASS = "Radius-Passw0rd-9f", RAD_SECRET = "Radius-Shared-S3cret-c4";

const dir = mkdtempSync(join(tmpdir(), "lvsflow-secrets-"));
const servers = await startServers({ auth: { site: "sec", nodes: ["lb1"] } });
const procs: ChildProcess[] = [];
const closers: (() => void)[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) { const e = new Promise((r) => p.once("exit", r)); p.kill("SIGKILL"); await e; }
  for (const c of closers) c();
  await servers.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** An FTP server that refuses every login and repeats the credentials it was sent. */
async function echoingFtp(): Promise<number> {
  const srv = createServer((s) => {
    let user = "";
    s.on("error", () => undefined);
    s.write("220 hostile ftp\r\n");
    s.setEncoding("latin1");
    let buf = "";
    s.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (line.startsWith("USER ")) { user = line.slice(5); s.write(`331 password for ${user}\r\n`); }
        else if (line.startsWith("PASS ")) s.write(`530 refused ${user} ${line.slice(5)}\r\n`);
        else s.write("500 ?\r\n");
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  closers.push(() => srv.close());
  return (srv.address() as { port: number }).port;
}

/** A RADIUS "server" that answers every request with a reply echoing the request's bytes. */
async function echoingRadius(): Promise<number> {
  const s = createSocket("udp4");
  s.on("message", (m, r) => s.send(Buffer.concat([Buffer.from([3]), m.subarray(1)]), r.port, r.address));
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  closers.push(() => s.close());
  return s.address().port;
}

function run(service: string, node: string, identity: string, cfg: string): { child: ChildProcess; log: () => string } {
  const child = spawn(process.execPath, [CLI, "run", service, "--node", node, "--config", cfg, "--nats", servers.natsUrl, "--redis", servers.redisUrl, "--state-dir", dir],
    { env: { ...process.env, ...servers.security!.env(identity), LVSFLOW_LOG_JSON: "1", LVSFLOW_LOG_LEVEL: "debug" }, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  procs.push(child);
  return { child, log: () => log };
}

test("no secret in logs, the audit stream or lvsflow audit after a run that uses them all", { timeout: 120_000 }, async () => {
  const sec = servers.security!;
  const ftpPort = await echoingFtp();
  const radPort = await echoingRadius();
  const cfg = join(dir, "sec.yaml");
  writeFileSync(cfg, `site: sec
nodes: [{ name: lb1, priority: 100 }]
virtualServices:
  - address: 198.51.100.50
    port: 21
    check: { type: negotiate, service: ftp, login: "${FTP_LOGIN}", passwd: "${FTP_PASS}", request: welcome.msg, receive: x, interval: 1, timeout: 1 }
    reals: [{ address: 127.0.0.1, port: ${ftpPort}, forwarding: masq }]
  - address: 198.51.100.50
    port: 1812
    protocol: udp
    check: { type: negotiate, service: radius, login: "${RAD_USER}", passwd: "${RAD_PASS}", secret: "${RAD_SECRET}", interval: 1, timeout: 1 }
    reals: [{ address: 127.0.0.1, port: ${radPort}, forwarding: masq }]
`);
  const used = ["prober-lb1", "controller-lb1", "recorder-recorder", "operator-operator"];
  const secrets: [string, string][] = [
    ["ftp login", FTP_LOGIN], ["ftp password", FTP_PASS], ["radius user", RAD_USER], ["radius password", RAD_PASS], ["radius secret", RAD_SECRET],
    ...used.map((id): [string, string] => [`nkey seed of ${id}`, readFileSync(sec.nkeyFile(id), "utf8").trim()]),
    ...used.map((id): [string, string] => [`Redis password of ${id}`, readFileSync(sec.env(id).LVSFLOW_REDIS_PASS_FILE!, "utf8").trim()]),
  ];

  const recorder = run("recorder", "recorder", "recorder-recorder", cfg);
  // The prober publishes a result when it changes: the recorder must be listening before the first one.
  for (let i = 0; i < 150 && !recorder.log().includes('"msg":"running"'); i++) await sleep(200);
  const controller = run("controller", "lb1", "controller-lb1", cfg);
  const prober = run("prober", "lb1", "prober-lb1", cfg);
  const redis = new Redis(servers.redisUrl, { lazyConnect: true, ...servers.redisAuth("operator-operator") });
  after(() => redis.disconnect());
  await redis.connect();
  // Until the hostile FTP refusal (with the echoed credentials) is in the audit stream.
  const stream = async () => (await redis.xrange("lvsflow:sec:events", "-", "+")).map(([, f]) => f.join("\n")).join("\n");
  let text = "";
  for (let i = 0; i < 150 && !/530 refused/.test(text); i++) { await sleep(200); text = await stream(); }
  await sleep(2500); // a few more check rounds, reloads of nothing, summaries
  for (const p of [prober, controller, recorder]) { const e = new Promise((r) => p.child.once("exit", r)); p.child.kill("SIGTERM"); await e; }
  text = await stream();

  assert.match(text, /"error":"login as \\"\[redacted\]\\" refused: \\"530 refused \[redacted\] \[redacted\]\\""/, `the echoed credentials reached the prober and were scrubbed on the way out:\n${text.slice(0, 2000)}`);
  assert.match(text, /"vs":"udp:198\.51\.100\.50:1812"/, "the RADIUS check ran (with its secret)");
  const audit = spawnSync(process.execPath, [CLI, "audit", "--json", "--site", "sec", "--redis", servers.redisUrl], { env: { ...process.env, ...sec.env("operator-operator") }, encoding: "utf8", timeout: 30_000 });
  assert.equal(audit.status, 0, audit.stderr);
  assert.match(audit.stdout, /"type":"health\.result".*530 refused \[redacted\]/, `the audit shows the refusal:\n${audit.stdout.slice(0, 1000)}\n${audit.stderr.slice(0, 1000)}`);
  const logs = { prober: prober.log(), controller: controller.log(), recorder: recorder.log() };
  for (const [name, log] of Object.entries(logs)) assert.ok(log.split("\n").length > 5, `${name} logged`);
  assert.match(logs.prober, /\[redacted\]/, "the prober's log carried the echoed credentials, scrubbed");

  const places: [string, string][] = [["audit stream in Redis", text], ["lvsflow audit --json", audit.stdout + audit.stderr], ...Object.entries(logs).map(([n, l]): [string, string] => [`${n} log`, l])];
  const leaks = places.flatMap(([where, t]) => secrets.filter(([, v]) => t.includes(v)).map(([what]) => `${what} in the ${where}`));
  assert.deepEqual(leaks, []);
  process.stdout.write(`# checked ${secrets.length} secrets in ${places.length} places (${places.reduce((n, [, t]) => n + t.length, 0)} characters): none found\n`);
});
