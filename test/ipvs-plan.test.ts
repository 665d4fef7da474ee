// Pure tests of the IPVS driver: model → ipvsadm argv, ipvsadm output parsers, plan ordering,
// validation, version refusal, sync daemon and sysctl planning. No kernel, no processes.
// Kernel-format fixtures below were printed by the real ipvsadm 1.31 on Debian's 6.1 kernel
// (infra/ipvs-vm); test/kernel-ipvs.test.ts checks the same on the real kernel.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../shared/config/load.ts";
import { IpvsSettings, realId, type Model, type VirtualService } from "../shared/schemas/config.ts";
import type { PoolSpec } from "../shared/schemas/events.ts";
import { desiredPool } from "../services/controller/pool-logic.ts";
import { addDest, addService, editDest, renderRestore, renderSave } from "../services/executor/ipvs/argv.ts";
import { desiredTable, fallbackKeys, IpvsSpecError, normalizeNetmask } from "../services/executor/ipvs/desired.ts";
import { mergeThresholds, parseSave, parseThresholds } from "../services/executor/ipvs/parse.ts";
import { planIpvs, type IpvsPlan } from "../services/executor/ipvs/plan.ts";
import { checkVersions, missingFeatures } from "../services/executor/ipvs/version.ts";
import { parseDaemons, planStopAll, planSync } from "../services/executor/ipvs/sync.ts";
import { drainCaveats, drainingKeys } from "../services/executor/ipvs/drain.ts";
import { connectionCounts } from "../services/executor/ipvs/connections.ts";
import { changedSettings, ipvsOptions } from "../services/executor/ipvs/options.ts";
import { applyOverrides, type OperatorOverride } from "../services/commands/overrides.ts";
import { SYSCTL_DEFAULTS, sysctlTargets } from "../services/executor/ipvs/sysctl.ts";
import type { IpvsTable } from "../services/executor/ipvs/table.ts";

const SEED = fileURLToPath(new URL("../infra/lab/seed-ldirectord.cf", import.meta.url));
const seed = loadConfig([SEED]).model;

/** The controller's own desired pool, with the given reals up (the rest down). */
function pool(vs: VirtualService, up: string[], over: Partial<VirtualService> = {}): PoolSpec {
  const v = { ...vs, ...over };
  const reals = Object.fromEntries(v.reals.map((r) => [realId(r), { state: up.includes(r.address) ? "up" as const : "down" as const, probers: {}, why: "" }]));
  return desiredPool(v, { reals, fallbackActive: up.length === 0 && v.fallback !== null });
}
const R1 = "192.168.120.86", R2 = "192.168.120.87";
const [HTTPS, HTTP] = seed.virtualServices;
const allUp = () => seed.virtualServices.map((v) => pool(v, [R1, R2]));
/** What the kernel would hold after a perfect apply: the table read back from its save text. */
const kernelOf = (pools: PoolSpec[]): IpvsTable => {
  const d = desiredTable(pools);
  return { services: d.services.map((s) => ({ ...s, dests: s.dests.map((x) => ({ ...x })) })) };
};
const lines = (p: IpvsPlan) => p.ops.map((o) => `${o.kind} ${o.argv.slice(1).join(" ")}`);

test("seed config: two virtual services, wlc, persistence 120 mask /24, masq reals → ipvsadm argv and save text", () => {
  assert.equal(seed.virtualServices.length, 2);
  const t = desiredTable(allUp());
  assert.deepEqual(addService(t.services[1]), ["ipvsadm", "-A", "-t", "10.0.2.50:80", "-s", "wlc", "-p", "120", "-M", "255.255.255.0"]);
  assert.deepEqual(addDest(t.services[1], t.services[1].dests[0]), ["ipvsadm", "-a", "-t", "10.0.2.50:80", "-r", "192.168.120.86:80", "-m", "-w", "1"]);
  assert.equal(renderSave(t), [
    "-A -t 10.0.2.50:80 -s wlc -p 120 -M 255.255.255.0",
    "-a -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 1",
    "-a -t 10.0.2.50:80 -r 192.168.120.87:80 -m -w 1",
    "-A -t 10.0.2.50:443 -s wlc -p 120 -M 255.255.255.0",
    "-a -t 10.0.2.50:443 -r 192.168.120.86:443 -m -w 1",
    "-a -t 10.0.2.50:443 -r 192.168.120.87:443 -m -w 1",
  ].map((l) => l + "\n").join(""));
  // No fallback while a real is up.
  assert.ok(t.services.every((s) => s.dests.every((d) => d.address !== "127.0.0.1")));
});

