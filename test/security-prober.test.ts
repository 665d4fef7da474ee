// Probers against hostile real servers, on loopback: huge and endless bodies, endless headers and
// lines, slow drips, line floods, garbage where HTTP or TLS should be, garbage and floods over UDP.
// Every check must end within its timeout (plus scheduling slack on a shared machine), read a
// bounded number of bytes (counted by the server: what it managed to send before the prober cut
// it off), and never carry control characters from the server into the result's error text,
// which travels into events, logs and `lvsflow audit` on a terminal.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { VirtualService } from "../shared/schemas/config.ts";
import { runCheck, type CheckOutcome, type CheckTarget } from "../services/prober/checks.ts";

type CheckInput = Partial<z.input<typeof VirtualService>["check"]>;
const TIMEOUT_S = 1.5;
/** Scheduling slack on two shared cores: a check that ignores its deadline overshoots by far more. */
const SLACK_MS = 2000;
const TLS = { key: readFileSync(fileURLToPath(new URL("fixtures/tls/key.pem", import.meta.url))), cert: readFileSync(fileURLToPath(new URL("fixtures/tls/cert.pem", import.meta.url))) };

const servers: { close(): void }[] = [];
const timers = new Set<ReturnType<typeof setInterval>>();
after(() => { for (const t of timers) clearInterval(t); for (const s of servers) s.close(); });

interface Hostile { port: number; bytes: () => number }

/** A TCP (or TLS) server running `behave` on every connection, counting the bytes it gets out. */
async function hostile(behave: (s: Socket, sent: (n: number) => void) => void, tls = false): Promise<Hostile> {
  let bytes = 0;
  const onConn = (s: Socket) => { s.on("error", () => undefined); behave(s, (n) => (bytes += n)); };
  const srv: Server = tls ? createTlsServer(TLS, (s: TLSSocket) => onConn(s)) : createTcpServer(onConn);
  srv.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  servers.push({ close: () => srv.close() });
  return { port: (srv.address() as { port: number }).port, bytes: () => bytes };
}

/** Writes `chunk` as fast as the peer reads it, until the peer goes away. */
function flood(s: Socket, chunk: Buffer | string, sent: (n: number) => void, prefix?: string): void {
  const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, "latin1");
  if (prefix) { s.write(prefix, "latin1"); sent(prefix.length); }
  const pump = () => {
    while (!s.destroyed && s.writable) {
      sent(buf.length);
      if (!s.write(buf)) { s.once("drain", pump); return; }
    }
  };
  pump();
}

/** One byte every `ms` until the peer goes away. */
function drip(s: Socket, text: string, sent: (n: number) => void, ms = 100): void {
  let i = 0;
  const t = setInterval(() => { if (s.destroyed) { clearInterval(t); timers.delete(t); return; } s.write(text[i++ % text.length]!, "latin1"); sent(1); }, ms);
  timers.add(t);
  s.on("close", () => { clearInterval(t); timers.delete(t); });
}

const garbage = (n: number, seed = 7) => { const b = Buffer.alloc(n); let x = seed; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; } return b; };

function target(port: number, check: CheckInput, protocol: "tcp" | "udp" = "tcp"): CheckTarget {
  const v = VirtualService.parse({
    id: `${protocol}:198.51.100.50:80`, protocol, address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { type: "negotiate", service: "http", request: "/", receive: "aaaa", port: null, interval: 5, timeout: TIMEOUT_S, failureCount: 1, ...check },
    reals: [{ address: "127.0.0.1", port, forwarding: "masq", weight: 1 }],
  });
  return { vs: v, real: v.reals[0]! };
}

const rows: string[] = [];
after(() => process.stdout.write(`# hostile servers (timeout ${TIMEOUT_S} s):\n${rows.map((r) => `#   ${r}`).join("\n")}\n`));

/** Runs the check and asserts the bounds; returns the outcome for case-specific assertions. */
async function bounded(name: string, h: Hostile, check: CheckInput, limits: { maxBytes: number; maxMs?: number }, protocol: "tcp" | "udp" = "tcp"): Promise<CheckOutcome> {
  const t0 = performance.now();
  const o = await runCheck(target(h.port, check, protocol), new AbortController().signal);
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 100)); // let the server notice the close before reading its counter
  rows.push(`${name.padEnd(44)} ${String(Math.round(ms)).padStart(5)} ms  ${String(h.bytes()).padStart(9)} bytes sent  ${o.ok ? "ok" : `fail (${(o.error ?? "").length} chars): ${(o.error ?? "").slice(0, 80)}`}`);
  assert.ok(ms <= (limits.maxMs ?? TIMEOUT_S * 1000) + SLACK_MS, `${name}: took ${Math.round(ms)} ms`);
  assert.ok(h.bytes() <= limits.maxBytes, `${name}: the server got ${h.bytes()} bytes out (limit ${limits.maxBytes})`);
  assert.doesNotMatch(o.error ?? "", /[\u0000-\u0008\u000b-\u001f\u007f\u009b]/, `${name}: control characters from the server in the error text`);
  assert.ok((o.error ?? "").length <= 1000, `${name}: ${(o.error ?? "").length} characters of error text (it travels in every health.result)`);
  return o;
}

