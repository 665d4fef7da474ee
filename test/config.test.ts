// Configuration parsing: ldirectord.cf (lenient and strict), native YAML, loading, conversion.
// Section numbers (§) refer to the ldirectord behaviour reference. Pure: only repo files are read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseLdirectord } from "../shared/config/ldirectord.ts";
import { parseNative } from "../shared/config/native.ts";
import { configToYaml, detectFormat, loadConfig, loadConfigSources } from "../shared/config/load.ts";
import { ConfigError, formatDiagnostic, type Diagnostic } from "../shared/config/diagnostics.ts";
import { mapSeedAddresses } from "../shared/config/lab-map.ts";
import { configCommand } from "../services/cli/config.ts";
import type { Model, VirtualService } from "../shared/schemas/config.ts";

/** assert.ok with a message: without one, node:assert re-parses the transpiled source (very slow). */
function ok(v: unknown, msg = "expected a truthy value"): asserts v {
  assert.ok(v, msg);
}
const repo = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));
const SEED_PATH = repo("infra/lab/seed-ldirectord.cf");
const SEED = readFileSync(SEED_PATH, "utf8");
const LAB_YAML = readFileSync(repo("infra/lab/lvsflow.yaml"), "utf8");

const ld = (text: string, strict = false) => parseLdirectord(text, "t.cf", { strict });
const errs = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "error");
const warns = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "warning");
/** Parses text that must be valid and have one virtual service. */
function one(text: string, strict = false): VirtualService {
  const r = ld(text, strict);
  assert.deepEqual(errs(r.diagnostics).map(formatDiagnostic), []);
  assert.equal(r.virtualServices.length, 1);
  return r.virtualServices[0];
}
/** The single error of a text, formatted. */
function theError(text: string, strict = false): Diagnostic {
  const e = errs(ld(text, strict).diagnostics);
  assert.equal(e.length, 1, e.map(formatDiagnostic).join("\n"));
  return e[0];
}
const V = "virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\n";

// ---------------------------------------------------------------------------------------------
// The seed

test("seed loads in lenient mode into the expected model", () => {
  const r = parseLdirectord(SEED, "seed.cf", {});
  assert.deepEqual(errs(r.diagnostics), []);
  assert.equal(r.global.autoreload, true);
  assert.deepEqual(r.virtualServices.map((v) => v.id), ["tcp:10.0.2.50:443", "tcp:10.0.2.50:80"]);
  for (const [i, port, service] of [[0, 443, "https"], [1, 80, "http"]] as const) {
    const vs = r.virtualServices[i];
    assert.equal(vs.scheduler, "wlc");
    assert.deepEqual(vs.persistence, { timeout: 120, netmask: "255.255.255.0" });
    assert.equal(vs.quiescent, false);
    assert.equal(vs.protocol, "tcp");
    assert.equal(vs.family, "ipv4");
    assert.deepEqual(
      { type: vs.check.type, timeout: vs.check.timeout, interval: vs.check.interval, failureCount: vs.check.failureCount, riseCount: vs.check.riseCount, service: vs.check.service, request: vs.check.request, receive: vs.check.receive },
      { type: "connect", timeout: 5, interval: 5, failureCount: 1, riseCount: 1, service, request: "/aaaa.html", receive: "aaaa" },
    );
    // §1.3: a fallback without a method is gate, not the reals' masq.
    assert.deepEqual(vs.fallback, { address: "127.0.0.1", port, forwarding: "gate" });
    assert.deepEqual(vs.reals.map((x) => [x.address, x.port, x.forwarding, x.weight]), [
      ["192.168.120.86", port, "masq", 1], ["192.168.120.87", port, "masq", 1],
    ]);
    assert.deepEqual(vs.source, { file: "seed.cf", line: i === 0 ? 12 : 24 });
  }
});

test("seed: each unindented per-virtual line gets a warning naming it", () => {
  const r = parseLdirectord(SEED, "seed.cf", {});
  const lines = warns(r.diagnostics).filter((d) => /not indented/.test(d.message)).map((d) => d.line);
  const expected = [...Array.from({ length: 11 }, (_, k) => 13 + k), ...Array.from({ length: 11 }, (_, k) => 25 + k)];
  assert.deepEqual(lines, expected);
  const w = warns(r.diagnostics).find((d) => d.line === 13)!;
  assert.equal(formatDiagnostic(w).startsWith("seed.cf:13: warning: real: not indented: read as part of the virtual service at line 12"), true);
  // The connect check never fetches aaaa.html: the seed's author should know.
  ok(warns(r.diagnostics).some((d) => d.line === 17 && /not used by checktype connect/.test(d.message)));
  ok(warns(r.diagnostics).some((d) => d.line === 6 && d.directive === "logfile" && /JSON to stderr/.test(d.message)));
});

test("seed: strict mode (§1.2) rejects it with errors naming file:line", () => {
  const r = parseLdirectord(SEED, "seed.cf", { strict: true });
  const e = errs(r.diagnostics);
  ok(e.length >= 20);
  const first = formatDiagnostic(e[0]);
  assert.match(first, /^seed\.cf:13:1: error: real: not indented: ldirectord ends the virtual block of line 12/);
  ok(e.some((d) => d.line === 35 && d.directive === "protocol"));
  // The unindented fallback is what ldirectord would read as a *global* fallback: say so.
  ok(warns(r.diagnostics).some((d) => d.line === 15 && /read as a global directive/.test(d.message)));
});

