// Prober checks against real local servers on 127.0.0.1: TCP listeners, an http server with good,
// failing, slow and huge pages, and an https server with a self-signed certificate.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import type { TLSSocket } from "node:tls";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { VirtualService } from "../shared/schemas/config.ts";
import { runCheck, unsupportedReason, requestPath, receiveMatcher, MAX_BODY_BYTES, type CheckTarget } from "../services/prober/checks.ts";
import { freePort } from "./harness.ts";
import { tlsPair } from "./prober-servers.ts";

type VsInput = z.input<typeof VirtualService>;
type CheckInput = Partial<VsInput["check"]>;
type RealInput = Partial<VsInput["reals"][number]>;

interface Seen { method: string; url: string; host: string; servername: string | false | null | undefined }
const seen: Seen[] = [];
const drips = new Set<ReturnType<typeof setInterval>>();

function handler(req: IncomingMessage, res: ServerResponse): void {
  const tls = (req.socket as Partial<TLSSocket>).encrypted ? (req.socket as TLSSocket) : null;
  seen.push({ method: req.method ?? "", url: req.url ?? "", host: req.headers.host ?? "", servername: tls?.servername });
  switch (req.url) {
    case "/aaaa.html": res.end("<html><body>aaaa</body></html>\n"); return;
    case "/500": res.statusCode = 500; res.end("aaaa but broken\n"); return;
    case "/other.html": res.end("nothing to see here\n"); return;
    case "/paren": res.end("literal a(b inside\n"); return;
    case "/redirect": res.statusCode = 302; res.setHeader("location", "/aaaa.html"); res.end(); return;
    case "/big": res.end("aaaa" + "x".repeat(1024 * 1024)); return;
    case "/bigtail": res.end("x".repeat(1024 * 1024) + "aaaa"); return;
    case "/stall": return; // never answers
    case "/drip": {
      // Headers at once, then one byte every 200 ms for ever: only the hard timeout can end this.
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("x");
      const t = setInterval(() => res.write("x"), 200);
      drips.add(t);
      res.on("close", () => { clearInterval(t); drips.delete(t); });
      return;
    }
    default: res.statusCode = 404; res.end("not found\n");
  }
}

function listen(srv: Server | TcpServer): Promise<number> {
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve((srv.address() as { port: number }).port));
  });
}

function closeHttp(srv: Server): Promise<void> {
  srv.closeAllConnections();
  return new Promise((r) => srv.close(() => r()));
}

let http: Server;
let https: Server;
let tcp: TcpServer;
let httpPort = 0, httpsPort = 0, tcpPort = 0;

before(async () => {
  http = createHttpServer(handler);
  https = createHttpsServer(tlsPair(join(dirname(fileURLToPath(import.meta.url)), "fixtures", "tls")), handler);
  tcp = createTcpServer((s) => s.destroy());
  httpPort = await listen(http);
  httpsPort = await listen(https);
  tcpPort = await listen(tcp);
});

after(async () => {
  for (const t of drips) clearInterval(t);
  await Promise.all([closeHttp(http), closeHttp(https), new Promise<void>((r) => tcp.close(() => r()))]);
});

function target(check: CheckInput = {}, real: RealInput = {}, vs: Partial<VsInput> = {}): CheckTarget {
  const v = VirtualService.parse({
    id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { type: "negotiate", service: "http", request: "/aaaa.html", receive: "aaaa", port: null, interval: 1, timeout: 1, failureCount: 1, ...check },
    reals: [{ address: "127.0.0.1", port: httpPort, forwarding: "masq", weight: 1, ...real }],
    ...vs,
  });
  return { vs: v, real: v.reals[0] };
}

const check = (t: CheckTarget, signal = new AbortController().signal) => runCheck(t, signal);

async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await p;
  return [v, performance.now() - t0];
}

test("connect: up on a listening port, down on a closed one", async () => {
  const up = await check(target({ type: "connect" }, { port: tcpPort }));
  assert.equal(up.ok, true, up.error ?? "");
  assert.equal(up.error, null);
  const closed = await freePort();
  const down = await check(target({ type: "connect" }, { port: closed }));
  assert.equal(down.ok, false);
  assert.match(down.error ?? "", /ECONNREFUSED/);
  // checkport wins over the real's port
  const viaCheckPort = await check(target({ type: "connect", port: tcpPort }, { port: closed }));
  assert.equal(viaCheckPort.ok, true);
});