test("empty table: one full load through ipvsadm-restore; loaded table: nothing to do", () => {
  const pools = allUp();
  const p = planIpvs(desiredTable(pools), { services: [] });
  assert.equal(p.mode, "restore");
  assert.deepEqual(p.ops.map((o) => o.argv), [["ipvsadm-restore"]]);
  assert.equal(p.ops[0].input, renderRestore(desiredTable(pools)));
  assert.match(p.reasons[0], /empty/);
  // The save text parses back to the same table: a reconcile of an in-sync kernel does nothing.
  const back = parseSave(renderSave(desiredTable(pools)));
  assert.deepEqual(planIpvs(desiredTable(pools), back), { mode: "none", ops: [], reasons: [] });
});

test("a table holding only foreign services is replaced by a full load; a shared one is edited in place", () => {
  const foreign = parseSave("-A -t 192.0.2.99:25 -s rr\n-a -t 192.0.2.99:25 -r 192.0.2.7:25 -m -w 1\n");
  const p = planIpvs(desiredTable(allUp()), foreign);
  assert.equal(p.mode, "restore");
  assert.match(p.reasons[0], /only services lvsflow does not manage \(-t 192\.0\.2\.99:25\)/);
  const mixed: IpvsTable = { services: [...foreign.services, ...kernelOf(allUp()).services] };
  const q = planIpvs(desiredTable(allUp()), mixed);
  assert.deepEqual(lines(q), ["delete-service -D -t 192.0.2.99:25"]);
});

test("real down, quiescent=no (the seed): drained to weight 0, then deleted", () => {
  const cur = kernelOf(allUp());
  const p = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), pool(HTTP, [R2])]), cur, { fallbacks: fallbackKeys(seed.virtualServices) });
  assert.deepEqual(lines(p), [
    "quiesce-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 0 -x 0 -y 0",
    "delete-dest -d -t 10.0.2.50:80 -r 192.168.120.86:80",
  ]);
  assert.deepEqual(p.reasons, ["real 192.168.120.86:80 of -t 10.0.2.50:80 not desired"]);
});

test("real down, quiescent=yes: weight 0, kept; back up: weight restored", () => {
  const cur = kernelOf(allUp());
  const down = [pool(HTTPS, [R1, R2]), pool(HTTP, [R2], { quiescent: true })];
  const p = planIpvs(desiredTable(down), cur);
  assert.deepEqual(lines(p), ["quiesce-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 0 -x 0 -y 0"]);
  assert.deepEqual(p.reasons, ["real 192.168.120.86:80 of -t 10.0.2.50:80: weight 1, want 0"]);
  const back = planIpvs(desiredTable(allUp()), kernelOf(down));
  assert.deepEqual(lines(back), ["edit-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 1 -x 0 -y 0"]);
});

test("fallback on: added at weight 1 before the last real leaves; never quiesced, deleted as soon as a real is up", () => {
  const fbConf: Partial<VirtualService> = { quiescent: false };
  const oneUp = kernelOf([pool(HTTPS, [R1, R2]), pool(HTTP, [R1])]);
  const noneUp = [pool(HTTPS, [R1, R2]), pool(HTTP, [], fbConf)];
  assert.deepEqual(noneUp[1].fallback, { address: "127.0.0.1", port: 80, forwarding: "gate" });
  const fbs = fallbackKeys(seed.virtualServices);
  const on = planIpvs(desiredTable(noneUp), oneUp, { fallbacks: fbs });
  assert.deepEqual(lines(on), [
    "add-dest -a -t 10.0.2.50:80 -r 127.0.0.1:80 -g -w 1",
    "quiesce-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 0 -x 0 -y 0",
    "delete-dest -d -t 10.0.2.50:80 -r 192.168.120.86:80",
  ]);
  // Off: the returning real is added first, the fallback is deleted directly (no -w 0 step).
  const off = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), pool(HTTP, [R2])]), kernelOf(noneUp), { fallbacks: fbs });
  assert.deepEqual(lines(off), [
    "add-dest -a -t 10.0.2.50:80 -r 192.168.120.87:80 -m -w 1",
    "delete-dest -d -t 10.0.2.50:80 -r 127.0.0.1:80",
  ]);
  assert.ok(off.reasons.includes("fallback 127.0.0.1:80 of -t 10.0.2.50:80 not desired"));
  // With quiescent=yes the fallback still comes in while every real sits at weight 0.
  const q = desiredTable([pool(HTTP, [], { quiescent: true })]).services[0];
  assert.deepEqual(q.dests.map((d) => `${d.address}:${d.port} w${d.weight}`), ["192.168.120.86:80 w0", "192.168.120.87:80 w0", "127.0.0.1:80 w1"]);
});