test("seed: the same file indented is valid in strict mode and gives the same virtual services", () => {
  const indented = SEED.split("\n").map((l) => (/^(real|fallback|service|request|receive|checktype|scheduler|persistent|netmask|protocol)\b/.test(l) ? `\t${l}` : l)).join("\n");
  const s = parseLdirectord(indented, "seed.cf", { strict: true });
  assert.deepEqual(errs(s.diagnostics), []);
  assert.deepEqual(s.virtualServices, parseLdirectord(SEED, "seed.cf", {}).virtualServices);
});

// ---------------------------------------------------------------------------------------------
// Grammar (§1.2)

test("§1.2 key = value with spaces is accepted; a tab or 4 spaces indents, 3 spaces do not (strict)", () => {
  assert.equal(one("checktimeout = 7\nvirtual = 192.0.2.10:80\n\treal = 192.0.2.21:80 masq\n", true).check.timeout, 7);
  const e = theError("virtual=192.0.2.10:80\n   real=192.0.2.21:80 masq\n", true);
  assert.equal(e.line, 2);
  assert.match(e.message, /column 1|outside a virtual block/);
  // Lenient reads it, with a warning.
  const r = ld("virtual=192.0.2.10:80\n   real=192.0.2.21:80 masq\n");
  assert.equal(r.virtualServices[0].reals.length, 1);
  ok(warns(r.diagnostics).some((d) => d.line === 2 && /fewer than 4 spaces/.test(d.message)));
});

test("§1.2 a blank line ends a virtual block: strict error, lenient warning", () => {
  const text = "virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\n\n    real=192.0.2.22:80 masq\n";
  const e = theError(text, true);
  assert.equal(e.line, 4);
  assert.match(e.message, /blank line/);
  const r = ld(text);
  assert.deepEqual(r.virtualServices[0].reals.map((x) => x.address), ["192.0.2.21", "192.0.2.22"]);
  ok(warns(r.diagnostics).some((d) => d.line === 4 && /blank line/.test(d.message)));
});

test("§1.2 after an indented block, an unindented global directive is global again", () => {
  const r = ld("virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\nquiescent=yes\nvirtual=192.0.2.10:443\n    real=192.0.2.21:443 masq\n");
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.virtualServices.map((v) => v.quiescent), [true, true]);
});

test("§1.2 '#' cuts a virtual line even inside quotes (strict); lenient keeps it and warns", () => {
  const text = 'virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\n    request="/a#b"\n';
  const e = theError(text, true);
  assert.equal(e.line, 3);
  assert.equal(e.directive, "request");
  const r = ld(text);
  assert.equal(r.virtualServices[0].check.request, "/a#b");
  ok(warns(r.diagnostics).some((d) => d.line === 3 && /cuts virtual lines at '#'/.test(d.message)));
  // A plain trailing comment on a virtual line is fine in both modes.
  assert.equal(one(V + "    scheduler=rr # round robin\n", true).scheduler, "rr");
});

test("§1.2/§1.9.8 trailing comment on a global yes/no line: lenient warns, strict errors", () => {
  const text = "quiescent = yes # keep persistent clients\n" + V;
  const r = ld(text);
  assert.equal(r.virtualServices[0].quiescent, true);
  const w = warns(r.diagnostics).find((d) => d.directive === "quiescent")!;
  assert.equal(w.line, 1);
  assert.match(w.message, /trailing comment/);
  const e = theError(text, true);
  assert.equal(formatDiagnostic(e).startsWith("t.cf:1:17: error: quiescent: trailing comment"), true);
});

test("§1.9.8 trailing blanks after yes/no break ldirectord: strict error", () => {
  const e = theError("autoreload=yes  \n" + V, true);
  assert.equal(e.line, 1);
  assert.match(e.message, /trailing whitespace/);
  assert.equal(ld("autoreload=yes  \n" + V).global.autoreload, true);
});

test("§1.9.8 CRLF line endings: lenient warning, strict error", () => {
  const text = ("autoreload=yes\n" + V).replaceAll("\n", "\r\n");
  const r = ld(text);
  assert.equal(r.global.autoreload, true);
  assert.equal(r.virtualServices.length, 1);
  ok(warns(r.diagnostics).some((d) => /CRLF/.test(d.message)));
  assert.match(theError(text, true).message, /CRLF/);
});

test("§1.2 indented global line: strict error, lenient warning", () => {
  assert.equal(theError("  checktimeout=3\n" + V, true).line, 1);
  const r = ld("  checktimeout=3\n" + V);
  assert.equal(r.virtualServices[0].check.timeout, 3);
});

test("§1.9.7 global-only directives are rejected inside a virtual block (strict)", () => {
  const text = V + "    fork=yes\n";
  const e = theError(text, true);
  assert.equal(e.line, 3);
  assert.equal(e.directive, "fork");
  const r = ld(text);
  assert.equal(r.global.fork, true);
});

// ---------------------------------------------------------------------------------------------
// Virtual services and their defaults (§1.2, §1.4, §1.6)

