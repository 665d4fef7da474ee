// Every ldirectord.cf directive of the reference (§1.4), and every gotcha (§1.9), with a test
// that cites it. The first test fails when a directive is added to the parser without a case
// here. Pure: no files, no servers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseLdirectord } from "../shared/config/ldirectord.ts";
import { DIRECTIVES } from "../shared/config/ldirectord-directives.ts";
import { formatDiagnostic, type Diagnostic } from "../shared/config/diagnostics.ts";
import type { VirtualService } from "../shared/schemas/config.ts";
import { unsupportedReason } from "../services/prober/checks.ts";

function ok(v: unknown, msg = "expected a truthy value"): asserts v {
  assert.ok(v, msg);
}
const V = "virtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\n";
const ld = (text: string, strict = false) => parseLdirectord(text, "t.cf", { strict });
const errs = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "error");
const warns = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "warning");
function one(text: string, strict = false): { vs: VirtualService; warnings: Diagnostic[] } {
  const r = ld(text, strict);
  assert.deepEqual(errs(r.diagnostics).map(formatDiagnostic), [], text);
  assert.equal(r.virtualServices.length, 1);
  return { vs: r.virtualServices[0], warnings: warns(r.diagnostics) };
}
const warned = (ws: Diagnostic[], key: string, re: RegExp) => ok(ws.some((w) => w.directive === key && re.test(w.message)), `${key}: ${ws.map(formatDiagnostic).join("\n")}`);

