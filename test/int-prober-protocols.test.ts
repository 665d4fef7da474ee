// negotiate checks against real servers speaking each protocol, on 127.0.0.1: dnsmasq (dns over
// udp and tcp), vsftpd (ftp), dovecot (pop, pops, imap, imaps, with and without login), tinyproxy
// (http_proxy), smtp-server from npm (smtp, submission), the sip stack from npm (sip over udp), a
// RADIUS server built on the npm radius codec (radius), nntp-server from npm (nntp, with a small
// in-memory news store: test/nntp-server.ts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { SMTPServer } from "smtp-server";
import radius from "radius";
import sip from "sip";
import ldap from "ldapjs";
import { VirtualService } from "../shared/schemas/config.ts";
import { runCheck, type CheckTarget } from "../services/prober/checks.ts";
import { freePort } from "./harness.ts";
import { startNntpServer, NEWS_GROUP, BROKEN_GROUP, type NntpHandle } from "./nntp-server.ts";
import { startDnsmasq, startDovecot, startMariadb, startPostgres, startTinyproxy, startVsftpd, tlsPair, type Daemon } from "./prober-servers.ts";

type VsInput = z.input<typeof VirtualService>;
type CheckInput = Partial<VsInput["check"]>;

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "tls");
const daemons: Daemon[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
let dns: Daemon | null, ftp: Daemon | null, dovecot: Daemon | null, proxy: Daemon | null, pg: Daemon | null = null, maria: Daemon | null = null;
let nntp: NntpHandle;
let originPort = 0, smtpPort = 0, nntpPort = 0, sipPort = 0, radiusPort = 0, ldapPort = 0, ldapsPort = 0;
const radiusSeen: string[] = [];

function listen(srv: Server | TcpServer): Promise<number> {
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve((srv.address() as { port: number }).port));
  });
}

before(async () => {
  for (const start of [startDnsmasq, startVsftpd, () => startDovecot(tlsPair(fixtures)), startTinyproxy]) {
    const d = await start();
    if (d) daemons.push(d);
    (start === startDnsmasq ? (dns = d) : start === startVsftpd ? (ftp = d) : start === startTinyproxy ? (proxy = d) : (dovecot = d));
  }
  pg = await startPostgres();
  if (pg) daemons.push(pg);
  maria = await startMariadb();
  if (maria) daemons.push(maria);
  // The origin server the proxy fetches from.
  const origin = createHttpServer((req, res) => res.end(req.url === "/via-proxy.html" ? "proxied ok\n" : "other\n"));
  originPort = await listen(origin);
  cleanups.push(() => { origin.closeAllConnections(); return new Promise<void>((r) => origin.close(() => r())); });
  // smtp-server: a real SMTP implementation (nodemailer's), no auth, no TLS offered.
  const smtp = new SMTPServer({ disabledCommands: ["STARTTLS", "AUTH"], banner: "lvsflow test MTA", logger: false });
  smtpPort = await new Promise<number>((resolve, reject) => {
    smtp.once("error", reject);
    smtp.listen(0, "127.0.0.1", () => resolve((smtp.server.address() as { port: number }).port));
  });
  cleanups.push(() => new Promise<void>((r) => smtp.close(() => r())));
  // NNTP: nntp-server (npm) with one group holding one article; it greets with 201.
  nntp = await startNntpServer();
  nntpPort = nntp.port;
  cleanups.push(() => nntp.stop());
  // SIP: the npm sip stack answers OPTIONS with 200 OK.
  sipPort = await freePort();
  const sipStack = sip.create({ port: sipPort, address: "127.0.0.1", udp: true, tcp: true, logger: {} }, (rq: { method: string }) => {
    sipStack.send(sip.makeResponse(rq, rq.method === "OPTIONS" ? 200 : 405, rq.method === "OPTIONS" ? "OK" : "Method Not Allowed"));
  });
  cleanups.push(() => sipStack.destroy());
  // RADIUS: packets decoded and signed by the npm radius codec; probe/s3cret is accepted.
  const rad: UdpSocket = createSocket("udp4");
  rad.on("message", (msg, rinfo) => {
    try {
      const p = radius.decode({ packet: msg, secret: "testing123" });
      const user = String(p.attributes["User-Name"]);
      radiusSeen.push(user);
      const code = user === "probe" && p.attributes["User-Password"] === "s3cret" ? "Access-Accept" : "Access-Reject";
      rad.send(radius.encode_response({ packet: p, code, secret: "testing123" }), rinfo.port, rinfo.address);
    } catch { /* not a valid request: no answer */ }
  });
  radiusPort = await new Promise<number>((r) => rad.bind(0, "127.0.0.1", () => r(rad.address().port)));
  cleanups.push(() => new Promise<void>((r) => rad.close(() => r())));
  // LDAP: ldapjs servers (plain and TLS); cn=probe,dc=example,dc=test / s3cret may bind.
  for (const secure of [false, true]) {
    const pair = secure ? tlsPair(fixtures) : null;
    const srv = ldap.createServer(pair ? { certificate: pair.cert, key: pair.key } : {});
    srv.bind("dc=example,dc=test", (req, res, next) => { if (req.credentials !== "s3cret") return next(new ldap.InvalidCredentialsError()); res.end(); return next(); });
    srv.search("dc=example,dc=test", (req, res, next) => { res.send({ dn: req.dn.toString(), attributes: { objectclass: ["top", "domain"], dc: "example" } }); res.end(); return next(); });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    if (secure) ldapsPort = srv.address().port; else ldapPort = srv.address().port;
    cleanups.push(() => srv.close());
  }
});