test("§1.2 defaults: negotiate check, scheduler wrr, request '/', service from the port, interval 10", () => {
  const vs = one(V);
  assert.deepEqual(
    [vs.check.type, vs.scheduler, vs.check.request, vs.check.receive, vs.check.service, vs.check.interval, vs.check.failureCount, vs.check.timeout, vs.quiescent, vs.persistence, vs.fallback],
    ["negotiate", "wrr", "/", "", "http", 10, 1, 30, false, null, null],
  );
  assert.equal(one("virtual=192.0.2.10:5432\n    real=192.0.2.21 masq\n").check.service, "pgsql");
  assert.equal(one("virtual=192.0.2.10:8443\n    real=192.0.2.21 masq\n").check.service, "none");
  assert.equal(one("virtual=192.0.2.10:https\n    real=192.0.2.21 masq\n").port, 443);
});

test("§1.2 port 53 (or domain) defaults to udp; protocol can override", () => {
  const vs = one("virtual=192.0.2.10:53\n    real=192.0.2.21:53 gate\n");
  assert.equal(vs.protocol, "udp");
  assert.equal(vs.id, "udp:192.0.2.10:53");
  assert.equal(vs.check.service, "dns");
  assert.equal(one("virtual=192.0.2.10:domain\n    real=192.0.2.21 gate\n").protocol, "udp");
  assert.equal(one("virtual=192.0.2.10:53\n    real=192.0.2.21 gate\n    protocol=tcp\n").id, "tcp:192.0.2.10:53");
});

test("§1.2 a numeric virtual is a firewall mark: protocol fwm, service none, port 0", () => {
  const vs = one("virtual=7\n    real=192.0.2.21 gate\n    real=192.0.2.22:80 gate\n");
  assert.deepEqual([vs.id, vs.protocol, vs.address, vs.port, vs.fwmark, vs.check.service], ["fwm:7", "fwm", null, 0, 7, "none"]);
  assert.deepEqual(vs.reals.map((r) => r.port), [0, 80]);
  const e = theError("virtual=7\n    real=192.0.2.21 gate\n    protocol=tcp\n");
  assert.equal(e.line, 3);
  assert.match(e.message, /must be fwm/);
});

test("§1.2 virtual6 and real6 need brackets; IPv6 under virtual= is an error with its column", () => {
  const vs = one("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21]:80 gate\n    persistent=60\n");
  assert.deepEqual([vs.id, vs.family, vs.address, vs.reals[0].address], ["tcp:[2001:db8::10]:80", "ipv6", "2001:db8::10", "2001:db8::21"]);
  assert.deepEqual(vs.persistence, { timeout: 60, netmask: "128" });
  const e = theError("virtual=[2001:db8::10]:80\n    real=192.0.2.21 gate\n");
  assert.equal(formatDiagnostic(e), "t.cf:1:9: error: virtual: an IPv6 address is not allowed under virtual= (fix: virtual6 = [2001:db8::10]:80)");
  assert.match(theError("virtual6=[2001:db8::10]:80\n    real=192.0.2.21 gate\n").message, /not allowed in a virtual6 block/);
  assert.match(theError("virtual=192.0.2.10:80\n    real6=[2001:db8::21] gate\n").message, /not allowed in a virtual block/);
  assert.match(theError("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21]->[2001:db8::23] gate\n").message, /ranges are not supported for IPv6/);
});

test("§1.2 duplicate virtual services are an error naming both lines", () => {
  const e = theError(V + V);
  assert.equal(formatDiagnostic(e), "t.cf:3:9: error: virtual: duplicate virtual service tcp:192.0.2.10:80 (first defined at line 1) (fix: merge the two blocks)");
});

test("§1.4 checktimeout/negotiatetimeout resolution chain with defaults 5 and 30", () => {
  const cases: [string, string, number][] = [
    // [globals, per-virtual, expected timeout] for a connect check
    ["", "", 5],
    ["negotiatetimeout=9\n", "", 9],
    ["checktimeout=3\nnegotiatetimeout=9\n", "", 3],
    ["checktimeout=3\n", "    negotiatetimeout=8\n", 8],
    ["checktimeout=3\n", "    checktimeout=4\n    negotiatetimeout=8\n", 4],
  ];
  for (const [g, v, want] of cases) assert.equal(one(`${g}${V}    checktype=connect\n${v}`).check.timeout, want, `connect: ${g}${v}`);
  const neg: [string, string, number][] = [
    ["", "", 30],
    ["checktimeout=3\n", "", 3],
    ["checktimeout=3\nnegotiatetimeout=9\n", "", 9],
    ["negotiatetimeout=9\n", "    checktimeout=4\n", 4],
    ["negotiatetimeout=9\n", "    checktimeout=4\n    negotiatetimeout=6\n", 6],
  ];
  for (const [g, v, want] of neg) assert.equal(one(`${g}${V}    checktype=negotiate\n${v}`).check.timeout, want, `negotiate: ${g}${v}`);
  // ping and external use the checktimeout chain; a combined check negotiates.
  assert.equal(one(`negotiatetimeout=9\nchecktimeout=2\n${V}    checktype=ping\n`).check.timeout, 2);
  assert.equal(one(`negotiatetimeout=9\nchecktimeout=2\n${V}    checktype=external\n`).check.timeout, 2);
  assert.equal(one(`negotiatetimeout=9\nchecktimeout=2\n${V}    checktype=3\n`).check.timeout, 9);
});