/** directive → [reference section, check]. */
const CASES: Record<string, [string, () => void]> = {
  autoreload: ["§1.4 global: autoreload yes|no, default no", () => {
    assert.equal(ld(`autoreload=yes\n${V}`).global.autoreload, true);
    assert.equal(ld(V).global.autoreload, false);
  }],
  callback: ["§1.4 global: callback, quotes required; lvsflow distributes config itself", () => {
    warned(one(`callback="/usr/local/bin/sync-config"\n${V}`).warnings, "callback", /distributes configuration/);
    assert.match(errs(ld(`callback=/x\n${V}`, true).diagnostics)[0].message, /double-quoted/);
  }],
  logfile: ["§1.4 global: logfile quoted path or facility", () => warned(one(`logfile="local0"\n${V}`).warnings, "logfile", /JSON/)],
  execute: ["§1.4 global: execute another instance", () => warned(one(`execute=other.cf\n${V}`).warnings, "execute", /every configuration file/)],
  supervised: ["§1.4 global: supervised yes|no (bare = yes, deprecated)", () => {
    warned(one(`supervised=yes\n${V}`).warnings, "supervised", /foreground/);
    warned(one(`supervised\n${V}`).warnings, "supervised", /deprecated/);
  }],
  fork: ["§1.4 global: fork; lvsflow checks every real independently anyway", () => {
    assert.equal(ld(`fork=yes\n${V}`).global.fork, true);
    warned(one(`fork=no\n${V}`).warnings, "fork", /never serially/);
  }],
  readdquiescent: ["§1.4 global: readdquiescent, default no (code)", () => warned(one(`readdquiescent=yes\n${V}`).warnings, "readdquiescent", /weight 0/)],
  maintenancedir: ["§1.4 global: maintenancedir marker files", () => warned(one(`maintenancedir=/etc/ha.d/maint\n${V}`).warnings, "maintenancedir", /lvsflow maintenance/)],
  emailalertfrom: ["§1.4 global: emailalertfrom", () => warned(one(`emailalertfrom=lb@example.org\n${V}`).warnings, "emailalertfrom", /events/)],
  checktimeout: ["§1.4 G/V: checktimeout, connect-type timeout chain (→5)", () => {
    assert.equal(one(`checktimeout=3\n${V}    checktype=connect\n`).vs.check.timeout, 3);
    assert.equal(one(`${V}    checktype=connect\n`).vs.check.timeout, 5);
  }],
  negotiatetimeout: ["§1.4 G/V: negotiatetimeout, negotiate-type chain (→30), falls back to checktimeout", () => {
    assert.equal(one(`negotiatetimeout=12\n${V}`).vs.check.timeout, 12);
    assert.equal(one(`checktimeout=4\n${V}`).vs.check.timeout, 4);
    assert.equal(one(`checktimeout=4\n${V}    negotiatetimeout=9\n`).vs.check.timeout, 9);
    assert.equal(one(V).vs.check.timeout, 30);
  }],
  checkinterval: ["§1.4 G/V: checkinterval default 10; per-virtual only with fork in ldirectord", () => {
    assert.equal(one(V).vs.check.interval, 10);
    warned(one(`${V}    checkinterval=2\n`).warnings, "checkinterval", /fork = yes/);
    assert.equal(one(`fork=yes\n${V}    checkinterval=2\n`).warnings.filter((w) => w.directive === "checkinterval").length, 0);
  }],
  failurecount: ["§1.4 G/V: failurecount default 1, no rise threshold", () => {
    const { vs } = one(`failurecount=3\n${V}`);
    assert.deepEqual([vs.check.failureCount, vs.check.riseCount], [3, 1]);
  }],
  quiescent: ["§1.4/§1.9.1 G/V: quiescent default no (code), yes keeps a failed real at weight 0", () => {
    assert.equal(one(V).vs.quiescent, false);
    assert.equal(one(`quiescent=yes\n${V}`).vs.quiescent, true);
    assert.equal(one(`quiescent=yes\n${V}    quiescent=no\n`).vs.quiescent, false);
  }],
  fallback: ["§1.3/§1.7 G/V: fallback ADDR[:PORT] [method], method gate, port the virtual's", () => {
    assert.deepEqual(one(`fallback=127.0.0.1\n${V}`).vs.fallback, { address: "127.0.0.1", port: 80, forwarding: "gate" });
    assert.deepEqual(one(`${V}    fallback=192.0.2.99:8080 masq\n`).vs.fallback, { address: "192.0.2.99", port: 8080, forwarding: "masq" });
    assert.deepEqual(one(`${V}    fallback=192.0.2.99:http ipip\n`).vs.fallback, { address: "192.0.2.99", port: 80, forwarding: "ipip" });
  }],
  fallback6: ["§1.3 G/V: fallback6 with brackets, for virtual6 blocks only", () => {
    const { vs } = one("fallback6=[2001:db8::99]\nvirtual6=[2001:db8::10]:443\n    real6=[2001:db8::21]:443 gate\n");
    assert.deepEqual(vs.fallback, { address: "2001:db8::99", port: 443, forwarding: "gate" });
    assert.match(errs(ld(`${V}    fallback6=[2001:db8::99]\n`).diagnostics)[0].message, /not allowed in a virtual block/);
  }],
  checkcount: ["§1.4 G/V: checkcount (deprecated): ICMP attempts of one ping check", () => {
    const { vs, warnings } = one(`checkcount=3\n${V}    checktype=ping\n`);
    assert.deepEqual([vs.check.type, vs.check.retry, vs.check.failureCount], ["ping", 2, 1]);
    warned(warnings, "checkcount", /deprecated/);
    warned(one(`checkcount=3\n${V}`).warnings, "checkcount", /only ping checks/);
  }],
  fallbackcommand: ["§1.4 G/V: fallbackcommand (lvsflow runs no shell)", () => warned(one(`${V}    fallbackcommand="/bin/sorry"\n`).warnings, "fallbackcommand", /no shell commands/)],
  emailalert: ["§1.4 G/V: emailalert", () => warned(one(`emailalert="ops@example.org"\n${V}`).warnings, "emailalert", /events/)],
  emailalertfreq: ["§1.4 G/V: emailalertfreq n ≥ 0", () => {
    warned(one(`${V}    emailalertfreq=0\n`).warnings, "emailalertfreq", /events/);
    assert.match(errs(ld(`${V}    emailalertfreq=often\n`).diagnostics)[0].message, /whole number/);
  }],
  emailalertstatus: ["§1.4 G/V: emailalertstatus", () => warned(one(`emailalertstatus=starting,running\n${V}`).warnings, "emailalertstatus", /events/)],
  smtp: ["§1.4 G/V: smtp relay", () => warned(one(`smtp=192.0.2.25\n${V}`).warnings, "smtp", /events/)],
  cleanstop: ["§1.4 G/V: cleanstop default yes; lvsflow never flushes on stop", () => warned(one(`cleanstop=no\n${V}`).warnings, "cleanstop", /does not flush/)],
  timeout: ["§1.2: timeout= is a hard error", () => assert.match(errs(ld(`timeout=3\n${V}`).diagnostics)[0].message, /deprecated/)],
  connecttimeout: ["§1.2: connecttimeout= is a hard error", () => assert.match(errs(ld(`connecttimeout=3\n${V}`).diagnostics)[0].message, /negotiatetimeout/)],
  real: ["§1.3 V: real= every form", () => {
    const { vs } = one('virtual=192.0.2.10:80\n    real=192.0.2.21->192.0.2.22:http masq 3 "/ok", "up" l:1 u:9\n    real=192.0.2.23 gate\n    real=192.0.2.24:8080 ipip 0\n');
    assert.deepEqual(vs.reals.map((r) => [r.address, r.port, r.forwarding, r.weight, r.request, r.receive, r.lowerThreshold, r.upperThreshold]), [
      ["192.0.2.21", 80, "masq", 3, "/ok", "up", 1, 9], ["192.0.2.22", 80, "masq", 3, "/ok", "up", 1, 9],
      ["192.0.2.23", 80, "gate", 1, null, null, null, null], ["192.0.2.24", 8080, "ipip", 0, null, null, null, null],
    ]);
    // A request that is a full URL is used as it is (§1.3).
    assert.equal(one('virtual=192.0.2.10:80\n    real=192.0.2.21 masq 1 "http://www.example.org/health" "ok"\n').vs.reals[0].request, "http://www.example.org/health");
  }],
  real6: ["§1.2/§1.3 V: real6 with brackets in virtual6 blocks; no ranges", () => {
    const { vs } = one("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21]:8080 masq 2\n");
    assert.deepEqual([vs.reals[0].address, vs.reals[0].port, vs.reals[0].weight], ["2001:db8::21", 8080, 2]);
  }],
  checktype: ["§1.5 V: connect, negotiate, ping, external, external-perl (refused), on, off, N", () => {
    for (const t of ["connect", "negotiate", "ping", "external", "on", "off"]) assert.equal(one(`${V}    checktype=${t}\n`).vs.check.type, t);
    assert.deepEqual([one(`${V}    checktype=4\n`).vs.check.type, one(`${V}    checktype=4\n`).vs.check.combinedConnects], ["combined", 4]);
    assert.match(errs(ld(`${V}    checktype=external-perl\n`).diagnostics)[0].message, /Perl/);
  }],
  service: ["§1.6 V: every service= value is recognised; default from the virtual port", () => {
    for (const svc of ["dns", "ftp", "http", "https", "http_proxy", "imap", "imaps", "ldap", "ldaps", "mysql", "nntp", "none", "oracle", "pgsql", "pop", "pops", "radius", "simpletcp", "sip", "smtp", "submission"]) {
      assert.equal(one(`${V}    service=${svc}\n`).vs.check.service, svc);
    }
    const ports: [number, string][] = [[21, "ftp"], [25, "smtp"], [53, "dns"], [110, "pop"], [119, "nntp"], [143, "imap"], [389, "ldap"], [443, "https"], [587, "submission"], [636, "ldaps"], [993, "imaps"], [995, "pops"], [1521, "oracle"], [1812, "radius"], [3128, "http_proxy"], [3306, "mysql"], [5060, "sip"], [5432, "pgsql"], [8080, "none"]];
    for (const [p, svc] of ports) assert.equal(one(`virtual=192.0.2.10:${p}\n    real=192.0.2.21 masq\n`).vs.check.service, svc, `port ${p}`);
    // ftp and sip fill in ldirectord's default login (§1.4 service).
    const ftp = one(`${V}    service=ftp\n`).vs.check;
    assert.equal(ftp.login, "anonymous");
    assert.match(ftp.passwd ?? "", /^ldirectord@/);
    assert.match(one(`${V}    service=sip\n`).vs.check.login ?? "", /^ldirectord@/);
  }],
  checkcommand: ["§1.4 V: checkcommand, quotes optional, default /bin/true", () => {
    assert.equal(one(`${V}    checktype=external\n`).vs.check.command, "/bin/true");
    assert.equal(one(`${V}    checktype=external\n    checkcommand=/usr/lib/check-web\n`).vs.check.command, "/usr/lib/check-web");
  }],
  checkport: ["§1.4 V: checkport 1-65535", () => {
    assert.equal(one(`${V}    checkport=8081\n`).vs.check.port, 8081);
    assert.match(errs(ld(`${V}    checkport=0\n`).diagnostics)[0].message, /≥ 1/);
  }],
  request: ["§1.4 V: request, quoted, leading '/' added, default '/'", () => {
    assert.equal(one(V).vs.check.request, "/");
    assert.equal(one(`${V}    request="index.html"\n`).vs.check.request, "/index.html");
    assert.equal(one(`${V}    service=http_proxy\n    request="http://www.example.org/"\n`).vs.check.request, "http://www.example.org/");
    // ldirectord's nntp check ignores request; lvsflow's selects it as a newsgroup: said aloud.
    warned(one(`${V}    service=nntp\n    request="comp.lang.perl"\n`).warnings, "request", /ignores request.*GROUP/);
    assert.deepEqual(one(`${V}    service=nntp\n`).warnings.filter((w) => w.directive === "request"), []);
  }],
  receive: ["§1.4 V: receive, a regex, default empty (any successful response)", () => {
    assert.equal(one(`${V}    receive="OK.*"\n`).vs.check.receive, "OK.*");
    assert.equal(one(V).vs.check.receive, "");
  }],
  httpmethod: ["§1.4 V: httpmethod GET|HEAD; HEAD with receive warns", () => {
    assert.equal(one(`${V}    httpmethod=HEAD\n`).vs.check.httpMethod, "HEAD");
    warned(one(`${V}    httpmethod=HEAD\n    receive="x"\n`).warnings, "receive", /HEAD/);
  }],
  virtualhost: ["§1.4 V: virtualhost, quotes optional", () => assert.equal(one(`${V}    virtualhost="www.example.org"\n`).vs.check.virtualhost, "www.example.org")],
  login: ["§1.4 V: login, quoted", () => assert.equal(one(`${V}    service=imap\n    login="probe"\n`).vs.check.login, "probe")],
  passwd: ["§1.4 V: passwd, quoted, never echoed", () => {
    const r = ld(`${V}    service=pop\n    login="probe"\n    passwd=hunter2\n`);
    assert.equal(r.virtualServices[0].check.passwd, "hunter2");
    for (const d of r.diagnostics) assert.doesNotMatch(formatDiagnostic(d), /hunter2/);
  }],
  database: ["§1.4 V: database for SQL checks; ldirectord sets no timeout (§1.9.10), lvsflow does", () => {
    const { vs, warnings } = one(`${V}    service=mysql\n    database="app"\n    request="SELECT 1"\n`);
    assert.deepEqual([vs.check.database, vs.check.timeout], ["app", 30]);
    warned(warnings, "service", /no timeout/);
  }],
  secret: ["§1.4 V: RADIUS secret", () => assert.equal(one(`${V}    service=radius\n    secret="s3"\n`).vs.check.secret, "s3")],
  scheduler: ["§1.4 V: scheduler any lowercase word, default wrr", () => {
    assert.equal(one(V).vs.scheduler, "wrr");
    assert.equal(one(`${V}    scheduler=sed\n`).vs.scheduler, "sed");
  }],
  schedflags: ["§1.4/§1.9.9 V: schedflags (undocumented) kept", () => assert.equal(one(`${V}    scheduler=sh\n    schedflags=sh-port\n`).vs.schedFlags, "sh-port")],
  persistent: ["§1.4 V: persistent n s", () => assert.deepEqual(one(`${V}    persistent=600\n`).vs.persistence, { timeout: 600, netmask: "255.255.255.255" })],
  netmask: ["§1.4 V: netmask dotted quad (v4) or 1-128 (v6), only with persistent", () => {
    assert.deepEqual(one(`${V}    persistent=60\n    netmask=255.255.0.0\n`).vs.persistence, { timeout: 60, netmask: "255.255.0.0" });
    assert.deepEqual(one("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21] gate\n    persistent=60\n    netmask=64\n").vs.persistence, { timeout: 60, netmask: "64" });
  }],
  protocol: ["§1.2/§1.4 V: protocol tcp|udp (fwm for marks); the wrong kind is an error", () => {
    assert.equal(one(`${V}    protocol=udp\n`).vs.id, "udp:192.0.2.10:80");
    assert.match(errs(ld(`${V}    protocol=fwm\n`).diagnostics)[0].message, /tcp or udp/);
  }],
  ops: ["§1.4 V: ops (one-packet scheduling), UDP only", () => {
    assert.equal(one("virtual=192.0.2.10:53\n    real=192.0.2.21 gate\n    ops=yes\n").vs.onePacket, true);
    warned(one(`${V}    ops=yes\n`).warnings, "ops", /only applies to UDP/);
  }],
  monitorfile: ["§1.4 V: monitorfile → the event history", () => warned(one(`${V}    monitorfile=/var/log/ld.mon\n`).warnings, "monitorfile", /recorded as an event/)],
  servicename: ["§1.4 V: servicename", () => warned(one(`${V}    servicename=web site\n`).warnings, "servicename", /e-mails/)],
  comment: ["§1.4 V: comment", () => warned(one(`${V}    comment=the web farm\n`).warnings, "comment", /e-mails/)],
  load: ["§1.4/§1.9.9 V: load is parsed but unused", () => warned(one(`${V}    load="x"\n`).warnings, "load", /never uses it/)],
};