test("weight and scheduler change: the service is edited before its reals; -E restates every option", () => {
  const cur = kernelOf(allUp());
  const vs = { ...HTTP, scheduler: "sh", schedFlags: "sh-port", reals: HTTP.reals.map((r, i) => ({ ...r, weight: i === 0 ? 5 : 1, upperThreshold: i === 0 ? 100 : null, lowerThreshold: i === 0 ? 10 : null })) };
  const p = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), { ...pool(vs, [R1, R2]), schedFlags: "sh-port" }]), cur);
  assert.deepEqual(lines(p), [
    "edit-service -E -t 10.0.2.50:80 -s sh -p 120 -M 255.255.255.0 -b sh-port",
    "edit-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 5 -x 100 -y 10",
  ]);
  assert.deepEqual(p.reasons, [
    "service -t 10.0.2.50:80: scheduler wlc, want sh, flags \"\", want \"sh-port\"",
    "real 192.168.120.86:80 of -t 10.0.2.50:80: weight 1, want 5, thresholds 0-0, want 10-100",
  ]);
  // Persistence off: -E without -p (ipvsadm then clears it).
  const np = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), pool(HTTP, [R1, R2], { persistence: null })]), cur);
  assert.deepEqual(lines(np), ["edit-service -E -t 10.0.2.50:80 -s wlc"]);
});

test("virtual service added and removed: adds first (reals wait for their service), removal last", () => {
  const cur = kernelOf(allUp());
  const extra: PoolSpec = { ...pool(HTTP, [R1, R2]), vs: "tcp:10.0.2.51:8080", address: "10.0.2.51", port: 8080, reals: pool(HTTP, [R1]).reals.map((r) => ({ ...r, port: 8080 })) };
  const p = planIpvs(desiredTable([pool(HTTP, [R1, R2]), extra]), cur);
  assert.deepEqual(lines(p), [
    "add-service -A -t 10.0.2.51:8080 -s wlc -p 120 -M 255.255.255.0",
    "add-dest -a -t 10.0.2.51:8080 -r 192.168.120.86:8080 -m -w 1",
    "delete-service -D -t 10.0.2.50:443",
  ]);
  assert.equal(p.ops[1].after, 0);
});

test("drift (hand edits) is found and every difference named", () => {
  const cur = kernelOf(allUp());
  const s80 = cur.services.find((s) => s.port === 80)!;
  s80.scheduler = "rr";
  s80.dests[1].weight = 9;
  s80.dests.push({ address: "198.51.100.99", port: 80, forwarding: "gate", weight: 1, upper: 0, lower: 0 });
  cur.services.push(parseSave("-A -u 10.0.2.50:53 -s rr\n").services[0]);
  const p = planIpvs(desiredTable(allUp()), cur);
  assert.deepEqual(p.reasons, [
    "service -t 10.0.2.50:80: scheduler rr, want wlc",
    "real 192.168.120.87:80 of -t 10.0.2.50:80: weight 9, want 1",
    "real 198.51.100.99:80 of -t 10.0.2.50:80 not desired",
    "service -u 10.0.2.50:53 not desired",
  ]);
  assert.deepEqual(p.ops.map((o) => o.kind), ["edit-service", "edit-dest", "quiesce-dest", "delete-dest", "delete-service"]);
});