test("§1.4 checkinterval, failurecount and quiescent: globals, per-virtual overrides, defaults", () => {
  const vs = one(`checkinterval=4\nfailurecount=3\nquiescent=yes\n${V}`);
  assert.deepEqual([vs.check.interval, vs.check.failureCount, vs.quiescent], [4, 3, true]);
  const r = ld(`checkinterval=4\nfailurecount=3\nquiescent=yes\n${V}    checkinterval=2\n    failurecount=2\n    quiescent=no\n`);
  const v2 = r.virtualServices[0];
  assert.deepEqual([v2.check.interval, v2.check.failureCount, v2.quiescent], [2, 2, false]);
  // §1.4: ldirectord only honours a per-virtual checkinterval with fork=yes.
  ok(warns(r.diagnostics).some((d) => d.directive === "checkinterval" && /fork = yes/.test(d.message)));
  assert.match(theError(`${V}    failurecount=0\n`).message, /≥ 1/);
});

test("§1.9.1 quiescent defaults to no (the code), not yes (the manual)", () => {
  assert.equal(one(V).quiescent, false);
});

test("§1.4 persistent: netmask defaults to 255.255.255.255; netmask alone has no effect", () => {
  assert.deepEqual(one(`${V}    persistent=300\n`).persistence, { timeout: 300, netmask: "255.255.255.255" });
  const r = ld(`${V}    netmask=255.255.255.0\n`);
  assert.equal(r.virtualServices[0].persistence, null);
  ok(warns(r.diagnostics).some((d) => d.directive === "netmask" && /without persistent/.test(d.message)));
  assert.match(theError(`${V}    persistent=60\n    netmask=/24\n`).message, /dotted quad/);
});

test("§1.4/§1.5 checktype: connect, ping, on, off, a number (combined), external with its command", () => {
  for (const t of ["connect", "ping", "on", "off", "negotiate"]) assert.equal(one(`${V}    checktype=${t}\n`).check.type, t);
  const c = one(`${V}    checktype=3\n`).check;
  assert.deepEqual([c.type, c.combinedConnects], ["combined", 3]);
  assert.equal(one(`${V}    checktype=external\n`).check.command, "/bin/true");
  assert.equal(one(`${V}    checktype=external\n    checkcommand="/usr/local/bin/check web"\n`).check.command, "/usr/local/bin/check web");
  assert.match(theError(`${V}    checktype=bogus\n`).message, /must be connect, negotiate/);
});

test("§1.4 checktype external-perl is refused with a clear error", () => {
  const e = theError(`${V}    checktype = external-perl\n`);
  assert.equal(formatDiagnostic(e).startsWith("t.cf:3:17: error: checktype: external-perl runs Perl inside ldirectord"), true);
  assert.match(e.fix!, /checktype = external/);
});

test("§1.5 a connect check on a UDP virtual service is a ping", () => {
  const r = ld("virtual=192.0.2.10:53\n    real=192.0.2.21 gate\n    checktype=connect\n");
  assert.equal(r.virtualServices[0].check.type, "ping");
  ok(warns(r.diagnostics).some((d) => d.line === 3 && /ICMP ping/.test(d.message)));
});

test("§1.4 service, httpmethod, virtualhost, checkport, request/receive (request gets a leading '/')", () => {
  const c = one(`${V}    service=https\n    httpmethod=head\n    virtualhost="www.example.org"\n    checkport=8443\n    request="health"\n`).check;
  assert.deepEqual([c.service, c.httpMethod, c.virtualhost, c.port, c.request], ["https", "HEAD", "www.example.org", 8443, "/health"]);
  assert.equal(one(`${V}    virtualhost=www.example.org\n`).check.virtualhost, "www.example.org");
  assert.match(theError(`${V}    service=gopher\n`).message, /unknown service/);
  assert.match(theError(`${V}    checkport=70000\n`).message, /1 to 65535/);
  // Quotes are required for request (§1.2): strict error, lenient warning.
  assert.match(theError(`${V}    request=health\n`, true).message, /double-quoted/);
  assert.equal(one(`${V}    request=health\n`).check.request, "/health");
});

test("§1.4 scheduler is any lowercase word; schedflags and ops are kept", () => {
  assert.equal(one(`${V}    scheduler=mh\n    schedflags=mh-port\n`).schedFlags, "mh-port");
  assert.match(theError(`${V}    scheduler=WLC\n`).message, /lowercase/);
  assert.equal(one("virtual=192.0.2.10:53\n    real=192.0.2.21 gate\n    ops=yes\n").onePacket, true);
});

test("§1.4 directives lvsflow replaces are accepted with a warning saying what it does instead", () => {
  const text = 'logfile="local0"\ncallback="/bin/scp-config"\nemailalert="ops@example.org"\nfork=yes\nsupervised=yes\nmaintenancedir=/etc/ha.d/maint\nfallbackcommand="/bin/sorry"\n'
    + `${V}    monitorfile=/var/log/ld.mon\n    servicename=web\n    checkcount=2\n`;
  const r = ld(text);
  assert.deepEqual(errs(r.diagnostics), []);
  const w = new Map(warns(r.diagnostics).map((d) => [d.directive, d.message]));
  assert.match(w.get("logfile")!, /lvsflow logs JSON to stderr; events are audited in Redis/);
  for (const k of ["callback", "emailalert", "supervised", "maintenancedir", "fallbackcommand", "monitorfile", "servicename"]) {
    assert.match(w.get(k) ?? "", /^ignored: /, k);
  }
  // §1.2 logfile needs quotes.
  assert.match(theError("logfile=/var/log/x\n" + V, true).message, /double-quoted/);
});

