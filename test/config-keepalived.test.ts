// keepalived.conf import: every LVS option of anchors.md §2.2 the issue names, the VRRP part that
// maps to floating groups and the node, what has no equivalent reported line by line, the block
// grammar, loading and conversion, and a bounded fuzz. Pure: repo files only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseKeepalived } from "../shared/config/keepalived.ts";
import { configToYaml, detectFormat, loadConfigSources } from "../shared/config/load.ts";
import { ConfigError, formatDiagnostic, type Diagnostic } from "../shared/config/diagnostics.ts";
import { configCommand } from "../services/cli/config.ts";
import type { Model, VirtualService } from "../shared/schemas/config.ts";

function ok(v: unknown, msg = "expected a truthy value"): asserts v {
  assert.ok(v, msg);
}
const FIXTURE_PATH = fileURLToPath(new URL("fixtures/keepalived/lb1-keepalived.conf", import.meta.url));
const FIXTURE = readFileSync(FIXTURE_PATH, "utf8");
const ka = (text: string, strict = false) => parseKeepalived(text, "k.conf", { strict });
const errs = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "error");
const warns = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "warning");
function vss(text: string): VirtualService[] {
  const r = ka(text);
  assert.deepEqual(errs(r.diagnostics).map(formatDiagnostic), [], text);
  return r.virtualServices;
}
const one = (text: string) => { const v = vss(text); assert.equal(v.length, 1); return v[0]!; };
const theError = (text: string) => { const e = errs(ka(text).diagnostics); assert.equal(e.length, 1, e.map(formatDiagnostic).join("\n")); return e[0]!; };
const VS = (body: string, head = "192.0.2.10 80") => `virtual_server ${head} {\n${body}\n}\n`;
const RS = (body = "TCP_CHECK {\n}", head = "192.0.2.21 80") => `    real_server ${head} {\n${body}\n    }`;

// ---------------------------------------------------------------------------------------------
// The fixture: the seed's cluster as keepalived would run it on lb1

test("keepalived fixture: virtual services, checks, the floating group and the node", () => {
  const r = parseKeepalived(FIXTURE, "lb1.conf");
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.virtualServices.map((v) => v.id), ["tcp:198.51.100.50:443", "tcp:198.51.100.50:80"]);
  const [https, http] = r.virtualServices as [VirtualService, VirtualService];
  assert.deepEqual([https.scheduler, https.persistence, https.quiescent, https.fallback], ["wlc", { timeout: 120, netmask: "255.255.255.0" }, false, { address: "127.0.0.1", port: 443, forwarding: "masq" }]);
  assert.deepEqual([https.check.type, https.check.interval, https.check.timeout, https.check.retry, https.check.delayBeforeRetry, https.check.failureCount], ["connect", 5, 5, 1, 1, 1]);
  assert.deepEqual([http.check.type, http.check.service, http.check.request, http.check.statusCodes, http.check.timeout, http.check.retry, http.check.delayBeforeRetry], ["negotiate", "http", "/aaaa.html", ["200"], 3, 2, 1]);
  assert.deepEqual(http.reals.map((x) => [x.address, x.port, x.forwarding, x.weight]), [["203.0.113.11", 80, "masq", 1], ["203.0.113.12", 80, "masq", 1]]);
  assert.deepEqual(r.groups.map((g) => [g.name, g.preempt, g.addresses]), [["vg_web", true, [
    { address: "198.51.100.50", prefix: 24, interface: "front" }, { address: "203.0.113.1", prefix: 24, interface: "back" },
  ]]]);
  assert.deepEqual(r.nodes, [{ name: "lb1", priority: 150, interfaces: { front: "front", back: "back" } }]);
});

test("keepalived fixture: everything without an equivalent is reported on its own line", () => {
  const w = warns(parseKeepalived(FIXTURE, "lb1.conf").diagnostics);
  assert.deepEqual(w.map((d) => [d.line, d.directive]), [
    [3, "notification_email"], [6, "notification_email_from"], [7, "smtp_server"], [16, "notify_master"],
    [20, "state"], [22, "virtual_router_id"], [24, "advert_int"], [25, "authentication"],
    [35, "state"], [37, "virtual_router_id"], [39, "advert_int"],
  ]);
  assert.equal(formatDiagnostic(w[3]!), "lb1.conf:16: warning: notify_master: no lvsflow equivalent, ignored: lvsflow publishes every ownership change as an event (audited in Redis); act on those events");
  // The VRRP password is never repeated in a message.
  for (const d of w) assert.doesNotMatch(formatDiagnostic(d), /s3cret/);
});