// Printed by the real ipvsadm 1.31 (kernel 6.1) for the table built with the commands in
// kernel-ipvs.test.ts's "every mapping" case.
const KERNEL_SAVE = `-A -t 192.0.2.50:80 -s wlc -p 120 -M 255.255.255.0
-a -t 192.0.2.50:80 -r 127.0.0.1:80 -m -w 1
-a -t 192.0.2.50:80 -r 198.51.100.11:8080 -m -w 1
-a -t 192.0.2.50:80 -r 198.51.100.12:80 -g -w 0
-A -u 192.0.2.50:53 -s sh -o -b sh-fallback,sh-port
-A -t [2001:db8::1]:443 -s lblcr -b flag-3
-a -t [2001:db8::1]:443 -r [2001:db8::7]:8443 -m -w 1
-A -f 7 -s mh -b mh-port
-A -f 8 -6 -s rr -p 60 -M 64
-a -f 8 -6 -r [2001:db8::5]:0 -i -w 1 --tun-type ipip
`;
const KERNEL_THRESHOLDS = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.50:80 wlc persistent 120 mask 255.255.255.0
  -> 127.0.0.1:80                 0          0          0          0         
  -> 198.51.100.11:8080           100        10         0          0         
  -> 198.51.100.12:80             0          0          0          0         
UDP  192.0.2.50:53 sh (sh-fallback,sh-port) ops
TCP  [2001:db8::1]:443 lblcr (flag-3)
  -> [2001:db8::7]:8443           0          0          0          0         
FWM  7 mh (mh-port)
FWM  8 IPv6 rr persistent 60 mask 64
  -> [2001:db8::5]:0              0          0          0          0         