test("every directive the parser knows has a case here, and every case a known directive", () => {
  assert.deepEqual(Object.keys(DIRECTIVES).sort(), Object.keys(CASES).sort());
});

for (const [directive, [section, check]] of Object.entries(CASES)) {
  test(`${section} [${directive}]`, check);
}

// ---------------------------------------------------------------------------------------------
// §1.2 virtual address forms and defaults

test("§1.2 virtual forms: A.B.C.D:port, service-name port, firewall mark, virtual6 [v6]:port", () => {
  assert.equal(one("virtual=192.0.2.10:smtp\n    real=192.0.2.21 gate\n").vs.id, "tcp:192.0.2.10:25");
  const fwm = one("virtual=42\n    real=192.0.2.21 gate\n").vs;
  assert.deepEqual([fwm.protocol, fwm.address, fwm.port, fwm.fwmark, fwm.check.service], ["fwm", null, 0, 42, "none"]);
  assert.equal(one("virtual6=[2001:db8::10]:https\n    real6=[2001:db8::21] gate\n").vs.id, "tcp:[2001:db8::10]:443");
  assert.match(errs(ld("virtual=www.example.org:80\n    real=192.0.2.21 gate\n").diagnostics)[0].message, /does not resolve host names/);
});

test("§1.2 defaults: udp for port 53 and 'domain', protocol fwm for marks, negotiate/wrr", () => {
  assert.equal(one("virtual=192.0.2.10:domain\n    real=192.0.2.21 gate\n").vs.protocol, "udp");
  assert.equal(one("virtual=7\n    real=192.0.2.21 gate\n").vs.protocol, "fwm");
  const vs = one(V).vs;
  assert.deepEqual([vs.check.type, vs.scheduler, vs.check.httpMethod, vs.onePacket], ["negotiate", "wrr", "GET", false]);
});