test("connect on a udp virtual service is an ICMP ping, as in ldirectord", async () => {
  const t = target({ type: "connect", timeout: 2 }, { port: tcpPort }, { protocol: "udp", id: "udp:198.51.100.50:53", port: 53 });
  assert.equal(unsupportedReason(t.vs), null);
  const o = await check(t);
  assert.equal(o.ok, true, o.error ?? "");
});

test("negotiate http: 2xx and receive matched", async () => {
  seen.length = 0;
  const o = await check(target({ request: "aaaa.html" }));
  assert.equal(o.ok, true, o.error ?? "");
  assert.equal(o.httpStatus, 200);
  assert.equal(o.matched, "aaaa");
  assert.ok(o.latencyMs >= 0);
  assert.equal(seen[0].url, "/aaaa.html", "ldirectord adds the leading slash");
  assert.equal(seen[0].method, "GET");
  assert.equal(seen[0].host, `127.0.0.1:${httpPort}`, "Host defaults to the real's address (with a non-default port)");
});

test("negotiate http: 500, missing receive text and redirects are down", async () => {
  const e500 = await check(target({ request: "/500" }));
  assert.deepEqual([e500.ok, e500.httpStatus, e500.error], [false, 500, "HTTP 500"]);
  const missing = await check(target({ request: "/other.html" }));
  assert.equal(missing.ok, false);
  assert.equal(missing.httpStatus, 200);
  assert.match(missing.error ?? "", /receive "aaaa" not found/);
  const redirect = await check(target({ request: "/redirect" }));
  assert.deepEqual([redirect.ok, redirect.httpStatus], [false, 302]);
  const notFound = await check(target({ request: "/nope" }));
  assert.deepEqual([notFound.ok, notFound.httpStatus], [false, 404]);
});

test("negotiate http: empty receive accepts any 2xx; regex and literal fallback", async () => {
  const any = await check(target({ request: "/other.html", receive: "" }));
  assert.deepEqual([any.ok, any.matched], [true, null]);
  const re = await check(target({ receive: "a{2,}<\\/body>" }));
  assert.deepEqual([re.ok, re.matched], [true, "aaaa</body>"]);
  // "a(b" is not a valid regex: matched as a literal string instead of failing every check.
  const lit = await check(target({ request: "/paren", receive: "a(b" }));
  assert.deepEqual([lit.ok, lit.matched], [true, "a(b"]);
  assert.equal(receiveMatcher("a(b")("xx"), null);
});

test("per-real request/receive override the check's", async () => {
  const o = await check(target({ request: "/500", receive: "nope" }, { request: "/other.html", receive: "to see" }));
  assert.deepEqual([o.ok, o.matched], [true, "to see"]);
});

test("Host header from virtualhost; HEAD method", async () => {
  seen.length = 0;
  await check(target({ virtualhost: "www.example.test" }));
  await check(target({ virtualhost: "www.example.test:8080" }));
  await check(target({ httpMethod: "HEAD", receive: "" }));
  assert.equal(seen[0].host, `www.example.test:${httpPort}`);
  assert.equal(seen[1].host, "www.example.test:8080", "a virtualhost with a port is sent as is");
  assert.equal(seen[2].method, "HEAD");
  const head = await check(target({ httpMethod: "HEAD", receive: "aaaa" }));
  assert.equal(head.ok, false, "HEAD has no body to match receive against");
});

test("slow-drip and stalled servers cannot stretch a check past its timeout", async () => {
  const [drip, ms] = await timed(check(target({ request: "/drip", timeout: 0.6 })));
  assert.equal(drip.ok, false);
  assert.match(drip.error ?? "", /timeout after 0.6s/);
  assert.equal(drip.httpStatus, 200);
  assert.ok(ms < 600 + 250, `drip check took ${ms} ms`);
  const [stall, ms2] = await timed(check(target({ request: "/stall", timeout: 0.4 })));
  assert.equal(stall.ok, false);
  assert.match(stall.error ?? "", /timeout/);
  assert.ok(ms2 < 400 + 250, `stalled check took ${ms2} ms`);
});

test("oversized responses are judged on the first 64 KiB", async () => {
  const [big, ms] = await timed(check(target({ request: "/big", timeout: 5 })));
  assert.deepEqual([big.ok, big.matched], [true, "aaaa"]);
  assert.ok(ms < 2000, `took ${ms} ms`);
  const tail = await check(target({ request: "/bigtail", timeout: 5 }));
  assert.equal(tail.ok, false);
  assert.match(tail.error ?? "", new RegExp(`first ${MAX_BODY_BYTES} bytes`));
});