const MB = 1024 * 1024;

// ---- HTTP ---------------------------------------------------------------------------------------

test("http: a 1 GB body, an endless chunked body: judged on the first 64 kB, the rest never read", async () => {
  const big = await hostile((s, sent) => s.once("data", () => flood(s, "x".repeat(64 * 1024), sent, "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")));
  const o1 = await bounded("http 1 GB body", big, {}, { maxBytes: 16 * MB });
  assert.match(o1.error ?? "", /not found in the first 65536 bytes/);
  const chunked = await hostile((s, sent) => s.once("data", () => flood(s, `10000\r\n${"y".repeat(0x10000)}\r\n`, sent, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")));
  assert.equal((await bounded("http endless chunked", chunked, {}, { maxBytes: 16 * MB })).ok, false);
});

test("http: endless or countless headers fail fast; garbage instead of HTTP fails fast", async () => {
  const endless = await hostile((s, sent) => s.once("data", () => flood(s, "a".repeat(8192), sent, "HTTP/1.1 200 OK\r\nX-Endless: ")));
  assert.match((await bounded("http endless header", endless, {}, { maxBytes: 4 * MB, maxMs: 1000 })).error ?? "", /HPE_HEADER_OVERFLOW|Header overflow/i);
  const many = await hostile((s, sent) => s.once("data", () => flood(s, "X-A: b\r\n".repeat(1000), sent, "HTTP/1.1 200 OK\r\n")));
  assert.equal((await bounded("http countless headers", many, {}, { maxBytes: 4 * MB, maxMs: 1000 })).ok, false);
  const junk = await hostile((s, sent) => s.once("data", () => flood(s, garbage(64 * 1024), sent)));
  assert.equal((await bounded("http binary garbage", junk, {}, { maxBytes: 4 * MB, maxMs: 1000 })).ok, false);
  const escape = await hostile((s) => s.once("data", () => s.end("HTTP/1.1 \u001b[2J\u001b]0;pwned\u0007 200\r\n\r\n", "latin1")));
  await bounded("http status line with terminal escapes", escape, {}, { maxBytes: 1 * MB, maxMs: 1000 });
});

test("http: slow drip of the status line, of the body; a server that accepts and says nothing: the timeout ends them", async () => {
  const head = await hostile((s, sent) => s.once("data", () => drip(s, "HTTP/1.1 200 OK\r\nX: y\r\n", sent)));
  assert.match((await bounded("http drip headers", head, {}, { maxBytes: 1 * MB })).error ?? "", /timeout/);
  const body = await hostile((s, sent) => s.once("data", () => { s.write("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"); drip(s, "z", sent); }));
  assert.match((await bounded("http drip body", body, {}, { maxBytes: 1 * MB })).error ?? "", /timeout/);
  const silent = await hostile(() => undefined);
  assert.match((await bounded("http silent", silent, {}, { maxBytes: 0 })).error ?? "", /timeout/);
});

// ---- TLS ----------------------------------------------------------------------------------------

test("https: garbage, endless garbage or silence instead of a TLS handshake; a valid TLS server with an endless body", async () => {
  const junk = await hostile((s, sent) => s.once("data", () => { s.write(garbage(4096)); sent(4096); }));
  assert.equal((await bounded("https garbage reply", junk, { service: "https" }, { maxBytes: 1 * MB, maxMs: 1000 })).ok, false);
  const endless = await hostile((s, sent) => s.once("data", () => flood(s, garbage(16 * 1024, 3), sent)));
  assert.equal((await bounded("https endless garbage", endless, { service: "https" }, { maxBytes: 8 * MB, maxMs: 1000 })).ok, false);
  const plain = await hostile((s, sent) => s.once("data", () => { s.end("HTTP/1.1 200 OK\r\n\r\naaaa"); sent(23); }));
  assert.equal((await bounded("https answered in plain HTTP", plain, { service: "https" }, { maxBytes: 1 * MB, maxMs: 1000 })).ok, false);
  const silent = await hostile(() => undefined);
  assert.match((await bounded("https silent (no ServerHello)", silent, { service: "https" }, { maxBytes: 0 })).error ?? "", /timeout/);
  const tlsFlood = await hostile((s, sent) => s.once("data", () => flood(s, "x".repeat(64 * 1024), sent, "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")), true);
  assert.match((await bounded("https valid TLS, 1 GB body", tlsFlood, { service: "https" }, { maxBytes: 16 * MB })).error ?? "", /receive "aaaa" not found/);
});

// ---- line protocols -----------------------------------------------------------------------------

test("smtp/pop/imap/nntp/simpletcp: an endless line, a flood of continuation lines, a slow drip, TLS garbage", async () => {
  const endless = await hostile((s, sent) => flood(s, "2".repeat(8192), sent));
  // The session cuts the line at 16 kB; what it got is judged (and refused) as the greeting.
  assert.equal((await bounded("smtp endless greeting line", endless, { service: "smtp" }, { maxBytes: 4 * MB, maxMs: 1000 })).ok, false);
  const lines = await hostile((s, sent) => flood(s, "220-hello\r\n".repeat(500), sent));
  assert.match((await bounded("smtp continuation-line flood", lines, { service: "smtp" }, { maxBytes: 16 * MB, maxMs: 1000 })).error ?? "", /longer than 200 lines/);
  const slow = await hostile((s, sent) => drip(s, "220 hello\r\n", sent, 300));
  assert.equal((await bounded("pop slow greeting", slow, { service: "pop" }, { maxBytes: 1 * MB })).ok, false, "ended by the timeout, judged on what had arrived");
  const nntp = await hostile((s, sent) => flood(s, "\u001b[2J\u001b]0;x\u0007".repeat(1000), sent));
  await bounded("nntp escape-sequence flood", nntp, { service: "nntp" }, { maxBytes: 4 * MB, maxMs: 1000 });
  const simple = await hostile((s, sent) => s.once("data", () => flood(s, "nope\n".repeat(2000), sent)));
  await bounded("simpletcp line flood, no match", simple, { service: "simpletcp", request: "ping", receive: "pong" }, { maxBytes: 64 * MB });
  const pops = await hostile((s, sent) => s.once("data", () => { s.write(garbage(2048)); sent(2048); }));
  assert.equal((await bounded("pops TLS garbage", pops, { service: "pops" }, { maxBytes: 1 * MB, maxMs: 1000 })).ok, false);
});

test("imap: an untagged-line flood after LOGIN is bounded in time and bytes", async () => {
  const flooding = await hostile((s, sent) => { s.write("* OK ready\r\n"); s.once("data", () => flood(s, "* CAPABILITY IMAP4rev1\r\n".repeat(400), sent)); });
  await bounded("imap untagged flood after LOGIN", flooding, { service: "imap", login: "user", passwd: "secret-pw" }, { maxBytes: 64 * MB });
});

test("imap: a refused login hidden behind 100 untagged lines still counts as refused", async () => {
  const tricky = await hostile((s) => { s.write("* OK ready\r\n"); s.once("data", () => { s.write("* x\r\n".repeat(100) + "a1 NO denied\r\n"); s.once("data", () => s.end("* BYE\r\n")); }); });
  const o = await bounded("imap refused login after 100 untagged lines", tricky, { service: "imap", login: "user", passwd: "wrong-pw" }, { maxBytes: 1 * MB });
  assert.equal(o.ok, false, "the login was refused");
});

test("a receive pattern with nested quantifiers against a hostile body cannot block the prober", async (t) => {
  // In a child process: a blocked event loop would block this test runner too.
  const { spawn } = await import("node:child_process");
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-redos-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, "redos.ts");
  writeFileSync(script, [
    `import { createServer } from "node:net";`,
    `import { VirtualService } from ${JSON.stringify(fileURLToPath(new URL("../shared/schemas/config.ts", import.meta.url)))};`,
    `import { runCheck } from ${JSON.stringify(fileURLToPath(new URL("../services/prober/checks.ts", import.meta.url)))};`,
    `const srv = createServer((s) => s.once("data", () => s.end("HTTP/1.1 200 OK\\r\\nContent-Length: 41\\r\\n\\r\\n" + "a".repeat(40) + "!")));`,
    `srv.listen(0, "127.0.0.1", async () => {`,
    `  const port = srv.address().port;`,
    `  const v = VirtualService.parse({ id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false, fallback: null,`,
    `    check: { type: "negotiate", service: "http", request: "/", receive: "(a+)+$", port: null, interval: 5, timeout: 1, failureCount: 1 }, reals: [{ address: "127.0.0.1", port, forwarding: "masq", weight: 1 }] });`,
    `  const o = await runCheck({ vs: v, real: v.reals[0] }, new AbortController().signal);`,
    `  process.stdout.write(JSON.stringify(o)); process.exit(0);`,
    `});`,
  ].join("\n"));
  const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "ignore"] });
  const t0 = performance.now();
  const done = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => { child.kill("SIGKILL"); resolve(false); }, 8000);
    child.once("exit", (code) => { clearTimeout(timer); resolve(code === 0); });
  });
  rows.push(`receive (a+)+$ on a 41-byte body: ${done ? `returned after ${Math.round(performance.now() - t0)} ms` : "no result after 8 s (event loop blocked; child killed)"}`);
  assert.ok(done, "the check returned within its timeout");
});