test("§1.2 IPv6: checks outside ldirectord's documented IPv6 set are warned about", () => {
  warned(one("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21] gate\n    checktype=ping\n").warnings, "checktype", /IPv6/);
  assert.equal(one("virtual6=[2001:db8::10]:80\n    real6=[2001:db8::21] gate\n").warnings.filter((w) => /IPv6/.test(w.message)).length, 0);
});

test("§1.3 a global fallback is per protocol: tcp and udp virtuals each get it with their own port; fwm none", () => {
  const r = ld("fallback=127.0.0.1 masq\nvirtual=192.0.2.10:80\n    real=192.0.2.21 masq\nvirtual=192.0.2.10:53\n    real=192.0.2.21 masq\nvirtual=9\n    real=192.0.2.21 masq\n");
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.virtualServices.map((v) => [v.protocol, v.fallback?.port ?? null]), [["tcp", 80], ["udp", 53], ["fwm", null]]);
});

// ---------------------------------------------------------------------------------------------
// §1.9 gotchas, one test each

test("§1.9.1 quiescent: the code's default (no) wins over the manual's (yes)", () => assert.equal(one(V).vs.quiescent, false));

test("§1.9.2 the fallback is never quiesced: it is in the model with its own method, not weight 0", () => {
  const vs = one(`quiescent=yes\n${V}    fallback=127.0.0.1:80\n`).vs;
  assert.deepEqual([vs.quiescent, vs.fallback], [true, { address: "127.0.0.1", port: 80, forwarding: "gate" }]);
});