// ---------------------------------------------------------------------------------------------
// virtual_server (anchors §2.2)

test("§2.2 virtual_server defaults: wlc (warned), NAT, TCP, delay_loop 60, connect_timeout 5, retry 1", () => {
  const r = ka(VS(RS()));
  const vs = r.virtualServices[0]!;
  assert.deepEqual([vs.scheduler, vs.protocol, vs.reals[0]!.forwarding, vs.check.interval, vs.check.timeout, vs.check.retry, vs.check.delayBeforeRetry, vs.quiescent, vs.persistence],
    ["wlc", "tcp", "masq", 60, 5, 1, 1, false, null]);
  ok(warns(r.diagnostics).some((d) => d.directive === "lvs_sched" && /wlc/.test(d.message)));
});

test("§2.2 lvs_sched / lb_algo, scheduler flags and ops", () => {
  assert.equal(one(VS(`    lvs_sched rr\n${RS()}`)).scheduler, "rr");
  assert.equal(one(VS(`    lb_algo sh\n    sh-port\n    sh-fallback\n${RS()}`)).schedFlags, "sh-port,sh-fallback");
  assert.equal(one(VS(`    lvs_sched mh\n    mh-port\n${RS()}`)).schedFlags, "mh-port");
  assert.equal(one(VS(`    lvs_sched wrr\n    protocol UDP\n    ops\n${RS()}`, "192.0.2.10 53")).onePacket, true);
  assert.match(theError(VS(`    lvs_sched WLC\n${RS()}`)).message, /lowercase/);
});

test("§2.2 lvs_method / lb_kind NAT|DR|TUN, per real override, sorry server method", () => {
  const vs = one(VS(`    lvs_method DR\n    sorry_server 192.0.2.99 80\n${RS()}\n${RS("        lvs_method TUN\n        TCP_CHECK {\n        }", "192.0.2.22 80")}`));
  assert.deepEqual(vs.reals.map((r) => r.forwarding), ["gate", "ipip"]);
  assert.equal(vs.fallback!.forwarding, "gate");
  assert.equal(one(VS(`    lb_kind NAT\n    sorry_server 192.0.2.99 80\n    sorry_server_lvs_method DR\n${RS()}`)).fallback!.forwarding, "gate");
  assert.match(theError(VS(`    lvs_method BRIDGE\n${RS()}`)).message, /NAT, DR or TUN/);
  ok(warns(ka(VS(`    lvs_method TUN type gue port 6080\n${RS()}`)).diagnostics).some((d) => /tunnel type/.test(d.message)));
});

test("§2.2 persistence_timeout (360 without a value) and persistence_granularity", () => {
  assert.deepEqual(one(VS(`    persistence_timeout 50\n${RS()}`)).persistence, { timeout: 50, netmask: "255.255.255.255" });
  assert.deepEqual(one(VS(`    persistence_timeout\n${RS()}`)).persistence, { timeout: 360, netmask: "255.255.255.255" });
  assert.deepEqual(one(VS(`    persistence_granularity 255.255.255.0\n${RS()}`)).persistence, { timeout: 360, netmask: "255.255.255.0" });
  assert.deepEqual(one(VS(`    persistence_timeout 60\n    persistence_granularity 64\n${RS("TCP_CHECK {\n}", "2001:db8::21 80")}`, "2001:db8::10 80")).persistence, { timeout: 60, netmask: "64" });
  assert.match(theError(VS(`    persistence_granularity 24\n${RS()}`)).message, /IPv4 netmask/);
});

test("§2.2 protocol TCP|UDP; SCTP is refused; a fwmark service ignores protocol", () => {
  assert.equal(one(VS(`    protocol UDP\n${RS()}`)).id, "udp:192.0.2.10:80");
  assert.match(theError(VS(`    protocol SCTP\n${RS()}`)).message, /SCTP/);
  const r = ka(VS(`    protocol TCP\n${RS("TCP_CHECK {\n  connect_port 80\n}", "192.0.2.21")}`, "fwmark 7"));
  assert.deepEqual(r.virtualServices.map((v) => [v.id, v.protocol, v.address, v.port, v.reals[0]!.port, v.check.port]), [["fwm:7", "fwm", null, 0, 0, 80]]);
  ok(warns(r.diagnostics).some((d) => d.directive === "protocol" && /every protocol/.test(d.message)));
});