test("§1.4 credentials are accepted but never echoed in diagnostics", () => {
  const r = ld(`${V}    service=mysql\n    login="lb"\n    passwd="s3cr3t-pw"\n    database="app"\n    secret=hunter2\n`);
  assert.deepEqual(errs(r.diagnostics), []);
  for (const d of r.diagnostics) assert.doesNotMatch(formatDiagnostic(d), /s3cr3t-pw|hunter2/);
});

test("§1.2 timeout= and connecttimeout= are hard errors, like in ldirectord", () => {
  assert.match(theError("timeout=5\n" + V).message, /deprecated/);
  assert.match(theError(`${V}    connecttimeout=5\n`).message, /negotiatetimeout/);
});

// ---------------------------------------------------------------------------------------------
// real= and fallback= (§1.3)

test("§1.3 real: weight, request/receive pair, thresholds, port defaulting to the virtual's", () => {
  const vs = one(`${V.split("\n")[0]}\n    real=192.0.2.21 gate 5 "status", "OK" l:10 u:200\n    real=192.0.2.22:8080 masq 0\n`);
  assert.deepEqual(vs.reals[0], { address: "192.0.2.21", port: 80, forwarding: "gate", weight: 5, request: "/status", receive: "OK", lowerThreshold: 10, upperThreshold: 200 });
  assert.deepEqual([vs.reals[1].port, vs.reals[1].weight, vs.reals[1].request], [8080, 0, null]);
  assert.equal(one('virtual=192.0.2.10:80\n    real=192.0.2.21:80 ipip "/a" "b"\n').reals[0].receive, "b");
});

test("§1.3 real ranges A->B expand inclusively (IPv4 only)", () => {
  const vs = one("virtual=192.0.2.10:80\n    real=192.0.2.254->192.0.3.1:80 masq 2\n");
  assert.deepEqual(vs.reals.map((r) => r.address), ["192.0.2.254", "192.0.2.255", "192.0.3.0", "192.0.3.1"]);
  ok(vs.reals.every((r) => r.weight === 2));
  assert.match(theError("virtual=192.0.2.10:80\n    real=192.0.2.9->192.0.2.1 masq\n").message, /backwards/);
});

test("§1.3/§1.9.5 thresholds must be unquoted: strict error, lenient warning", () => {
  const text = 'virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq 1 "l:5" "u:50"\n';
  assert.match(theError(text, true).message, /unquoted/);
  const r = ld(text);
  assert.deepEqual([r.virtualServices[0].reals[0].lowerThreshold, r.virtualServices[0].reals[0].upperThreshold], [5, 50]);
});

test("§1.3 real line errors: forwarding method required, leftover text, bad address, duplicates", () => {
  const a = theError("virtual=192.0.2.10:80\n    real=192.0.2.21:80\n");
  assert.match(a.message, /missing forwarding method/);
  const b = theError("virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq 1 extra\n");
  assert.equal(formatDiagnostic(b).startsWith('t.cf:2:31: error: real: unexpected "extra"'), true);
  const c = theError("virtual=192.0.2.10:80\n    real=192.168.120.300:80 masq\n");
  assert.equal(formatDiagnostic(c), "t.cf:2:10: error: real: 192.168.120.300 is not a valid IPv4 address");
  assert.match(theError("virtual=192.0.2.10:80\n    real=web1.example.org:80 masq\n").message, /does not resolve host names/);
  assert.match(theError("virtual=192.0.2.10:80\n    real=192.0.2.21 masq\n    real=192.0.2.21:80 masq\n").message, /duplicate real server/);
  assert.match(theError("virtual=192.0.2.10:80\n    real=192.0.2.21:80 nat\n").message, /gate, masq or ipip/);
});

test("§1.3 fallback: method defaults to gate, port to the virtual's", () => {
  assert.deepEqual(one(`${V}    fallback=127.0.0.1\n`).fallback, { address: "127.0.0.1", port: 80, forwarding: "gate" });
  assert.deepEqual(one(`${V}    fallback=127.0.0.1:8080 masq\n`).fallback, { address: "127.0.0.1", port: 8080, forwarding: "masq" });
  assert.match(theError(`${V}    fallback=127.0.0.1:80 nat\n`).message, /gate, masq or ipip/);
});

test("§1.3/§1.7 global fallback: per family and protocol, each virtual's port, overridden per virtual, not for fwmarks", () => {
  const r = ld("fallback=127.0.0.1\nfallback6=[::1]:8080 masq\n" + V
    + "virtual=192.0.2.10:443\n    real=192.0.2.21 masq\n    fallback=192.0.2.99:443\n"
    + "virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21] gate\n"
    + "virtual=7\n    real=192.0.2.21 gate\n");
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.virtualServices.map((v) => v.fallback), [
    { address: "127.0.0.1", port: 80, forwarding: "gate" },
    { address: "192.0.2.99", port: 443, forwarding: "gate" },
    { address: "::1", port: 8080, forwarding: "masq" },
    null,
  ]);
});