test("§1.9.3 removing a virtual block is a model change a reload applies (the manual says it is not)", async () => {
  const { diffModels } = await import("../shared/config/diff.ts");
  const { Model } = await import("../shared/schemas/config.ts");
  const a = Model.parse({ virtualServices: ld(V + "virtual=192.0.2.10:443\n    real=192.0.2.21 masq\n").virtualServices });
  const b = Model.parse({ virtualServices: ld(V).virtualServices });
  assert.deepEqual(diffModels(a, b).virtualServices.removed, ["tcp:192.0.2.10:443"]);
});

test("§1.9.4 readdquiescent is accepted (lvsflow keeps quiesced reals at weight 0 either way)", () => {
  warned(one(`readdquiescent=no\n${V}`).warnings, "readdquiescent", /weight 0/);
});

test("§1.9.5 thresholds: unquoted l:N u:N; the quoted form of the manual is a strict error", () => {
  assert.equal(one('virtual=192.0.2.10:80\n    real=192.0.2.21 masq 1 l:2 u:8\n', true).vs.reals[0].upperThreshold, 8);
  assert.match(errs(ld('virtual=192.0.2.10:80\n    real=192.0.2.21 masq 1 "l:2" "u:8"\n', true).diagnostics)[0].message, /unquoted/);
});