test("§2.2 virtual_server group: one virtual service per member (addresses, ranges, fwmarks)", () => {
  const r = ka(`virtual_server_group WEB {\n  192.0.2.10 80\n  192.0.2.20-22 80\n  fwmark 9\n}\n${VS(`    lvs_sched rr\n${RS("TCP_CHECK {\n}", "192.0.2.31")}`, "group WEB")}`);
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.virtualServices.map((v) => v.id), ["tcp:192.0.2.10:80", "tcp:192.0.2.20:80", "tcp:192.0.2.21:80", "tcp:192.0.2.22:80", "fwm:9"]);
  ok(r.virtualServices.every((v) => v.scheduler === "rr" && v.reals.length === 1));
  assert.deepEqual(r.virtualServices.map((v) => v.reals[0]!.port), [80, 80, 80, 80, 0]);
  assert.match(theError(VS(RS(), "group NOPE")).message, /no virtual_server_group named NOPE/);
  assert.match(theError("virtual_server_group G {\n  192.0.2.20-10 80\n}\n").message, /range end/);
});

test("§2.2 sorry_server becomes the fallback (port defaults to the virtual's); quorum/hysteresis carried over (1/0 is ldirectord's rule)", () => {
  assert.deepEqual(one(VS(`    sorry_server 127.0.0.1 8080\n${RS()}`)).fallback, { address: "127.0.0.1", port: 8080, forwarding: "masq" });
  assert.deepEqual(one(VS(`    sorry_server 127.0.0.1\n${RS()}`)).fallback, { address: "127.0.0.1", port: 80, forwarding: "masq" });
  const plain = ka(VS(`    quorum 1\n    hysteresis 0\n${RS()}`));
  assert.equal(warns(plain.diagnostics).filter((d) => /quorum|hysteresis/.test(d.directive ?? "")).length, 0);
  assert.equal(plain.virtualServices[0]!.quorum, undefined, "the default is left out");
  const q = ka(VS(`    quorum 3\n    hysteresis 1\n    sorry_server 127.0.0.1 8080\n${RS()}`));
  assert.deepEqual(warns(q.diagnostics).filter((d) => /quorum|hysteresis/.test(d.directive ?? "")), []);
  assert.deepEqual([q.virtualServices[0]!.quorum, q.virtualServices[0]!.hysteresis], [3, 1]);
  const w = warns(ka(VS(`    quorum 3\n${RS()}`)).diagnostics);
  ok(w.some((d) => d.line === 2 && d.directive === "quorum" && /without a sorry_server/.test(d.message)));
});

test("§2.2 real_server: weight, thresholds, inhibit_on_failure (quiescent), port defaulting", () => {
  const vs = one(VS(`${RS("        weight 5\n        uthreshold 100\n        lthreshold 10\n        inhibit_on_failure\n        TCP_CHECK {\n        }")}\n${RS("        weight 0\n        inhibit_on_failure\n        TCP_CHECK {\n        }", "192.0.2.22")}`));
  assert.deepEqual(vs.reals.map((r) => [r.address, r.port, r.weight, r.lowerThreshold, r.upperThreshold]), [["192.0.2.21", 80, 5, 10, 100], ["192.0.2.22", 80, 0, null, null]]);
  assert.equal(vs.quiescent, true);
  assert.equal(one(VS(`    inhibit_on_failure\n${RS()}`)).quiescent, true);
  const mixed = ka(VS(`${RS("        inhibit_on_failure\n        TCP_CHECK {\n        }")}\n${RS("TCP_CHECK {\n}", "192.0.2.22")}`));
  ok(warns(mixed.diagnostics).some((d) => d.directive === "inhibit_on_failure" && /per virtual service/.test(d.message)));
  assert.match(theError(VS(RS("weight 70000\nTCP_CHECK {\n}"))).message, /weight must be/);
});

// ---------------------------------------------------------------------------------------------
// Checkers