// ---------------------------------------------------------------------------------------------
// Error reporting

test("errors carry file:line:col and the directive: unknown directive (with a hint), bad IP", () => {
  const e = theError("checktimout=5\n" + V);
  assert.equal(formatDiagnostic(e), 't.cf:1:1: error: checktimout: unknown directive (fix: did you mean "checktimeout"?)');
  assert.equal(formatDiagnostic(theError("virtual=10.0.2.300:80\n    real=192.0.2.21 masq\n")), "t.cf:1:9: error: virtual: 10.0.2.300 is not a valid IPv4 address");
  assert.equal(theError(`${V}    frobnicate=1\n`).line, 3);
  assert.match(formatDiagnostic(theError("real=192.0.2.21 masq\n")), /^t\.cf:1:1: error: real: only valid inside a virtual block/);
});

test("formatDiagnostic: errors with column, warnings without", () => {
  assert.equal(formatDiagnostic({ file: "a.cf", line: 3, col: 7, severity: "error", directive: "real", message: "bad", fix: "good" }), "a.cf:3:7: error: real: bad (fix: good)");
  assert.equal(formatDiagnostic({ file: "a.cf", line: 3, col: 7, severity: "warning", directive: null, message: "hmm" }), "a.cf:3: warning: hmm");
});

// ---------------------------------------------------------------------------------------------
// Native YAML, include, loading

const labFiles = (): Record<string, string> => ({
  "/lab/lvsflow.yaml": `${LAB_YAML.trimEnd()}\ninclude: ldirectord.cf\n`,
  "/lab/ldirectord.cf": mapSeedAddresses(SEED).text,
});
const reader = (files: Record<string, string>) => (p: string) => {
  if (!(p in files)) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
  return files[p];
};

test("native YAML with include: virtual services from the .cf, nodes and groups from the YAML", () => {
  const files = labFiles();
  const r = loadConfig(["/lab/lvsflow.yaml"], { readFile: reader(files) });
  assert.equal(r.model.site, "lab");
  assert.deepEqual(r.model.nodes.map((n) => [n.name, n.priority, n.interfaces]), [["lb1", 150, { outside: "front", inside: "back" }], ["lb2", 100, { outside: "front", inside: "back" }]]);
  assert.deepEqual(r.model.groups[0].addresses, [
    { address: "198.51.100.50", prefix: 24, interface: "front" }, { address: "203.0.113.1", prefix: 24, interface: "back" },
  ]);
  assert.equal(r.model.groups[0].preempt, true);
  assert.deepEqual(r.model.virtualServices.map((v) => v.id), ["tcp:198.51.100.50:443", "tcp:198.51.100.50:80"]);
  assert.deepEqual(r.model.virtualServices[1].reals.map((x) => x.address), ["203.0.113.11", "203.0.113.12"]);
  assert.equal(r.model.global.autoreload, true);
  assert.deepEqual(r.sources.map((s) => s.path), ["/lab/lvsflow.yaml", "/lab/ldirectord.cf"]);
  assert.match(r.version, /^[0-9a-f]{16}$/);
  // The VIP is in group web, so nothing warns that it will not float.
  ok(!r.warnings.some((w) => /no floating group/.test(w.message)));
  ok(r.warnings.some((w) => w.file === "/lab/ldirectord.cf" && w.line === 13));
  // Another source text is another version.
  files["/lab/ldirectord.cf"] = files["/lab/ldirectord.cf"].replace("persistent=120", "persistent=121");
  assert.notEqual(loadConfig(["/lab/lvsflow.yaml"], { readFile: reader(files) }).version, r.version);
});

test("lab: the seed's addresses are mapped as whole tokens only", () => {
  const { text, mapping } = mapSeedAddresses("virtual=10.0.2.50:80\nreal=192.168.120.86:80\n#10.0.2.500 110.0.2.50 10.0.2.50.1\nreal=192.168.120.87 masq\n");
  assert.equal(text, "virtual=198.51.100.50:80\nreal=203.0.113.11:80\n#10.0.2.500 110.0.2.50 10.0.2.50.1\nreal=203.0.113.12 masq\n");
  assert.deepEqual(mapping, [["10.0.2.50", "198.51.100.50"], ["192.168.120.86", "203.0.113.11"], ["192.168.120.87", "203.0.113.12"]]);
});

test("the .cf and the YAML can also be given as two files; a VIP in no group is warned about", () => {
  const r = loadConfigSources([{ path: "lab.yaml", text: LAB_YAML }, { path: "seed.cf", text: SEED }]);
  assert.equal(r.model.virtualServices.length, 2);
  const w = r.warnings.filter((d) => /no floating group/.test(d.message));
  assert.deepEqual(w.map((d) => [d.file, d.line]), [["seed.cf", 12], ["seed.cf", 24]]);
});