`;
const r = (address: string, port: number, forwarding: "masq" | "gate" | "ipip", weight = 1, upper: number | null = null, lower: number | null = null) => ({ address, port, forwarding, weight, upperThreshold: upper, lowerThreshold: lower });
const EVERY_MAPPING: (PoolSpec & { schedFlags?: string; onePacket?: boolean })[] = [
  { vs: "tcp:192.0.2.50:80", protocol: "tcp", family: "ipv4", address: "192.0.2.50", port: 80, fwmark: null, scheduler: "wlc", persistence: { timeout: 120, netmask: "255.255.255.0" }, reals: [r("198.51.100.11", 8080, "masq", 1, 100, 10), r("198.51.100.12", 8080, "gate", 0)], fallback: { address: "127.0.0.1", port: 80, forwarding: "masq" } },
  { vs: "udp:192.0.2.50:53", protocol: "udp", family: "ipv4", address: "192.0.2.50", port: 53, fwmark: null, scheduler: "sh", schedFlags: "sh-port,sh-fallback", onePacket: true, persistence: null, reals: [], fallback: null },
  { vs: "fwm:7", protocol: "fwm", family: "ipv4", address: null, port: 0, fwmark: 7, scheduler: "mh", schedFlags: "mh-port", persistence: null, reals: [], fallback: null },
  { vs: "fwm:8:v6", protocol: "fwm", family: "ipv6", address: null, port: 0, fwmark: 8, scheduler: "rr", persistence: { timeout: 60, netmask: "64" }, reals: [r("2001:db8:0::5", 0, "ipip")], fallback: null },
  { vs: "tcp:[2001:db8::1]:443", protocol: "tcp", family: "ipv6", address: "2001:DB8::1", port: 443, fwmark: null, scheduler: "lblcr", schedFlags: "flag-3", persistence: null, reals: [r("2001:db8::7", 8443, "masq")], fallback: null },
];

test("every mapping (IPv4/IPv6, fwmark, flags, one-packet, gate port, ipip, thresholds) renders what ipvsadm prints and parses back", () => {
  const want = desiredTable(EVERY_MAPPING);
  assert.equal(renderSave(want), KERNEL_SAVE);
  const kernel = mergeThresholds(parseSave(KERNEL_SAVE), parseThresholds(KERNEL_THRESHOLDS));
  assert.ok(kernel);
  assert.deepEqual(planIpvs(want, kernel).ops, []);
  const fwm8 = want.services.find((s) => s.fwmark === 8)!;
  assert.deepEqual(addService(fwm8), ["ipvsadm", "-A", "-f", "8", "-6", "-s", "rr", "-p", "60", "-M", "64"]);
  assert.deepEqual(addDest(fwm8, fwm8.dests[0]), ["ipvsadm", "-a", "-f", "8", "-6", "-r", "[2001:db8::5]:0", "-i", "-w", "1"]);
  const v80 = want.services[0];
  assert.deepEqual(editDest(v80, v80.dests[0]), ["ipvsadm", "-e", "-t", "192.0.2.50:80", "-r", "198.51.100.11:8080", "-m", "-w", "1", "-x", "100", "-y", "10"]);
  // A table that changed between the two reads is noticed, not merged.
  assert.equal(mergeThresholds(parseSave(KERNEL_SAVE), parseThresholds(KERNEL_THRESHOLDS.replace(/  -> 127.*\n/, ""))), null);
});

test("bad input is refused before any command is built, naming the virtual service and the field", () => {
  const base = pool(HTTP, [R1, R2]);
  const bad: [Partial<PoolSpec> & { schedFlags?: string; onePacket?: boolean }, RegExp][] = [
    [{ scheduler: "fastest" }, /tcp:10\.0\.2\.50:80: scheduler: "fastest" is not an IPVS scheduler/],
    [{ address: "10.0.2.50; ipvsadm -C" }, /address: .* is not an IPv4 address/],
    [{ reals: [{ ...base.reals[0], address: "2001:db8::1" }] }, /real 2001:db8::1:80: "2001:db8::1" is not an IPv4 address/],
    [{ reals: [{ ...base.reals[0], weight: 70000 }] }, /weight 70000 is not 0-65535/],
    [{ reals: [{ ...base.reals[0], lowerThreshold: 50, upperThreshold: 10 }] }, /lower threshold 50 is above the upper threshold 10/],
    [{ reals: [base.reals[0], base.reals[0]] }, /destination 192\.168\.120\.86:80 given twice/],
    [{ schedFlags: "sh-port" }, /schedflags: "sh-port" is not a flag of scheduler wlc/],
    [{ onePacket: true }, /ops: one-packet scheduling is for UDP/],
    [{ persistence: { timeout: 120, netmask: "255.0.255.0" } }, /netmask: 255\.0\.255\.0 is not a contiguous netmask/],
    [{ port: 70000 }, /port: 70000 is not a port/],
    [{ protocol: "sctp" as "tcp" }, /protocol: "sctp" is not tcp, udp or fwm/],
    [{ protocol: "fwm", fwmark: 0 }, /fwmark: 0 is not a firewall mark/],
  ];
  for (const [over, msg] of bad) {
    assert.throws(() => desiredTable([{ ...base, ...over }]), (e: unknown) => e instanceof IpvsSpecError && msg.test(e.message), JSON.stringify(over));
  }
  assert.throws(() => desiredTable([base, { ...base, vs: "other" }]), /other: virtual: same kernel service \(-t 10\.0\.2\.50:80\) as tcp:10\.0\.2\.50:80/);
  assert.equal(normalizeNetmask("x", "/24", "ipv4"), "255.255.255.0");
  assert.equal(normalizeNetmask("x", "/64", "ipv6"), "64");
});

test("version check: matching pair accepted; no IPVS, no ipvsadm and mismatched builds refused with the reason", () => {
  const proc = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n";
  const ok = checkVersions(proc, "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n");
  assert.deepEqual(ok, { ok: true, versions: { ipvsadm: "1.31", builtFor: "1.2.1", kernel: "1.2.1" } });
  const refused = (v: ReturnType<typeof checkVersions>) => (v.ok ? "" : v.error);
  assert.match(refused(checkVersions(null, null)), /this kernel has no IPVS: \/proc\/net\/ip_vs does not exist/);
  assert.match(refused(checkVersions(proc, null)), /ipvsadm is not installed/);
  assert.match(refused(checkVersions(proc, "ipvsadm v1.21 2004/02/23 (compiled with popt and IPVS v1.0.12)")), /ipvsadm 1\.21 was built for IPVS 1\.0\.12 but the kernel runs IPVS 1\.2\.1: they do not work together/);
  assert.match(refused(checkVersions("IP Virtual Server version 1.0.12 (size=4096)", "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)")), /built for IPVS 1\.2\.1 but the kernel runs IPVS 1\.0\.12/);
  assert.match(refused(checkVersions(proc, "ipvsadm v1.22 (compiled with popt and IPVS v1.2.0)")), /ipvsadm 1\.22 is too old/);
  assert.match(refused(checkVersions(proc, "Can't initialize ipvs: Protocol not available")), /did not report its version/);
  const oldHelp = "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq,\n";
  assert.deepEqual(missingFeatures(desiredTable(EVERY_MAPPING), oldHelp), [
    "scheduler flags (-b) need a newer ipvsadm", "one-packet scheduling (-o) needs a newer ipvsadm", "IPv6 virtual services need a newer ipvsadm",
    "scheduler mh is not known to this ipvsadm (it knows rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq)",
  ]);
});

test("sync daemon: parsed from ipvsadm -L --daemon; master on the owner, backup elsewhere, the other role stopped first", () => {
  const both = parseDaemons("master sync daemon (mcast=d0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\nbackup sync daemon (mcast=d0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n");
  assert.deepEqual(both[0], { role: "master", interface: "d0", syncId: 7, maxlen: 1472, group: "224.0.0.81", port: 8848, ttl: 1 });
  const cfg = { interface: "d0", syncId: 7 };
  assert.deepEqual(planSync([both[1]], "master", cfg), [["ipvsadm", "--stop-daemon", "backup"], ["ipvsadm", "--start-daemon", "master", "--mcast-interface", "d0", "--syncid", "7"]]);
  assert.deepEqual(planSync([both[0]], "master", cfg), []);
  assert.deepEqual(planSync([both[0]], "master", { ...cfg, syncId: 9 }), [["ipvsadm", "--stop-daemon", "master"], ["ipvsadm", "--start-daemon", "master", "--mcast-interface", "d0", "--syncid", "9"]]);
  assert.deepEqual(planSync([], "backup", { ...cfg, ttl: 2, port: 9000 }), [["ipvsadm", "--start-daemon", "backup", "--mcast-interface", "d0", "--syncid", "7", "--mcast-port", "9000", "--mcast-ttl", "2"]]);
});

test("sysctl defaults: expire_nodest_conn=1, expire_quiescent_template=1, ip_forward=1, conntrack left alone", () => {
  assert.deepEqual(SYSCTL_DEFAULTS, { expireNodestConn: true, expireQuiescentTemplate: true, conntrack: null, ipForward: true });
  assert.deepEqual(sysctlTargets(), [["/proc/sys/net/ipv4/vs/expire_nodest_conn", "1"], ["/proc/sys/net/ipv4/vs/expire_quiescent_template", "1"], ["/proc/sys/net/ipv4/ip_forward", "1"]]);
  assert.deepEqual(sysctlTargets({ conntrack: true, expireQuiescentTemplate: false }), [["/proc/sys/net/ipv4/vs/expire_nodest_conn", "1"], ["/proc/sys/net/ipv4/vs/expire_quiescent_template", "0"], ["/proc/sys/net/ipv4/vs/conntrack", "1"], ["/proc/sys/net/ipv4/ip_forward", "1"]]);
});

// ---- operator drain (PoolReal.draining), the IPVS way

/** The controller's pool with an operator override on R1 of the seed's HTTP service. */
const withOverride = (state: OperatorOverride["state"], vs: VirtualService = HTTP, up = [R1, R2]) =>
  applyOverrides(pool(vs, up), { [`${R1}:80`]: { real: `${R1}:80`, state, weight: state === "draining" ? 0 : null, why: "test", commandId: "c1" } }, vs, (r) => up.some((a) => r.startsWith(a + ":")));

test("operator drain: the real goes to weight 0 and stays while the decision lists it; deleted without a second quiesce once drained", () => {
  const draining = withOverride("draining");
  assert.deepEqual(draining.reals.map((r) => [r.address, r.weight, r.draining ?? false]), [[R1, 0, true], [R2, 1, false]]);
  // Weight 0 in the kernel: IPVS keeps forwarding the real's connection entries, schedules no new ones.
  const p = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), draining]), kernelOf(allUp()), { draining: drainingKeys([draining]) });
  assert.deepEqual(lines(p), ["quiesce-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 0 -x 0 -y 0"]);
  assert.deepEqual(p.reasons, ["real 192.168.120.86:80 of -t 10.0.2.50:80: weight 1, want 0 (operator drain: no new connections, established ones stay)"]);
  // Re-sent decisions while it drains: nothing to do, the real is not deleted.
  const kDraining = kernelOf([pool(HTTPS, [R1, R2]), draining]);
  assert.deepEqual(planIpvs(desiredTable([pool(HTTPS, [R1, R2]), draining]), kDraining), { mode: "none", ops: [], reasons: [] });
  // Drained (no connections left, or the timeout): the decision drops it, it is deleted at once.
  const drained = withOverride("drained");
  assert.deepEqual(drained.reals.map((r) => r.address), [R2]);
  assert.deepEqual(lines(planIpvs(desiredTable([pool(HTTPS, [R1, R2]), drained]), kDraining)), ["delete-dest -d -t 10.0.2.50:80 -r 192.168.120.86:80"]);
  // Cancelled (enable): back to its weight.
  assert.deepEqual(lines(planIpvs(desiredTable(allUp()), kDraining)), ["edit-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 1 -x 0 -y 0"]);
});

test("operator drain of the last real with a weight: the fallback comes in first, the draining real stays at weight 0", () => {
  const only = withOverride("draining", HTTP, [R1]);
  assert.deepEqual(only.fallback, { address: "127.0.0.1", port: 80, forwarding: "gate" });
  const cur = kernelOf([pool(HTTPS, [R1, R2]), pool(HTTP, [R1])]);
  const p = planIpvs(desiredTable([pool(HTTPS, [R1, R2]), only]), cur, { fallbacks: fallbackKeys(seed.virtualServices), draining: drainingKeys([only]) });
  assert.deepEqual(lines(p), [
    "add-dest -a -t 10.0.2.50:80 -r 127.0.0.1:80 -g -w 1",
    "quiesce-dest -e -t 10.0.2.50:80 -r 192.168.120.86:80 -m -w 0 -x 0 -y 0",
  ]);
});

test("draining keys follow the kernel's dest keys (gate reals carry the service's port); persistence caveat when expire_quiescent_template is not on", () => {
  const gate: PoolSpec = { ...withOverride("draining"), reals: withOverride("draining").reals.map((r) => ({ ...r, forwarding: "gate" as const, port: 8080 })) };
  assert.deepEqual([...drainingKeys([gate])], ["-t 10.0.2.50:80 192.168.120.86:80"]);
  assert.deepEqual([...drainingKeys(allUp())], []);
  const d = withOverride("draining");
  assert.deepEqual(drainCaveats([d]), [], "lvsflow's default: templates of a weight-0 real expire");
  assert.deepEqual(drainCaveats([d], { expireQuiescentTemplate: true }), []);
  const off = drainCaveats([d, pool(HTTPS, [R1, R2])], { expireQuiescentTemplate: false });
  assert.equal(off.length, 1);
  assert.match(off[0], /^tcp:10\.0\.2\.50:80: draining 192\.168\.120\.86:80: net\.ipv4\.vs\.expire_quiescent_template is set to 0 .* still reach it until the template expires \(120 s/);
  assert.match(drainCaveats([d], { expireQuiescentTemplate: null })[0], /is left alone/);
  // Without persistence there is no template to follow.
  assert.deepEqual(drainCaveats([withOverride("draining", { ...HTTP, persistence: null })], { expireQuiescentTemplate: false }), []);
});

// Printed by the real ipvsadm 1.31 (kernel 6.1, infra/ipvs-vm; LVSFLOW_PRINT_IPVS=1 in
// kernel-ipvs.test.ts's drain case) while 198.51.100.12 drained at weight 0 with one open
// connection and the other real had served 6 closed ones (TIME_WAIT).
const DRAIN_THRESHOLDS = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.0.2.50:80 wlc persistent 120 mask 255.255.255.0
  -> 198.51.100.11:80             0          0          0          6         
  -> 198.51.100.12:80             0          0          1          0         
TCP  192.0.2.50:443 wlc persistent 120 mask 255.255.255.0
  -> 198.51.100.11:443            0          0          0          0         
  -> 198.51.100.12:443            0          0          0          0         
`;