test("TCP_CHECK: connect, connect_port, connect_timeout, retry, delay_before_retry, delay_loop", () => {
  const c = one(VS(`    delay_loop 10\n${RS("TCP_CHECK {\n  connect_port 8080\n  connect_timeout 2\n  retry 3\n  delay_before_retry 0.5\n  delay_loop 4\n}")}`)).check;
  assert.deepEqual([c.type, c.port, c.timeout, c.connectTimeout, c.retry, c.delayBeforeRetry, c.interval, c.failureCount], ["connect", 8080, 2, 2, 3, 0.5, 4, 1]);
  // Timing cascades virtual_server → real_server → checker.
  const d = one(VS(`    delay_loop 10\n    connect_timeout 7\n    retry 2\n${RS("    delay_before_retry 4\n    TCP_CHECK {\n    }")}`)).check;
  assert.deepEqual([d.interval, d.timeout, d.retry, d.delayBeforeRetry], [10, 7, 2, 4]);
  assert.equal(one(VS(RS("TCP_CHECK {\n  nb_get_retry 4\n}"))).check.retry, 4);
  ok(warns(ka(VS(RS("TCP_CHECK {\n  retry 20\n}"))).diagnostics).some((d) => /maximum of 10/.test(d.message)));
});

test("HTTP_GET / SSL_GET: url path and status_code, regex, virtualhost; defaults retry 1 and 3 s apart", () => {
  const c = one(VS(`    virtualhost www.example.org\n${RS("HTTP_GET {\n  url {\n    path health\n    status_code 200-299 301\n    regex \"^OK\"\n  }\n}")}`)).check;
  assert.deepEqual([c.type, c.service, c.request, c.statusCodes, c.receive, c.virtualhost, c.retry, c.delayBeforeRetry], ["negotiate", "http", "/health", ["200-299", "301"], "^OK", "www.example.org", 1, 3]);
  const s = one(VS(RS("SSL_GET {\n  url { path / virtualhost api.example.org }\n  sni_name ignored.example.org\n}"), "192.0.2.10 443")).check;
  assert.deepEqual([s.service, s.request, s.virtualhost, s.statusCodes], ["https", "/", "api.example.org", null]);
  assert.match(theError(VS(RS("HTTP_GET {\n  connect_timeout 3\n}"))).message, /needs a url/);
  assert.match(theError(VS(RS("HTTP_GET {\n  url { status_code 200 }\n}"))).message, /url needs a path/);
  assert.match(theError(VS(RS("HTTP_GET {\n  url { path / status_code 2xx }\n}"))).message, /status code or range/);
  const w = warns(ka(VS(RS("HTTP_GET {\n  url {\n    path /\n    digest 9b3a0c85a887a256d6939da88aabd8cd\n  }\n  url {\n    path /other\n  }\n}"))).diagnostics);
  ok(w.some((d) => d.directive === "digest" && /MD5 digest is not compared/.test(d.message)));
  ok(w.some((d) => d.directive === "url" && /one URL per real server/.test(d.message)));
});

test("MISC_CHECK: external check with misc_path and misc_timeout, retry 0 by default; misc_dynamic reported", () => {
  const r = ka(VS(RS('MISC_CHECK {\n  misc_path "/usr/local/bin/check-web 192.0.2.21"\n  misc_timeout 4\n  misc_dynamic\n}')));
  const c = r.virtualServices[0]!.check;
  assert.deepEqual([c.type, c.command, c.timeout, c.retry], ["external", "/usr/local/bin/check-web 192.0.2.21", 4, 0]);
  ok(warns(r.diagnostics).some((d) => d.directive === "misc_dynamic"));
  assert.match(theError(VS(RS("MISC_CHECK {\n}"))).message, /misc_path/);
});

test("other checkers: SMTP_CHECK, DNS_CHECK, PING_CHECK map to lvsflow checks; UDP/BFD/FILE_CHECK are refused", () => {
  assert.deepEqual([one(VS(RS("SMTP_CHECK {\n}"), "192.0.2.10 25")).check.service, one(VS(RS("PING_CHECK {\n}"))).check.type], ["smtp", "ping"]);
  const dns = one(VS(RS("DNS_CHECK {\n  name www.example.org\n}"), "192.0.2.10 53")).check;
  assert.deepEqual([dns.service, dns.request, dns.retry], ["dns", "www.example.org", 3]);
  for (const k of ["UDP_CHECK", "BFD_CHECK", "FILE_CHECK"]) assert.match(theError(VS(RS(`${k} {\n}`))).message, /no lvsflow equivalent/);
});