// ---- UDP ----------------------------------------------------------------------------------------

async function udpHostile(reply: (msg: Buffer, send: (b: Buffer) => void) => void): Promise<Hostile> {
  let bytes = 0;
  const s: UdpSocket = createSocket("udp4");
  s.on("message", (msg, rinfo) => reply(msg, (b) => { bytes += b.length; s.send(b, rinfo.port, rinfo.address, () => undefined); }));
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  servers.push({ close: () => s.close() });
  return { port: s.address().port, bytes: () => bytes };
}

test("dns/radius/sip over UDP: garbage replies, truncated replies, oversized datagrams and reply floods", async () => {
  const cases: [string, CheckInput, (m: Buffer, send: (b: Buffer) => void) => void][] = [
    ["dns garbage reply", { service: "dns", request: "www.example.org", receive: "" }, (_m, send) => send(garbage(512))],
    ["dns reply with its id, then garbage", { service: "dns", request: "www.example.org", receive: "" }, (m, send) => send(Buffer.concat([m.subarray(0, 2), Buffer.from([0x81, 0x80, 0, 1, 0, 200, 0, 0, 0, 0]), garbage(300)]))],
    ["dns compression-pointer loop", { service: "dns", request: "www.example.org", receive: "" }, (m, send) => send(Buffer.concat([m.subarray(0, 2), Buffer.from([0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4])]))],
    ["dns 60 kB datagram", { service: "dns", request: "www.example.org", receive: "" }, (m, send) => send(Buffer.concat([m.subarray(0, 12), garbage(60_000)]))],
    ["dns flood of 2000 replies", { service: "dns", request: "www.example.org", receive: "" }, (_m, send) => { for (let i = 0; i < 2000; i++) send(garbage(200, i)); }],
    ["radius garbage reply", { service: "radius", request: "", receive: "", login: "probe", passwd: "probe-pw", secret: "radius-secret" }, (_m, send) => send(garbage(512))],
    ["radius reply with its id, garbage attributes", { service: "radius", request: "", receive: "", login: "probe", passwd: "probe-pw", secret: "radius-secret" }, (m, send) => send(Buffer.concat([Buffer.from([2, m[1]!, 0xff, 0xff]), garbage(1000)]))],
    ["sip garbage reply", { service: "sip", request: "", receive: "" }, (_m, send) => send(garbage(1400))],
    ["sip 60 kB escape-laden reply", { service: "sip", request: "", receive: "" }, (_m, send) => send(Buffer.from(`SIP/2.0 200 \u001b[2J${"\u001b]0;x\u0007".repeat(8000)}\r\n\r\n`, "latin1"))],
  ];
  for (const [name, check, reply] of cases) {
    const h = await udpHostile(reply);
    await bounded(name, h, check, { maxBytes: 128 * MB }, "udp");
  }
});

// ---- fairness -----------------------------------------------------------------------------------

test("a hostile flood does not starve the checks of other reals in the same prober", async () => {
  const good = await hostile((s) => s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\naaaa")));
  const floods = await Promise.all([0, 1, 2].map(() => hostile((s, sent) => s.once("data", () => flood(s, "x".repeat(64 * 1024), sent, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")))));
  const lineFlood = await hostile((s, sent) => flood(s, "220-x\r\n".repeat(1000), sent));
  const hostileChecks = [...floods.map((f) => runCheck(target(f.port, {}), new AbortController().signal)), runCheck(target(lineFlood.port, { service: "smtp" }), new AbortController().signal)];
  const latencies: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    const o = await runCheck(target(good.port, {}), new AbortController().signal);
    latencies.push(performance.now() - t0);
    assert.equal(o.ok, true, o.error ?? "");
  }
  await Promise.all(hostileChecks);
  rows.push(`good check during 4 floods: ${latencies.map((l) => Math.round(l)).join(", ")} ms`);
  assert.ok(Math.max(...latencies) < TIMEOUT_S * 1000, `a good check took ${Math.round(Math.max(...latencies))} ms during the floods`);
});