test("native YAML: a type error maps to the line and column of the offending key", () => {
  const text = "site: lab\nnodes:\n  - name: lb1\n    priority: 150\n  - name: lb2\n    priority: high\n";
  const r = parseNative(text, "n.yaml");
  const e = errs(r.diagnostics);
  assert.equal(e.length, 1);
  assert.match(formatDiagnostic(e[0]), /^n\.yaml:6:5: error: nodes\[1\]\.priority: /);
  const u = errs(parseNative("groups:\n  - name: web\n    adresses: []\n", "n.yaml").diagnostics);
  ok(u.some((d) => d.line === 3 && d.col === 5 && /unknown key "adresses"/.test(d.message)));
  const s = errs(parseNative("site: lab\nnodes: [\n", "n.yaml").diagnostics);
  ok(s.length >= 1 && s[0].line >= 2);
});

test("native YAML: virtual services may leave out what can be derived", () => {
  const text = "virtualServices:\n  - address: 192.0.2.10\n    port: 53\n    check: { type: connect }\n    fallback: { address: 127.0.0.1 }\n    reals:\n      - { address: 192.0.2.21, forwarding: gate }\n  - fwmark: 9\n    reals: []\n";
  const r = parseNative(text, "n.yaml");
  assert.deepEqual(errs(r.diagnostics), []);
  const [a, b] = r.part.virtualServices;
  assert.deepEqual([a.id, a.protocol, a.family, a.scheduler, a.check.timeout, a.check.interval, a.fallback, a.reals[0].port, a.reals[0].weight, a.source],
    ["udp:192.0.2.10:53", "udp", "ipv4", "wrr", 5, 10, { address: "127.0.0.1", port: 53, forwarding: "gate" }, 53, 1, { file: "n.yaml", line: 2 }]);
  assert.deepEqual([b.id, b.protocol, b.address, b.port], ["fwm:9", "fwm", null, 0]);
  const bad = errs(parseNative("virtualServices:\n  - address: 192.0.2.10\n    port: 80\n    id: tcp:192.0.2.10:81\n", "n.yaml").diagnostics);
  assert.equal(formatDiagnostic(bad[0]), 'n.yaml:4:5: error: virtualServices[0].id: does not match the service: expected "tcp:192.0.2.10:80" (fix: leave id out)');
});

test("loadConfig: cross references (unique node names, one group per address) and ConfigError", () => {
  const text = "nodes:\n  - { name: lb1, priority: 100 }\n  - { name: lb1, priority: 90 }\ngroups:\n  - name: a\n    addresses: [{ address: 192.0.2.10, prefix: 24, interface: eth0 }]\n  - name: b\n    addresses: [{ address: 192.0.2.10, prefix: 24, interface: eth0 }]\n";
  assert.throws(() => loadConfigSources([{ path: "x.yaml", text }]), (e: unknown) => {
    ok(e instanceof ConfigError);
    const lines = e.diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic);
    ok(lines.some((l) => /^x\.yaml:3:\d+: error: nodes\.name: node "lb1" is defined twice/.test(l)), lines.join("\n"));
    ok(lines.some((l) => /^x\.yaml:8:\d+: error: address: 192\.0\.2\.10 is already in group "a"/.test(l)), lines.join("\n"));
    return true;
  });
  assert.throws(() => loadConfigSources([{ path: "s.cf", text: SEED }], { strict: true }), ConfigError);
  assert.throws(() => loadConfig(["/nonexistent/x.cf"], { readFile: reader({}) }), /cannot read the file/);
});

test("format detection by extension, then by content", () => {
  assert.equal(detectFormat("a.yml", ""), "yaml");
  assert.equal(detectFormat("ldirectord.cf", "site: x\n"), "ldirectord");
  assert.equal(detectFormat("config", "site: lab\nnodes: []\n"), "yaml");
  assert.equal(detectFormat("config", SEED), "ldirectord");
});

test("round trip: configToYaml → parse → the same model", () => {
  const files = labFiles();
  const a = loadConfig(["/lab/lvsflow.yaml"], { readFile: reader(files) }).model;
  const extra = parseLdirectord("virtual6=[2001:db8::10]:443\n    real6=[2001:db8::21] gate 3 \"yes\", \"123\" l:1 u:9\n    checktype=2\n    scheduler=mh\n    schedflags=mh-port\nvirtual=5\n    real=192.0.2.21 gate\n    checktype=off\n", "x.cf", {});
  const model: Model = { ...a, virtualServices: [...a.virtualServices, ...extra.virtualServices] };
  const yaml = configToYaml(model);
  const b = loadConfigSources([{ path: "round.yaml", text: yaml }]).model;
  const strip = (m: Model) => ({ ...m, virtualServices: m.virtualServices.map((v) => ({ ...v, source: null })) });
  assert.deepEqual(strip(b), strip(model));
});