test("one check per virtual service: reals without checkers, differing checks, a second checker — reported", () => {
  // Only the URL path differs: kept per real (request/receive override).
  const vs = one(VS(`${RS("HTTP_GET {\n  url { path /a regex A }\n}")}\n${RS("HTTP_GET {\n  url { path /b regex B }\n}", "192.0.2.22 80")}`));
  assert.deepEqual(vs.reals.map((r) => [r.request, r.receive]), [[null, null], ["/b", "B"]]);
  const r = ka(VS(`${RS("TCP_CHECK {\n}\nHTTP_GET {\n  url { path / }\n}")}\n${RS("HTTP_GET {\n  url { path / }\n}", "192.0.2.22 80")}\n${RS("weight 1", "192.0.2.23 80")}`));
  const w = warns(r.diagnostics);
  ok(w.some((d) => d.directive === "HTTP_GET" && d.line === 5 && /one check per real server/.test(d.message)), w.map(formatDiagnostic).join("\n"));
  ok(w.some((d) => d.directive === "HTTP_GET" && /one check per virtual service/.test(d.message)));
  ok(w.some((d) => d.directive === "real_server" && /no checker/.test(d.message)));
  // No checker anywhere: keepalived keeps every real up; lvsflow's check "on" does the same.
  assert.equal(one(VS(RS("weight 2"))).check.type, "on");
});

test("a check the probers cannot run is an error at its checker's line", () => {
  const r = parseKeepalived(VS(RS("DNS_CHECK {\n}"), "192.0.2.10 53"), "k.conf", { supports: (vs) => (vs.check.service === "dns" ? "dns checks not supported" : null) });
  assert.equal(formatDiagnostic(errs(r.diagnostics)[0]!), "k.conf:3:1: error: DNS_CHECK: tcp:192.0.2.10:53: dns checks not supported");
});

// ---------------------------------------------------------------------------------------------
// VRRP → floating groups and the node

const VI = (name: string, body: string) => `vrrp_instance ${name} {\n${body}\n}\n`;

test("vrrp_instance: virtual_ipaddress (prefix /32 by default, dev overrides interface), priority, nopreempt, preempt_delay", () => {
  const r = ka(`global_defs {\n  router_id LB_2\n}\n${VI("VI_1", "  interface eth0\n  priority 90\n  nopreempt\n  preempt_delay 5\n  virtual_ipaddress {\n    192.0.2.50\n    192.0.2.51/24 dev eth1 label eth1:0\n    2001:db8::50\n  }\n  virtual_ipaddress_excluded {\n    198.51.100.7/24\n  }")}`);
  assert.deepEqual(errs(r.diagnostics), []);
  assert.deepEqual(r.groups.map((g) => [g.name, g.preempt, g.preemptDelayMs, g.addresses]), [["vi_1", false, 5000, [
    { address: "192.0.2.50", prefix: 32, interface: "eth0" }, { address: "192.0.2.51", prefix: 24, interface: "eth1" },
    { address: "2001:db8::50", prefix: 128, interface: "eth0" }, { address: "198.51.100.7", prefix: 24, interface: "eth0" },
  ]]]);
  assert.deepEqual(r.nodes, [{ name: "lb_2", priority: 90, interfaces: { eth0: "eth0", eth1: "eth1" } }]);
  ok(warns(r.diagnostics).some((d) => d.line === 11 && /label eth1:0/.test(d.message)));
});

test("vrrp_sync_group: its instances' addresses move as one group; errors for unknown or doubled members", () => {
  const r = ka(`vrrp_sync_group G1 {\n  group {\n    VI_A VI_B\n  }\n}\n${VI("VI_A", "  interface front\n  priority 150\n  virtual_ipaddress {\n    198.51.100.50/24\n  }")}${VI("VI_B", "  interface back\n  priority 100\n  virtual_ipaddress {\n    203.0.113.1/24\n  }")}${VI("VI_C", "  interface front\n  virtual_ipaddress {\n    198.51.100.60/24\n  }")}`);
  assert.deepEqual(r.groups.map((g) => [g.name, g.addresses.map((a) => a.address)]), [["g1", ["198.51.100.50", "203.0.113.1"]], ["vi_c", ["198.51.100.60"]]]);
  // One priority per node: the highest, the others reported.
  assert.equal(r.nodes[0]!.priority, 150);
  ok(warns(r.diagnostics).some((d) => d.directive === "priority" && /one priority per node/.test(d.message)));
  ok(warns(r.diagnostics).some((d) => /named "keepalived"/.test(d.message)));
  assert.match(theError(`vrrp_sync_group G {\n  group {\n    NOPE\n  }\n}\n`).message, /no vrrp_instance named NOPE/);
  assert.match(theError(VI("VI_1", "  virtual_ipaddress {\n    192.0.2.50\n  }")).message, /no interface for 192\.0\.2\.50/);
});