test("an abort from the scheduler ends a check at once, as a failure", async () => {
  const ac = new AbortController();
  const p = timed(check(target({ request: "/stall", timeout: 10 }), ac.signal));
  setTimeout(() => ac.abort(new Error("timeout after 0.2s")), 200);
  const [o, ms] = await p;
  assert.deepEqual([o.ok, o.error], [false, "timeout after 0.2s"]);
  assert.ok(ms < 600, `took ${ms} ms`);
  const pre = new AbortController();
  pre.abort(new Error("stopped"));
  assert.equal((await check(target(), pre.signal)).ok, false);
});

test("http: a request path with a space or a control character is refused with a clear error", async () => {
  for (const request of ["/a b", "/health\r\nX-Injected: 1"]) {
    const o = await check(target({ request }));
    assert.deepEqual([o.ok, o.error], [false, "request path or Host contains spaces or control characters"]);
  }
});

test("https: self-signed certificate accepted unless tlsVerify; SNI from a hostname virtualhost", async () => {
  seen.length = 0;
  const base = { service: "https" as const };
  const real = { port: httpsPort };
  const plain = await check(target({ ...base }, real));
  assert.equal(plain.ok, true, plain.error ?? "");
  assert.equal(plain.matched, "aaaa");
  const named = await check(target({ ...base, virtualhost: "www.example.test" }, real));
  assert.equal(named.ok, true, named.error ?? "");
  const ipHost = await check(target({ ...base, virtualhost: "127.0.0.1" }, real));
  assert.equal(ipHost.ok, true, ipHost.error ?? "");
  assert.equal(seen.length, 3);
  assert.ok(!seen[0].servername, "no SNI without a virtualhost");
  assert.equal(seen[1].servername, "www.example.test");
  assert.equal(seen[1].host, `www.example.test:${httpsPort}`);
  assert.ok(!seen[2].servername, "no SNI for an IP address");
  const verified = await check(target({ ...base, tlsVerify: true, virtualhost: "www.example.test" }, real));
  assert.equal(verified.ok, false);
  assert.match(verified.error ?? "", /SELF_SIGNED|self.signed/i);
  // http spoken to an https port: a failed check, not an exception
  const wrong = await check(target({}, real));
  assert.equal(wrong.ok, false);
});

test("on, off, none and unsupported checks", async () => {
  assert.deepEqual(await check(target({ type: "on" }, { port: 1 })).then((o) => [o.ok, o.error]), [true, null]);
  assert.deepEqual(await check(target({ type: "off" })).then((o) => [o.ok, o.error]), [false, "checktype off"]);
  assert.deepEqual(await check(target({ service: "none" }, { port: 1 })).then((o) => [o.ok, o.error]), [true, null]);
  for (const service of ["oracle"] as const) {
    const t = target({ type: "negotiate", service });
    const reason = unsupportedReason(t.vs);
    assert.match(reason ?? "", service === "oracle" ? /Oracle's proprietary client library/ : /not implemented yet; use checktype external/);
    assert.deepEqual(await check(t).then((o) => [o.ok, o.error]), [false, reason]);
  }
  const unknownPlugin = target({ type: "plugin", plugin: "nobody-registered-this" });
  assert.match(unsupportedReason(unknownPlugin.vs) ?? "", /no probe registered under "nobody-registered-this"/);
  assert.equal((await check(unknownPlugin)).ok, false);
  for (const t of [target(), target({ type: "connect" }), target({ type: "on" }), target({ type: "off" }), target({ service: "https" })]) {
    assert.equal(unsupportedReason(t.vs), null);
  }
});

test("never throws: port 0 and unreachable hosts become failed outcomes", async () => {
  const zero = await check(target({ type: "connect" }, { port: 0 }));
  assert.deepEqual([zero.ok, zero.error], [false, "no port to check (real port 0 and no checkport)"]);
  const v6 = await check(target({ type: "negotiate", timeout: 0.5 }, { address: "::1", port: await freePort() }));
  assert.equal(v6.ok, false);
});

test("requestPath", () => {
  assert.equal(requestPath(""), "/");
  assert.equal(requestPath("a.html"), "/a.html");
  assert.equal(requestPath("/x?y=1"), "/x?y=1");
  assert.equal(requestPath("http://example.test/p?q"), "/p?q");
});