after(async () => {
  for (const c of cleanups) await c();
  for (const d of daemons) await d.stop();
});

function target(check: CheckInput, port: number, vs: Partial<VsInput> = {}): CheckTarget {
  const v = VirtualService.parse({
    id: "tcp:198.51.100.50:1", protocol: "tcp", address: "198.51.100.50", port: 1, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { type: "negotiate", service: "none", request: "/", receive: "", port: null, interval: 1, timeout: 3, failureCount: 1, ...check },
    reals: [{ address: "127.0.0.1", port, forwarding: "masq", weight: 1 }],
    ...vs,
  });
  return { vs: v, real: v.reals[0] };
}

const check = (t: CheckTarget) => runCheck(t, new AbortController().signal);
/** Daemons start in before(): whether one is missing is only known inside the test. */
function missing(t: { skip: (why: string) => void }, d: Daemon | null, what: string): boolean {
  if (d) return false;
  t.skip(`${what} not installed (infra/install-deps.sh)`);
  return true;
}

test("dns over udp and tcp against dnsmasq: A and PTR answers, receive, NXDOMAIN", async (t) => {
  if (missing(t, dns, "dnsmasq")) return;
  const port = dns!.ports.dns;
  const udp = { protocol: "udp" as const, id: "udp:198.51.100.50:53" };
  const a = await check(target({ service: "dns", request: "www.example.test", receive: "192\\.0\\.2\\.7" }, port, udp));
  assert.deepEqual([a.ok, a.error, a.matched], [true, null, "192.0.2.7"]);
  const tcp = await check(target({ service: "dns", request: "www.example.test", receive: "192.0.2.7" }, port));
  assert.deepEqual([tcp.ok, tcp.matched], [true, "192.0.2.7"], tcp.error ?? "");
  const ptr = await check(target({ service: "dns", request: "192.0.2.8", receive: "mail" }, port, udp));
  assert.deepEqual([ptr.ok, ptr.matched], [true, "mail.example.test"], ptr.error ?? "");
  const wrong = await check(target({ service: "dns", request: "www.example.test", receive: "^10\\." }, port, udp));
  assert.equal(wrong.ok, false);
  assert.match(wrong.error ?? "", /answers 192\.0\.2\.7 do not match/);
  const nx = await check(target({ service: "dns", request: "missing.example.test" }, port, udp));
  assert.equal(nx.ok, false);
  assert.match(nx.error ?? "", /NXDOMAIN|no A answer|REFUSED/);
  const refused = await check(target({ service: "dns", request: "www.example.test" }, await freePort(), udp));
  assert.equal(refused.ok, false);
  assert.match(refused.error ?? "", /ECONNREFUSED|timeout/);
});