// ---------------------------------------------------------------------------------------------
// Grammar and the rest

test("grammar: comments (# and !), quotes, '{' on the next line, one-line blocks; braces checked with line:col", () => {
  const vs = one("! comment\nvirtual_server 192.0.2.10 80 # trailing\n{\n  real_server 192.0.2.21 80 { TCP_CHECK { connect_timeout 2 } }\n}\n");
  assert.equal(vs.check.timeout, 2);
  assert.equal(formatDiagnostic(theError(VS(RS()) + "}\n")), "k.conf:7:1: error: '}' without a matching '{' (fix: remove it)");
  assert.equal(formatDiagnostic(theError("virtual_server 192.0.2.10 80 {\n  lvs_sched rr\n")), "k.conf:1:1: error: virtual_server: block is never closed: '}' missing (fix: add the closing '}')");
  assert.match(theError(VS(RS('MISC_CHECK {\n  misc_path "/bin/x\n}'))).message, /unterminated double quote/);
});

test("unknown keywords: a warning (an error with --strict); include and $VAR substitution are refused", () => {
  const r = ka(VS(`    lvs_shed rr\n${RS()}`));
  ok(warns(r.diagnostics).some((d) => d.line === 2 && d.directive === "lvs_shed" && /unknown keyword in virtual_server/.test(d.message)));
  assert.equal(errs(ka(VS(`    lvs_shed rr\n${RS()}`), true).diagnostics)[0]!.directive, "lvs_shed");
  assert.match(theError("include /etc/keepalived/conf.d/*.conf\n").message, /include is not supported/);
  assert.match(theError("$VIP=192.0.2.10\n").message, /substitution/);
  assert.match(theError(VS(RS(), "192.0.2.10")).message, /without a port/);
  assert.match(theError(VS(RS(), "www.example.org 80")).message, /does not resolve host names/);
});

test("loading: format by name or content; a YAML that declares nodes wins over keepalived's; YAML include of keepalived.conf", () => {
  assert.equal(detectFormat("/etc/keepalived/keepalived.conf", ""), "keepalived");
  assert.equal(detectFormat("lb.conf", FIXTURE), "keepalived");
  assert.equal(detectFormat("ldirectord.conf", "virtual=192.0.2.10:80\n"), "ldirectord");
  const files: Record<string, string> = {
    "/c/lvsflow.yaml": "site: lab\nnodes:\n  - { name: lb1, priority: 150 }\n  - { name: lb2, priority: 100 }\ninclude: keepalived.conf\n",
    "/c/keepalived.conf": FIXTURE,
  };
  const readFile = (p: string) => { if (!(p in files)) throw Object.assign(new Error("nope"), { code: "ENOENT" }); return files[p]!; };
  const r = loadConfigSources([{ path: "/c/lvsflow.yaml", text: files["/c/lvsflow.yaml"]! }], { readFile });
  assert.deepEqual(r.model.nodes.map((n) => [n.name, n.priority]), [["lb1", 150], ["lb2", 100]]);
  assert.deepEqual(r.model.groups.map((g) => g.name), ["vg_web"]);
  assert.equal(r.model.virtualServices.length, 2);
  // keepalived alone: its node is the model's.
  const alone = loadConfigSources([{ path: "/c/keepalived.conf", text: FIXTURE }]);
  assert.deepEqual(alone.model.nodes.map((n) => n.name), ["lb1"]);
  ok(!alone.warnings.some((w) => /no floating group/.test(w.message)), "the VIP floats with vg_web");
  // Two nodes' files side by side would define the same virtual services twice: an error, not a merge.
  assert.throws(() => loadConfigSources([{ path: "a.conf", text: FIXTURE }, { path: "b.conf", text: FIXTURE }]), ConfigError);
});