test("§1.9.6 checktype is a number N, not 'checktimeoutN'", () => {
  assert.equal(one(`${V}    checktype=2\n`).vs.check.combinedConnects, 2);
  assert.match(errs(ld(`${V}    checktype=checktimeout2\n`).diagnostics)[0].message, /or a number/);
});

test("§1.9.7 emailalertfrom, readdquiescent, maintenancedir and fork inside a virtual: strict errors", () => {
  for (const k of ["emailalertfrom=a@b", "readdquiescent=yes", "maintenancedir=/m", "fork=yes"]) {
    const e = errs(ld(`${V}    ${k}\n`, true).diagnostics);
    assert.equal(e.length, 1, k);
    assert.match(e[0].message, /global directive inside a virtual block/);
  }
});

test("§1.9.8 '#' truncates a virtual line; a blank line ends a block; trailing comment and CRLF break globals (strict)", () => {
  assert.match(errs(ld(`${V}    receive="a#b"\n`, true).diagnostics)[0].message, /unbalanced|double-quoted/);
  assert.match(errs(ld(`virtual=192.0.2.10:80\n\n    real=192.0.2.21 masq\n`, true).diagnostics)[0].message, /blank line/);
  assert.match(errs(ld(`autoreload=yes # x\n${V}`, true).diagnostics)[0].message, /trailing comment/);
  assert.match(errs(ld(`autoreload=yes\r\n${V}`, true).diagnostics)[0].message, /CRLF/);
});

test("§1.9.9 load and schedflags (undocumented) are accepted", () => {
  const { vs, warnings } = one(`${V}    load="x"\n    schedflags=mh-fallback\n`);
  assert.equal(vs.schedFlags, "mh-fallback");
  warned(warnings, "load", /never uses it/);
});

test("§1.9.10 SQL checks get a timeout in lvsflow", () => {
  assert.equal(one(`negotiatetimeout=7\n${V}    service=pgsql\n`).vs.check.timeout, 7);
});

// ---------------------------------------------------------------------------------------------
// Load-time capability: what the probers cannot run is an error, never a silent "up"

test("a check the probers cannot run is an error at its checktype/service line when the loader asks", () => {
  const supports = (vs: VirtualService) => (vs.check.service === "oracle" ? "oracle checks are not supported" : null);
  const r = parseLdirectord(`${V}    checktype=negotiate\n    service=oracle\n`, "t.cf", { supports });
  const e = errs(r.diagnostics);
  assert.equal(e.length, 1);
  assert.equal(formatDiagnostic(e[0]), "t.cf:3:15: error: checktype: tcp:192.0.2.10:80: oracle checks are not supported");
  // With the prober's own answer: the seed's connect check is runnable.
  assert.equal(errs(parseLdirectord(`${V}    checktype=connect\n`, "t.cf", { supports: unsupportedReason }).diagnostics).length, 0);
});

test("CLI: config check refuses a check the probers cannot run, naming file:line:col (oracle, §1.6)", async () => {
  const { configCommand } = await import("../services/cli/config.ts");
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "ld-"));
  try {
    const f = join(dir, "ldirectord.cf");
    writeFileSync(f, `${V}    service=oracle\n`);
    const o = { out: "", err: "" };
    const code = await configCommand(["check", f, "--json"], { out: (s) => void (o.out += s), err: (s) => void (o.err += s) });
    assert.equal(code, 1);
    assert.equal(o.out, "");
    assert.match(o.err, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3:13: error: service: tcp:192\\.0\\.2\\.10:80: oracle checks need`, "m"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