test("connection counts from IPVS's table: ESTABLISHED for tcp, every entry for udp, a real the decision dropped still counted", () => {
  const vm = (vs: VirtualService) => ({ ...vs, address: "192.0.2.50", id: vs.id.replace("10.0.2.50", "192.0.2.50"), reals: vs.reals.map((r) => ({ ...r, address: r.address === R1 ? "198.51.100.11" : "198.51.100.12" })) });
  const [h, s] = [vm(HTTP), vm(HTTPS)];
  const stats = parseThresholds(DRAIN_THRESHOLDS);
  assert.deepEqual(stats.get("-t 192.0.2.50:80")?.get("198.51.100.11:80"), { upper: 0, lower: 0, active: 0, inactive: 6 });
  assert.deepEqual([...connectionCounts([pool(h, ["198.51.100.11", "198.51.100.12"]), pool(s, [])], stats)], [["tcp:192.0.2.50:80|198.51.100.12:80", 1]]);
  // The decision no longer lists .12 (drained, or removed from the configuration): its connections still count.
  assert.deepEqual([...connectionCounts([pool(h, ["198.51.100.11"])], stats)], [["tcp:192.0.2.50:80|198.51.100.12:80", 1]]);
  // UDP: IPVS keeps UDP entries as InActConn; each is a flow (as the conntrack counter counts UDP).
  const udp = { ...pool(h, ["198.51.100.11", "198.51.100.12"]), vs: "udp:192.0.2.50:80", protocol: "udp" as const, persistence: null };
  const udpStats = parseThresholds(DRAIN_THRESHOLDS.replace("TCP  192.0.2.50:80", "UDP  192.0.2.50:80"));
  assert.deepEqual([...connectionCounts([udp], udpStats)], [["udp:192.0.2.50:80|198.51.100.11:80", 6], ["udp:192.0.2.50:80|198.51.100.12:80", 1]]);
  // A listing without the counter columns is unknown, not zero.
  assert.throws(() => connectionCounts([pool(h, [])], parseThresholds(DRAIN_THRESHOLDS.replace("1          0         \n", "\n"))), /no connection counters for 198\.51\.100\.12:80/);
});