test("round trip: keepalived.conf → native YAML → the same model", () => {
  const a = loadConfigSources([{ path: "lb1.conf", text: FIXTURE }]).model;
  const b = loadConfigSources([{ path: "lb1.yaml", text: configToYaml(a) }]).model;
  const strip = (m: Model) => ({ ...m, virtualServices: m.virtualServices.map((v) => ({ ...v, source: null })) });
  assert.deepEqual(strip(b), strip(a));
});

test("CLI: config check --format keepalived --json prints the public contract; --strict turns unknown keywords into exit 1", async () => {
  const cap = () => { const o = { out: "", err: "" }; return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s) } }; };
  const c = cap();
  assert.equal(await configCommand(["check", FIXTURE_PATH, "--format", "keepalived", "--json"], c.io), 0, c.o.err);
  const m = JSON.parse(c.o.out) as Model;
  const v = m.virtualServices[1]!;
  for (const k of ["protocol", "address", "port", "fwmark", "family", "scheduler", "persistence", "quiescent", "check", "fallback", "reals"]) ok(k in v, k);
  for (const k of ["type", "service", "request", "receive", "port", "interval", "timeout", "failureCount"]) ok(k in v.check, k);
  assert.match(c.o.err.split("\n")[0]!, /lb1-keepalived\.conf:3: warning: notification_email: /);
  const s = cap();
  const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "ka-"));
  try {
    writeFileSync(join(dir, "k.conf"), VS(`    lvs_shed rr\n${RS()}`));
    assert.equal(await configCommand(["check", join(dir, "k.conf"), "--format", "keepalived", "--strict"], s.io), 1);
    assert.match(s.o.err, /k\.conf:2:5: error: lvs_shed: unknown keyword in virtual_server/);
    const y = cap();
    assert.equal(await configCommand(["convert", FIXTURE_PATH, "--to", "yaml"], y.io), 0);
    writeFileSync(join(dir, "out.yaml"), y.o.out);
    const again = cap();
    assert.equal(await configCommand(["check", join(dir, "out.yaml"), "--json"], again.io), 0, again.o.err);
    const m2 = JSON.parse(again.o.out) as Model;
    assert.deepEqual(m2.virtualServices.map((x) => ({ ...x, source: null })), m.virtualServices.map((x) => ({ ...x, source: null })));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fuzz: 1500 seeded mutations of the fixture never throw anything but ConfigError; every diagnostic has a line", () => {
  let state = 0x6b43a9b5;
  const rnd = (n: number) => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n; };
  const alphabet = ' \t#!{}"\n0123456789abcxyz._-/:\u00e9\u0000';
  const base = FIXTURE.split("\n");
  for (let i = 0; i < 1500; i++) {
    const lines = [...base];
    for (let m = 1 + rnd(4); m > 0; m--) {
      const k = rnd(lines.length);
      switch (rnd(5)) {
        case 0: lines.splice(k, 1); break;
        case 1: lines.splice(k, 0, lines[rnd(lines.length)]!); break;
        case 2: { const l = lines[k] ?? ""; const p = rnd(l.length + 1); lines[k] = l.slice(0, p) + alphabet[rnd(alphabet.length)]!.repeat(1 + rnd(3)) + l.slice(p); break; }
        case 3: { const j = rnd(lines.length); [lines[k], lines[j]] = [lines[j]!, lines[k]!]; break; }
        default: { const l = lines[k] ?? ""; const p = rnd(l.length + 1); lines[k] = l.slice(0, p) + l.slice(p + 1 + rnd(4)); }
      }
    }
    const text = lines.join("\n");
    let ds: Diagnostic[];
    try {
      ds = loadConfigSources([{ path: "fuzz.conf", text }], { format: "keepalived", strict: rnd(4) === 0 }).warnings;
    } catch (e) {
      if (!(e instanceof ConfigError)) assert.fail(`mutation ${i} threw ${(e as Error).stack}\n--- input ---\n${text}`);
      ds = e.diagnostics;
    }
    const n = text.split("\n").length;
    for (const d of ds) ok(Number.isInteger(d.line) && d.line >= 1 && d.line <= n && d.col >= 1, `mutation ${i}: ${formatDiagnostic(d)}`);
  }
});