test("CLI: config check prints the model (--json), exits 1 with FILE:LINE:COL errors, schema is JSON", async () => {
  const cap = () => { const o = { out: "", err: "" }; return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s) } }; };
  const good = cap();
  assert.equal(await configCommand(["check", SEED_PATH, "--json"], good.io), 0);
  const model = JSON.parse(good.o.out) as Model;
  assert.equal(model.virtualServices.length, 2);
  assert.match(good.o.err.split("\n")[0], /seed-ldirectord\.cf:\d+: warning: /);
  const human = cap();
  assert.equal(await configCommand(["check", SEED_PATH], human.io), 0);
  assert.match(human.o.out, /tcp:10\.0\.2\.50:443: scheduler wlc, persistent 120 s \(netmask 255\.255\.255\.0\), quiescent no/);
  assert.match(human.o.out, /fallback 127\.0\.0\.1:443 gate/);
  const bad = cap();
  assert.equal(await configCommand(["check", "--strict", SEED_PATH], bad.io), 1);
  const errLines = bad.o.err.trim().split("\n").filter((l) => / error: /.test(l));
  ok(errLines.length > 0 && errLines.every((l) => /^\S+:\d+:\d+: error: /.test(l)));
  assert.doesNotMatch(bad.o.err, /\n\s+at /); // no stack trace
  const schema = cap();
  assert.equal(await configCommand(["schema"], schema.io), 0);
  assert.equal(JSON.parse(schema.o.out).type, "object");
  assert.equal(await configCommand(["check"], cap().io), 2);
});

// ---------------------------------------------------------------------------------------------
// Fuzz

test("fuzz: 2000 seeded mutations of the seed never throw anything but ConfigError; every diagnostic has a line", () => {
  let state = 0x2545f491;
  const rnd = (n: number) => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n; };
  const alphabet = ' \t#="\',:->[]0123456789abcdefxyz.\r\n\u00e9\u0000';
  const base = SEED.split("\n");
  const started = Date.now();
  for (let i = 0; i < 2000; i++) {
    const lines = [...base];
    for (let m = 1 + rnd(4); m > 0; m--) {
      const k = rnd(lines.length);
      switch (rnd(6)) {
        case 0: lines.splice(k, 1); break;
        case 1: lines.splice(k, 0, lines[rnd(lines.length)]); break;
        case 2: { const j = rnd(lines.length); [lines[k], lines[j]] = [lines[j], lines[k]]; break; }
        case 3: { const l = lines[k] ?? ""; const p = rnd(l.length + 1); lines[k] = l.slice(0, p) + alphabet[rnd(alphabet.length)].repeat(1 + rnd(3)) + l.slice(p); break; }
        case 4: lines[k] = (rnd(2) ? "    " : "\t") + (lines[k] ?? ""); break;
        default: { const l = lines[k] ?? ""; const p = rnd(l.length + 1); lines[k] = l.slice(0, p) + l.slice(p + 1 + rnd(4)); }
      }
    }
    const text = lines.join("\n");
    const strict = rnd(4) === 0;
    let ds: Diagnostic[];
    try {
      ds = loadConfigSources([{ path: "fuzz.cf", text }], { strict }).warnings;
    } catch (e) {
      if (!(e instanceof ConfigError)) assert.fail(`mutation ${i} threw ${(e as Error).stack}\n--- input ---\n${text}`);
      ds = e.diagnostics;
      ok(ds.some((d) => d.severity === "error"));
    }
    for (const d of ds) {
      ok(Number.isInteger(d.line) && d.line >= 1 && d.line <= text.split("\n").length, `mutation ${i}: ${formatDiagnostic(d)}`);
      ok(Number.isInteger(d.col) && d.col >= 1, `mutation ${i}: ${formatDiagnostic(d)}`);
    }
  }
  ok(Date.now() - started < 20_000);
});

test("fuzz: 500 seeded mutations of the lab's native YAML, with include, never escape as anything but ConfigError", () => {
  let state = 0x1b873593;
  const rnd = (n: number) => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n; };
  const alphabet = " \t#:-[]{}&*!|>'\",?%@`0123456789abz\n";
  const base = `${LAB_YAML}include: ldirectord.cf\nvirtualServices:\n  - { address: 198.51.100.50, port: 8080, reals: [{ address: 203.0.113.11, forwarding: masq }] }\n`;
  const read = reader({ "/lab/ldirectord.cf": SEED });
  for (let i = 0; i < 500; i++) {
    let text = base;
    for (let m = 1 + rnd(3); m > 0; m--) {
      const p = rnd(text.length);
      text = rnd(2) ? text.slice(0, p) + alphabet[rnd(alphabet.length)] + text.slice(p) : text.slice(0, p) + text.slice(p + 1 + rnd(6));
    }
    try {
      loadConfigSources([{ path: "/lab/lvsflow.yaml", text }], { readFile: read });
    } catch (e) {
      if (!(e instanceof ConfigError)) assert.fail(`mutation ${i} threw ${(e as Error).stack}\n--- input ---\n${text}`);
      for (const d of e.diagnostics) ok(d.line >= 1 && d.col >= 1, `mutation ${i}: ${formatDiagnostic(d)}`);
    }
  }
});

test("§1.2 ldirectord ignores what follows the address of virtual=, so a trailing comment there is fine", () => {
  assert.equal(one("virtual=192.0.2.10:80 # web\n    real=192.0.2.21 masq\n", true).id, "tcp:192.0.2.10:80");
});

test("native YAML: YAML tags and recursive aliases are errors at their line, not crashes", () => {
  const e = errs(parseNative("nodes:\n  - name: a\n    priority: !!timestamp 2001-12-14\n", "n.yaml").diagnostics);
  assert.equal(formatDiagnostic(e[0]).startsWith("n.yaml:3:5: error: nodes[0].priority: unsupported YAML value"), true);
  ok(errs(parseNative("nodes: &x [*x]\n", "n.yaml").diagnostics).length === 1, "recursive alias");
});