test("ftp against vsftpd: anonymous login, RETR a file matched by receive", async (t) => {
  if (missing(t, ftp, "vsftpd")) return;
  const port = ftp!.ports.ftp;
  const ok = await check(target({ service: "ftp", request: "/health.txt", receive: "all good" }, port));
  assert.deepEqual([ok.ok, ok.error, ok.matched], [true, null, "all good"], ftp!.log());
  const loginOnly = await check(target({ service: "ftp" }, port));
  assert.equal(loginOnly.ok, true, loginOnly.error ?? "");
  const mismatch = await check(target({ service: "ftp", request: "/health.txt", receive: "broken" }, port));
  assert.equal(mismatch.ok, false);
  assert.match(mismatch.error ?? "", /receive "broken" not found in \/health.txt/);
  const absent = await check(target({ service: "ftp", request: "/nope.txt" }, port));
  assert.equal(absent.ok, false);
  assert.match(absent.error ?? "", /RETR \/nope.txt: "550/);
  const user = await check(target({ service: "ftp", login: "root", passwd: "x" }, port));
  assert.equal(user.ok, false);
  assert.match(user.error ?? "", /login as "root" refused/);
});

test("pop, pops, imap, imaps against dovecot: greeting, login, bad password", async (t) => {
  if (missing(t, dovecot, "dovecot")) return;
  const p = dovecot!.ports;
  for (const [service, port] of [["pop", p.pop], ["pops", p.pops], ["imap", p.imap], ["imaps", p.imaps]] as const) {
    const bare = await check(target({ service }, port));
    assert.equal(bare.ok, true, `${service}: ${bare.error} ${dovecot!.log()}`);
    const login = await check(target({ service, login: "probe", passwd: "s3cret" }, port));
    assert.equal(login.ok, true, `${service} login: ${login.error} ${dovecot!.log()}`);
  }
  // Wrong passwords last: dovecot slows down later logins from an address that failed (anvil).
  for (const [service, port] of [["pop", p.pop], ["imaps", p.imaps]] as const) {
    const bad = await check(target({ service, login: "probe", passwd: "wrong", timeout: 10 }, port));
    assert.equal(bad.ok, false, `${service} accepted a wrong password`);
    assert.match(bad.error ?? "", /login as "probe" refused/);
    assert.doesNotMatch(bad.error ?? "", /wrong|s3cret/, "a password leaked into the error");
  }
  // TLS verification on request: dovecot's certificate is self-signed, so it fails.
  const verified = await check(target({ service: "imaps", tlsVerify: true }, p.imaps));
  assert.equal(verified.ok, false);
  assert.match(verified.error ?? "", /SELF_SIGNED|self.signed|DEPTH_ZERO/i);
});

test("http_proxy through tinyproxy: the absolute URL is fetched via the real", async (t) => {
  if (missing(t, proxy, "tinyproxy")) return;
  const port = proxy!.ports.proxy;
  const ok = await check(target({ service: "http_proxy", request: `http://127.0.0.1:${originPort}/via-proxy.html`, receive: "proxied ok" }, port));
  assert.deepEqual([ok.ok, ok.httpStatus, ok.matched], [true, 200, "proxied ok"], `${ok.error} ${proxy!.log()}`);
  const dead = await check(target({ service: "http_proxy", request: `http://127.0.0.1:${await freePort()}/`, receive: "" }, port));
  assert.equal(dead.ok, false); // the proxy answers 5xx for an origin that refuses
  assert.ok((dead.httpStatus ?? 0) >= 500, `status ${dead.httpStatus}`);
  const relative = await check(target({ service: "http_proxy", request: "/via-proxy.html" }, port));
  assert.equal(relative.ok, false);
  assert.match(relative.error ?? "", /http_proxy needs an absolute URL/);
});

test("smtp and submission against smtp-server: greeting and EHLO", async () => {
  for (const service of ["smtp", "submission"] as const) {
    const ok = await check(target({ service }, smtpPort));
    assert.equal(ok.ok, true, ok.error ?? "");
    assert.match(ok.matched ?? "", /^220 .*lvsflow test MTA/);
  }
  // Something that is not an SMTP server (the NNTP server greets with 201).
  const wrong = await check(target({ service: "smtp" }, nntpPort));
  assert.equal(wrong.ok, false);
  assert.match(wrong.error ?? "", /greeting/);
});

test("nntp against nntp-server: a 2xx greeting is up; 400/502 greetings and a refused port are down", async () => {
  const seen = nntp.commands.length;
  const ok = await check(target({ service: "nntp" }, nntpPort));
  assert.deepEqual([ok.ok, ok.error, ok.matched], [true, null, "201 Server ready - No posting allowed"]);
  assert.deepEqual(nntp.commands.slice(seen), ["QUIT"]); // ldirectord's rule: the banner only
  // The library's session with its greeting swapped: a server that allows posting (200), or one
  // that refuses service (400 temporarily, 502 permanently) and closes.
  for (const [greeting, up] of [["200 news.example.test ready, posting allowed", true], ["400 service temporarily unavailable", false], ["502 service permanently unavailable", false]] as const) {
    const srv = await startNntpServer({ greeting });
    try {
      const r = await check(target({ service: "nntp" }, srv.port));
      assert.equal(r.ok, up, `${greeting}: ${r.error}`);
      if (up) assert.equal(r.matched, greeting);
      else assert.equal(r.error, `greeting ${JSON.stringify(greeting)}`);
    } finally {
      await srv.stop();
    }
  }
  const other = await check(target({ service: "nntp" }, await freePort()));
  assert.equal(other.ok, false);
  assert.match(other.error ?? "", /ECONNREFUSED/);
});

test("nntp with a request: GROUP must answer 211 (an existing group); a missing or broken group is down", async () => {
  const seen = nntp.commands.length;
  const ok = await check(target({ service: "nntp", request: NEWS_GROUP }, nntpPort));
  assert.deepEqual([ok.ok, ok.error, ok.matched], [true, null, `211 1 1 1 ${NEWS_GROUP}`]);
  assert.deepEqual(nntp.commands.slice(seen), [`GROUP ${NEWS_GROUP}`, "QUIT"]);
  // As an ldirectord config hands it over (a "/" put before every request).
  const slashed = await check(target({ service: "nntp", request: `/${NEWS_GROUP}` }, nntpPort));
  assert.deepEqual([slashed.ok, slashed.matched], [true, `211 1 1 1 ${NEWS_GROUP}`], slashed.error ?? "");
  const missing = await check(target({ service: "nntp", request: "no.such.group" }, nntpPort));
  assert.deepEqual([missing.ok, missing.error], [false, 'GROUP no.such.group: "411 No such newsgroup"']);
  // The store fails behind the group: the server still greets with 201, but the group is unusable.
  const broken = await check(target({ service: "nntp", request: BROKEN_GROUP }, nntpPort));
  assert.deepEqual([broken.ok, broken.error], [false, `GROUP ${BROKEN_GROUP}: "403 Internal fault"`]);
  // A request that is no newsgroup name is refused before anything is sent.
  const before = nntp.commands.length;
  const bad = await check(target({ service: "nntp", request: "two words" }, nntpPort));
  assert.equal(bad.ok, false);
  assert.match(bad.error ?? "", /not a newsgroup name/);
  assert.equal(nntp.commands.length, before);
});

test("sip over udp and tcp against the npm sip stack: OPTIONS answered 200 OK", async () => {
  const udp = { protocol: "udp" as const, id: "udp:198.51.100.50:5060" };
  const ok = await check(target({ service: "sip", login: "health@example.test" }, sipPort, udp));
  assert.deepEqual([ok.ok, ok.matched], [true, "SIP/2.0 200 OK"], ok.error ?? "");
  const tcp = await check(target({ service: "sip", login: "health@example.test" }, sipPort)); // a tcp virtual service: SIP over TCP
  assert.deepEqual([tcp.ok, tcp.matched], [true, "SIP/2.0 200 OK"], tcp.error ?? "");
  const silent = await check(target({ service: "sip", timeout: 0.5 }, radiusPort, udp)); // a UDP service that ignores SIP
  assert.equal(silent.ok, false);
  assert.match(silent.error ?? "", /timeout after 0.5s/);
});

test("radius: accept and reject both count as up; a wrong secret or no server is down", async () => {
  const udp = { protocol: "udp" as const, id: "udp:198.51.100.50:1812" };
  const accept = await check(target({ service: "radius", login: "probe", passwd: "s3cret", secret: "testing123" }, radiusPort, udp));
  assert.deepEqual([accept.ok, accept.matched], [true, "Access-Accept"], accept.error ?? "");
  const reject = await check(target({ service: "radius", login: "probe", passwd: "nope", secret: "testing123" }, radiusPort, udp));
  assert.deepEqual([reject.ok, reject.matched], [true, "Access-Reject"], reject.error ?? "");
  const badSecret = await check(target({ service: "radius", login: "probe", passwd: "s3cret", secret: "other", timeout: 0.5 }, radiusPort, udp));
  assert.equal(badSecret.ok, false);
  assert.match(badSecret.error ?? "", /timeout after 0.5s; a reply came with a wrong authenticator/);
  const noSecret = await check(target({ service: "radius", login: "probe" }, radiusPort, udp));
  assert.deepEqual([noSecret.ok, noSecret.error], [false, "radius check needs a secret"]);
  assert.ok(radiusSeen.includes("probe"));
});

test("simpletcp: request sent with \\n expanded, a reply line matches receive", async () => {
  const srv = createTcpServer((s) => {
    s.setEncoding("utf8");
    s.on("data", (d: string) => { if (d === "PING\n") s.end("hello\r\nPONG ready\r\n"); else s.end("ERR\r\n"); });
    s.on("error", () => {});
  });
  const port = await listen(srv);
  try {
    const ok = await check(target({ service: "simpletcp", request: "PING\\n", receive: "PONG \\w+" }, port));
    assert.deepEqual([ok.ok, ok.matched], [true, "PONG ready"], ok.error ?? "");
    const bad = await check(target({ service: "simpletcp", request: "HELLO\\n", receive: "PONG" }, port));
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? "", /no reply line matches "PONG"/);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("ldap and ldaps against ldapjs: anonymous and DN binds, search base, receive, refusals", async () => {
  for (const [service, port] of [["ldap", ldapPort], ["ldaps", ldapsPort]] as const) {
    const anon = await check(target({ service, request: "dc=example,dc=test", receive: "^dc=example" }, port));
    assert.deepEqual([anon.ok, anon.matched], [true, "dc=example,dc=test"], `${service}: ${anon.error}`);
    const bound = await check(target({ service, request: "dc=example,dc=test", login: "cn=probe,dc=example,dc=test", passwd: "s3cret" }, port));
    assert.equal(bound.ok, true, `${service}: ${bound.error}`);
    const bad = await check(target({ service, request: "dc=example,dc=test", login: "cn=probe,dc=example,dc=test", passwd: "nope" }, port));
    assert.deepEqual([bad.ok, bad.error], [false, 'ldap bind as "cn=probe,dc=example,dc=test" refused: invalidCredentials (49)']);
    const other = await check(target({ service, request: "dc=elsewhere" }, port));
    assert.deepEqual([other.ok, other.error], [false, 'ldap search of "dc=elsewhere": noSuchObject (32)']);
    const mismatch = await check(target({ service, request: "dc=example,dc=test", receive: "^ou=" }, port));
    assert.equal(mismatch.ok, false);
  }
  // ldaps with verification: the test certificate is self-signed.
  const verified = await check(target({ service: "ldaps", request: "dc=example,dc=test", tlsVerify: true }, ldapsPort));
  assert.match(verified.error ?? "", /SELF_SIGNED|self.signed|DEPTH_ZERO/i);
});

test("pgsql against PostgreSQL: SCRAM login, a query with rows is up; no rows, bad SQL, bad password are down", async (t) => {
  if (missing(t, pg, "postgresql")) return;
  const port = pg!.ports.pgsql;
  const creds = { login: "probe", passwd: "s3cret", database: "postgres" };
  const ok = await check(target({ service: "pgsql", request: "SELECT 1", ...creds }, port));
  assert.deepEqual([ok.ok, ok.matched], [true, "1 row"], ok.error ?? "");
  const none = await check(target({ service: "pgsql", request: "SELECT 1 WHERE false", ...creds }, port));
  assert.deepEqual([none.ok, none.error], [false, "pgsql query returned no rows"]);
  const bad = await check(target({ service: "pgsql", request: "SELEKT 1", ...creds }, port));
  assert.equal(bad.ok, false);
  assert.match(bad.error ?? "", /^pgsql query: 42601 syntax error/);
  const pw = await check(target({ service: "pgsql", request: "SELECT 1", ...creds, passwd: "wrong" }, port));
  assert.equal(pw.ok, false);
  assert.match(pw.error ?? "", /28P01 password authentication failed/);
  assert.doesNotMatch(pw.error ?? "", /wrong|s3cret/);
  const db = await check(target({ service: "pgsql", request: "SELECT 1", ...creds, database: "nope" }, port));
  assert.match(db.error ?? "", /3D000/);
  const noDb = await check(target({ service: "pgsql", request: "SELECT 1", login: "probe" }, port));
  assert.deepEqual([noDb.ok, noDb.error], [false, "pgsql check needs login and database"]);
});

test("mysql against MariaDB: native-password login, a query with rows is up; no rows, bad SQL, bad password are down", async (t) => {
  if (missing(t, maria, "mariadb-server")) return;
  const port = maria!.ports.mysql;
  const creds = { login: "probe", passwd: "s3cret", database: "mysql" };
  const ok = await check(target({ service: "mysql", request: "SELECT 1", ...creds }, port));
  assert.deepEqual([ok.ok, ok.matched], [true, "1 row"], `${ok.error} ${maria!.log()}`);
  const two = await check(target({ service: "mysql", request: "SELECT 1 UNION SELECT 2", ...creds }, port));
  assert.deepEqual([two.ok, two.matched], [true, "2 rows"], two.error ?? "");
  const none = await check(target({ service: "mysql", request: "SELECT 1 FROM DUAL WHERE 1 = 0", ...creds }, port));
  assert.deepEqual([none.ok, none.error], [false, "mysql query returned no rows"]);
  const bad = await check(target({ service: "mysql", request: "SELEKT 1", ...creds }, port));
  assert.match(bad.error ?? "", /^mysql query: 1064 /);
  const pw = await check(target({ service: "mysql", request: "SELECT 1", ...creds, passwd: "wrong" }, port));
  assert.equal(pw.ok, false);
  assert.match(pw.error ?? "", /^mysql: 1045 Access denied/);
  assert.doesNotMatch(pw.error ?? "", /wrong|s3cret/);
});
