// The check kinds beyond a single protocol exchange: ping (Debian's ping, on loopback), external
// (checkcommand with ldirectord's arguments, killed at the deadline with its children), combined
// N, keepalived's retry / delay_before_retry / status_code / connect_timeout, and in-process probe
// plugins that answer, fail, throw, return garbage or never settle.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer as createHttpServer } from "node:http";
import { connect as tcpConnect, type Socket } from "node:net";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { z } from "zod";
import { VirtualService } from "../shared/schemas/config.ts";
import { runCheck, createCheckRunner, checkBudgetMs, CombinedCursor, statusAccepted, type CheckTarget } from "../services/prober/checks.ts";
import { registerProbe, unregisterProbe, loadProbeModule } from "../services/prober/checks/plugins.ts";
import { externalArgv } from "../services/prober/checks/external.ts";
import { pingArgs } from "../services/prober/checks/ping.ts";
import { freePort, sleep } from "./harness.ts";

type VsInput = z.input<typeof VirtualService>;
type CheckInput = Partial<VsInput["check"]>;

const dir = mkdtempSync(join(tmpdir(), "lvsflow-kinds-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function target(check: CheckInput, port = 80, vs: Partial<VsInput> = {}): CheckTarget {
  const v = VirtualService.parse({
    id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { type: "connect", service: "http", request: "/", receive: "", port: null, interval: 1, timeout: 1, failureCount: 1, ...check },
    reals: [{ address: "127.0.0.1", port, forwarding: "masq", weight: 1 }],
    ...vs,
  });
  return { vs: v, real: v.reals[0] };
}
const check = (t: CheckTarget, signal = new AbortController().signal) => runCheck(t, signal);
const hasPing = spawnSync("ping", ["-V"], { stdio: "ignore" }).status === 0;

function script(name: string, body: string): string {
  const f = join(dir, name);
  writeFileSync(f, `#!/bin/sh\n${body}\n`);
  chmodSync(f, 0o755);
  return f;
}

test("ping: loopback answers; argv is built from a validated address", { skip: hasPing ? false : "ping not installed (iputils-ping)" }, async () => {
  const o = await check(target({ type: "ping", timeout: 2 }));
  assert.equal(o.ok, true, o.error ?? "");
  assert.deepEqual(pingArgs("127.0.0.1", 1500), ["-4", "-n", "-q", "-c", "1", "-W", "1.5", "127.0.0.1"]);
  assert.deepEqual(pingArgs("::1", 300).slice(0, 1), ["-6"]);
  assert.throws(() => pingArgs("127.0.0.1; rm -rf /", 1000), /needs an IP address/);
});

test("external: ldirectord's arguments, exit status, output in the detail", async () => {
  const out = join(dir, "args.txt");
  const ok = script("ok.sh", `echo "$@" > ${out}; echo all fine`);
  const o = await check(target({ type: "external", command: `${ok} --flag`, timeout: 3 }, 8080));
  assert.deepEqual([o.ok, o.error, o.matched], [true, null, "all fine"]);
  assert.equal(readFileSync(out, "utf8").trim(), "--flag 198.51.100.50 80 127.0.0.1 8080");
  const bad = script("bad.sh", "echo 'backend says no' >&2; exit 3");
  const b = await check(target({ type: "external", command: bad, timeout: 3 }));
  assert.equal(b.ok, false);
  assert.match(b.error ?? "", /exited 3: backend says no/);
  const missing = await check(target({ type: "external", command: join(dir, "nope.sh") }));
  assert.match(missing.error ?? "", /nope\.sh not found/);
  // fwmark virtual services pass the mark instead of an address.
  const fwm = target({ type: "external", command: "/bin/true" }, 0, { id: "fwm:7", protocol: "fwm", address: null, port: 0, fwmark: 7 });
  assert.deepEqual(externalArgv("/bin/true", { target: fwm }).args, ["7", "0", "127.0.0.1", "0"]);
  // No shell: metacharacters are plain arguments.
  assert.deepEqual(externalArgv("/bin/echo $(id);x", { target: target({}) }).args.slice(0, 1), ["$(id);x"]);
});

test("external: a command that overruns is killed at the timeout, children included", async () => {
  const pidFile = join(dir, "child.pid");
  const slow = script("slow.sh", `sleep 30 & echo $! > ${pidFile}; wait`);
  const t0 = Date.now();
  const o = await check(target({ type: "external", command: slow, timeout: 0.5 }));
  const ms = Date.now() - t0;
  assert.equal(o.ok, false);
  assert.match(o.error ?? "", /killed at the deadline|timeout after 0.5s/);
  assert.ok(ms < 500 + 400, `took ${ms} ms`);
  await sleep(200);
  const childPid = Number(readFileSync(pidFile, "utf8"));
  assert.ok(childPid > 0 && !existsSync(`/proc/${childPid}`) || readFileSync(`/proc/${childPid}/stat`, "utf8").split(" ")[2] === "Z", "the script's child survived the deadline");
});

test("combined N: one negotiate, N connects, negotiate again; failures force a negotiate", () => {
  const c = new CombinedCursor();
  const seq: string[] = [];
  const run = (ok: boolean) => { const k = c.next("r", 2); seq.push(k[0]); c.record("r", k, ok, 2); };
  [true, true, true, true, true].forEach(run); // n c c n c
  run(false); // connect fails (c)
  run(true); // → negotiate
  run(false); // connect (c) fails
  run(false); // negotiate fails
  run(true); // negotiate again (never back on a bare connect)
  assert.equal(seq.join(""), "nccnccncnn");
});

test("combined against a real http server: requests only on negotiate slots", async () => {
  let requests = 0;
  const srv = createHttpServer((req, res) => { requests++; res.end("aaaa"); });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    const runner = createCheckRunner();
    const t = target({ type: "combined", service: "http", combinedConnects: 3, receive: "aaaa" }, port);
    for (let i = 0; i < 8; i++) assert.equal((await runner(t, new AbortController().signal)).ok, true);
    assert.equal(requests, 2); // slots 1 and 5 negotiate; the other six only connect
  } finally {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("retry and delay_before_retry: a flapping page passes on the second attempt; budget covers all", async () => {
  let n = 0;
  const srv = createHttpServer((req, res) => { n++; res.statusCode = n % 2 === 1 ? 503 : 200; res.end("ok"); });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    const t0 = Date.now();
    const o = await check(target({ type: "negotiate", service: "http", retry: 2, delayBeforeRetry: 0.2 }, port));
    assert.equal(o.ok, true, o.error ?? "");
    assert.ok(Date.now() - t0 >= 190, "no delay before the retry");
    assert.equal(n, 2);
    const none = await check(target({ type: "negotiate", service: "http", retry: 0 }, port)); // n=3 → 503
    assert.deepEqual([none.ok, none.httpStatus], [false, 503]);
    const bad = await check(target({ type: "negotiate", service: "http", retry: 1, delayBeforeRetry: 0.05, request: "/x", statusCodes: ["418"] }, port));
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? "", /HTTP (200|503) \(after 2 attempts\)/);
    assert.equal(checkBudgetMs(target({ timeout: 2, retry: 2, delayBeforeRetry: 1 }).vs.check), 8000);
  } finally {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("status_code: accepted codes and ranges instead of 2xx", async () => {
  assert.equal(statusAccepted(204, null), true);
  assert.equal(statusAccepted(301, null), false);
  assert.equal(statusAccepted(301, ["200", "300-399"]), true);
  assert.equal(statusAccepted(404, ["200-299"]), false);
  const srv = createHttpServer((req, res) => { res.statusCode = 404; res.end("gone"); });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    assert.equal((await check(target({ type: "negotiate", service: "http", statusCodes: ["404"] }, port))).ok, true);
    assert.equal((await check(target({ type: "negotiate", service: "http" }, port))).ok, false);
  } finally {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

/** A listener whose process is stopped, with its accept queue full: further SYNs are dropped. */
async function blackhole(): Promise<{ port: number; stop: () => void }> {
  const child: ChildProcess = spawn(process.execPath, ["-e",
    "require('net').createServer().listen({port:0,host:'127.0.0.1',backlog:1},function(){console.log(this.address().port)})"], { stdio: ["ignore", "pipe", "ignore"] });
  const port = await new Promise<number>((r) => child.stdout!.once("data", (d: Buffer) => r(Number(String(d).trim()))));
  child.kill("SIGSTOP");
  const fill: Socket[] = [];
  for (let i = 0; i < 4; i++) { const s = tcpConnect(port, "127.0.0.1"); s.on("error", () => {}); fill.push(s); }
  await sleep(100);
  return { port, stop: () => { for (const s of fill) s.destroy(); child.kill("SIGKILL"); } };
}

test("connect_timeout: a connect that hangs fails at connectTimeout, not at the check timeout", async (t) => {
  const bh = await blackhole();
  t.after(bh.stop);
  const t0 = Date.now();
  const o = await check(target({ type: "connect", timeout: 3, connectTimeout: 0.3 }, bh.port));
  const ms = Date.now() - t0;
  assert.equal(o.ok, false);
  assert.match(o.error ?? "", /connect timeout after 0.3s/);
  assert.ok(ms >= 250 && ms < 1000, `took ${ms} ms`);
  const h = await check(target({ type: "negotiate", service: "http", timeout: 3, connectTimeout: 0.3 }, bh.port));
  assert.match(h.error ?? "", /connect timeout after 0.3s/);
  const s = await check(target({ type: "negotiate", service: "smtp", timeout: 3, connectTimeout: 0.3 }, bh.port));
  assert.match(s.error ?? "", /connect timeout after 0.3s/);
});

test("plugins: answer, fail, throw, garbage, overrun, ignore the signal — always a result in time", async (t) => {
  const seen: { host: string; port: number; timeoutMs: number; options: unknown; passwd?: string }[] = [];
  registerProbe("t-up", (r) => { seen.push({ host: r.host, port: r.port, timeoutMs: r.timeoutMs, options: r.options, passwd: r.credentials.passwd }); return { ok: true, detail: "fine", latencyMs: 1.5 }; });
  registerProbe("t-down", async () => ({ ok: false, detail: "queue depth 900" }));
  registerProbe("t-throw", async () => { throw new Error("boom"); });
  registerProbe("t-garbage", async () => ({ ok: "yes" }) as never);
  registerProbe("t-hang", () => new Promise(() => {}));
  registerProbe("t-abortable", (r) => new Promise((_, reject) => r.signal.addEventListener("abort", () => reject(new Error("stopped by signal")))));
  t.after(() => ["t-up", "t-down", "t-throw", "t-garbage", "t-hang", "t-abortable"].forEach(unregisterProbe));
  const p = (plugin: string, extra: CheckInput = {}) => check(target({ type: "plugin", plugin, timeout: 0.3, ...extra }, 9000));
  const up = await p("t-up", { pluginOptions: { queue: "orders" }, passwd: "pw" });
  assert.deepEqual([up.ok, up.matched, up.latencyMs], [true, "fine", 1.5]);
  assert.deepEqual(seen[0], { host: "127.0.0.1", port: 9000, timeoutMs: 300, options: { queue: "orders" }, passwd: "pw" });
  assert.deepEqual([(await p("t-down")).error], ["queue depth 900"]);
  assert.match((await p("t-throw")).error ?? "", /check threw: boom/);
  assert.match((await p("t-garbage")).error ?? "", /returned an invalid result/);
  for (const name of ["t-hang", "t-abortable"]) {
    const t0 = Date.now();
    const o = await p(name);
    assert.equal(o.ok, false);
    assert.match(o.error ?? "", /timeout after 0.3s|stopped by signal/);
    assert.ok(Date.now() - t0 < 300 + 200, `${name} overran`);
  }
});

test("plugins: a module file registers its probes by name", async (t) => {
  const mod = join(dir, "probe-mod.mjs");
  writeFileSync(mod, "export const probes = { 'file-probe': async (r) => ({ ok: r.port === 7, detail: `port ${r.port}` }) };\n");
  assert.deepEqual(await loadProbeModule(mod), ["file-probe"]);
  t.after(() => unregisterProbe("file-probe"));
  assert.equal((await check(target({ type: "plugin", plugin: "file-probe" }, 7))).ok, true);
  assert.equal((await check(target({ type: "plugin", plugin: "file-probe" }, 8))).error, "port 8");
  const bad = join(dir, "bad-mod.mjs");
  writeFileSync(bad, "export const nothing = 1;\n");
  await assert.rejects(loadProbeModule(bad), /exports no `probes` object/);
  assert.equal(typeof (await freePort()), "number");
});

test("lean http parser: status line, headers, chunked bodies, malformed input", async () => {
  const { parseHead, dechunk, MAX_HEADER_BYTES } = await import("../services/prober/checks/http-lean.ts");
  const h = parseHead(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"))!;
  assert.deepEqual([h.status, h.length, h.chunked, h.headEnd], [200, 5, false, 44]);
  assert.equal(parseHead(Buffer.from("HTTP/1.1 200 OK\r\nX: y")), null); // incomplete
  assert.equal(parseHead(Buffer.from("HTTP/1.0 404\r\n\r\n"))!.status, 404);
  assert.throws(() => parseHead(Buffer.from("SSH-2.0-OpenSSH\r\n\r\n")), /not an HTTP response|invalid HTTP status line/);
  assert.throws(() => parseHead(Buffer.from("HTTP/1.1 \u001b[2J 200\r\n\r\n")), /invalid HTTP status line/);
  assert.throws(() => parseHead(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")), /invalid Content-Length/);
  assert.throws(() => parseHead(Buffer.from("HTTP/1.1 200 OK\r\nX: " + "a".repeat(MAX_HEADER_BYTES))), /HPE_HEADER_OVERFLOW/);
  assert.equal(parseHead(Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))!.chunked, true);
  const d = dechunk(Buffer.from("4\r\naaaa\r\n3;ext=1\r\nbbb\r\n0\r\n\r\n"), 1000);
  assert.deepEqual([d.body.toString(), d.done], ["aaaabbb", true]);
  const partial = dechunk(Buffer.from("4\r\naa"), 1000);
  assert.deepEqual([partial.body.toString(), partial.done], ["aa", false]);
  assert.equal(dechunk(Buffer.from("10000\r\n" + "y".repeat(0x10000)), 0x8000).done, true); // capped: judged on the first bytes
  assert.throws(() => dechunk(Buffer.from("zz\r\n"), 10), /invalid chunk size/);
});

test("external: the command line is split like plain shell words, with no shell features", async () => {
  const { splitWords } = await import("../services/prober/checks/external.ts");
  assert.deepEqual(splitWords(`/usr/bin/check --name 'a b' "c \\"d\\"" e\\ f`), ["/usr/bin/check", "--name", "a b", 'c "d"', "e f"]);
  assert.deepEqual(splitWords("  /bin/true  "), ["/bin/true"]);
  assert.deepEqual(splitWords(`x "" y`), ["x", "", "y"]);
  assert.deepEqual(splitWords("a $(id) `id` ; | > *"), ["a", "$(id)", "`id`", ";", "|", ">", "*"]);
  assert.throws(() => splitWords(`x "open`), /unterminated quote/);
});