test("live reload: the settings a new model changes are named; an unchanged model changes nothing; a removed sync daemon is stopped", () => {
  const withIpvs = (over: object, vs = seed.virtualServices): Model => ({ ...seed, virtualServices: vs, groups: [], global: { ...seed.global, ipvs: IpvsSettings.parse(over) } });
  const a = ipvsOptions(withIpvs({}));
  assert.deepEqual(changedSettings(a, ipvsOptions(withIpvs({}))), []);
  assert.deepEqual(changedSettings(a, ipvsOptions({ ...seed, groups: [] })), [], "no ipvs section = the defaults");
  assert.deepEqual(changedSettings(a, ipvsOptions(withIpvs({ expireQuiescentTemplate: false, conntrack: true }))), ["sysctls"]);
  assert.deepEqual(changedSettings(a, ipvsOptions(withIpvs({ syncDaemon: { interface: "eth1", syncId: 3 } }))), ["sync daemon"]);
  const flags = seed.virtualServices.map((v) => (v.port === 80 ? { ...v, schedFlags: "flag-1" } : v));
  assert.deepEqual(changedSettings(a, ipvsOptions(withIpvs({}, flags))), ["scheduler flags / one-packet"]);
  const noFallback = seed.virtualServices.map((v) => ({ ...v, fallback: null }));
  assert.deepEqual(changedSettings(a, ipvsOptions(withIpvs({}, noFallback))), ["fallbacks"]);
  assert.deepEqual(changedSettings(a, {}), [], "settings left out are kept");
  // The sync daemon's group is the first floating group when not named.
  const g = ipvsOptions({ ...withIpvs({ syncDaemon: { interface: "eth1" } }), groups: [{ name: "web" } as Model["groups"][number]] });
  assert.equal(g.syncDaemon?.group, "web");
  const running = parseDaemons("master sync daemon (mcast=d0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\nbackup sync daemon (mcast=d0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n");
  assert.deepEqual(planStopAll(running), [["ipvsadm", "--stop-daemon", "master"], ["ipvsadm", "--stop-daemon", "backup"]]);
  assert.deepEqual(planStopAll([]), []);
});
