// bench/probes: 10,000 real servers (listeners in a network namespace) checked every second by the
// real prober service in a second namespace, with connect and with HTTP negotiate. Prints checks
// per second, the share started on schedule, CPU and memory of the prober, and detection times for
// a real that starts refusing and one whose SYNs are silently dropped — alone, and with 1,000
// other reals already dead. --probers N starts N probers in one probe group (they share the reals)
// and reports their sum, each one's share, CPU and memory. Root only; everything it creates is
// removed on exit, also on failure.
//
//   node --import tsx bench/probes/run.ts [--reals 10000] [--interval 1] [--timeout 0.5]
//        [--measure 15] [--modes connect,http] [--dead 1000] [--probers 1] [--reals-nice 10]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { readFileSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const arg = (name: string, def: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
const REALS = Number(arg("reals", "10000"));
const INTERVAL = Number(arg("interval", "1"));
const TIMEOUT = Number(arg("timeout", "0.5"));
const MEASURE = Number(arg("measure", "15"));
const WARMUP = 8; // start-up (10,000 first slots, JIT) leaves a backlog the first seconds
const DEAD = Number(arg("dead", "1000"));
const MODES = arg("modes", "connect,http").split(",");
const PROBERS = Number(arg("probers", "1"));
// The reals' niceness: 10 keeps one prober's CPU when the machine is short of cores; with two
// probers on two cores the reals then starve (their checks time out), so the runs say which.
const REALS_NICE = Number(arg("reals-nice", "10"));
if (!Number.isInteger(PROBERS) || PROBERS < 1 || PROBERS > 8) throw new Error("--probers must be 1 to 8");
const PER_ADDR = 250;
const NADDR = Math.ceil(REALS / PER_ADDR);
const PORT0 = 20000;
if (REALS % PER_ADDR !== 0) throw new Error(`--reals must be a multiple of ${PER_ADDR}`);
if (process.getuid?.() !== 0) { console.error("bench/probes needs root (network namespaces, nftables)"); process.exit(2); }

const tag = `lvsb${randomBytes(3).toString("hex")}`;
const NS_SRV = `${tag}-srv`, NS_PRB = `${tag}-prb`;
const addrs = Array.from({ length: NADDR }, (_, i) => `192.0.2.${10 + i}`);
const children: ChildProcess[] = [];

function sh(args: string[], input?: string): void {
  const r = spawnSync(args[0], args.slice(1), { input, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr || r.stdout}`);
}
const inNs = (ns: string, args: string[], input?: string) => sh(["ip", "netns", "exec", ns, ...args], input);

function cleanup(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const ns of [NS_SRV, NS_PRB]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
}
process.on("exit", cleanup);
for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, () => { cleanup(); process.exit(130); });

function setup(): void {
  sh(["ip", "netns", "add", NS_SRV]);
  sh(["ip", "netns", "add", NS_PRB]);
  sh(["ip", "link", "add", `${tag}a`, "netns", NS_SRV, "type", "veth", "peer", "name", `${tag}b`, "netns", NS_PRB]);
  inNs(NS_SRV, ["ip", "link", "set", "lo", "up"]);
  inNs(NS_PRB, ["ip", "link", "set", "lo", "up"]);
  inNs(NS_SRV, ["ip", "-batch", "-"], [`link set ${tag}a up`, ...addrs.map((a) => `addr add ${a}/24 dev ${tag}a`), ""].join("\n"));
  inNs(NS_PRB, ["ip", "-batch", "-"], [`link set ${tag}b up`, `addr add 192.0.2.2/24 dev ${tag}b`, ""].join("\n"));
  // Enough room for the SYN backlog of 10,000 listeners and the prober's sockets.
  inNs(NS_SRV, ["sysctl", "-q", "-w", "net.core.somaxconn=4096", "net.ipv4.tcp_max_syn_backlog=16384"]);
  inNs(NS_PRB, ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000"]);
  // Dead reals: a set of address . port whose SYNs are dropped.
  inNs(NS_SRV, ["nft", "-f", "-"], `table inet lvsb {
    set dead { type ipv4_addr . inet_service; }
    chain input { type filter hook input priority 0; policy accept; ip daddr . tcp dport @dead drop; }
  }\n`);
}

function start(ns: string, cmd: string[], opts: { stdin?: boolean } = {}): { child: ChildProcess; lines: AsyncIterableIterator<string> } {
  const child = spawn("ip", ["netns", "exec", ns, ...cmd], { cwd: root, stdio: ["pipe", "pipe", "inherit"] });
  children.push(child);
  const rl = createInterface({ input: child.stdout! });
  return { child, lines: rl[Symbol.asyncIterator]() };
}

async function nextLine(it: AsyncIterableIterator<string>, ms: number, what: string): Promise<string> {
  const r = await Promise.race([it.next(), new Promise<null>((res) => setTimeout(() => res(null), ms))]);
  if (!r || r.done) throw new Error(`no ${what} within ${ms} ms`);
  return r.value;
}

const CLK = 100; // USER_HZ
/** user, nice, system, idle, iowait, … jiffies of the whole machine. */
const cpuTimes = () => readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
/** utime + stime of one process, in jiffies. */
const procTicks = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const realAt = (i: number) => ({ address: addrs[Math.floor(i / PER_ADDR)], port: PORT0 + (i % PER_ADDR) });
const drop = (reals: { address: string; port: number }[]) =>
  inNs(NS_SRV, ["nft", "-f", "-"], `add element inet lvsb dead { ${reals.map((r) => `${r.address} . ${r.port}`).join(", ")} }\n`);

interface Stats { downErrors: Record<string, number>; node: string; targets: number; members: number; groupChanges: number; membersMin: number; targetsMin: number; targetsMax: number; checksPerSec: number; failsPerSec: number; launched: number; late10ms: number; late100ms: number; within10ms: number; within100ms: number; skipped: number; cpuPct: number; rssMB: number; loopDelayP99ms: number; loopDelayMaxMs: number }

/** The probers' figures added up: on-schedule shares weighted by the checks each one launched. */
function combine(each: Stats[]) {
  const sum = (f: (s: Stats) => number) => each.reduce((a, s) => a + f(s), 0);
  const launched = sum((s) => s.launched);
  return {
    checksPerSec: sum((s) => s.checksPerSec), failsPerSec: sum((s) => s.failsPerSec), skipped: sum((s) => s.skipped), cpuPct: Math.round(sum((s) => s.cpuPct) * 10) / 10, rssMB: sum((s) => s.rssMB),
    within10ms: launched ? sum((s) => s.late10ms) / launched : 0, within100ms: launched ? sum((s) => s.late100ms) / launched : 0,
    loopDelayP99ms: Math.max(...each.map((s) => s.loopDelayP99ms)), loopDelayMaxMs: Math.max(...each.map((s) => s.loopDelayMaxMs)),
  };
}

async function runMode(mode: string, natsUrl: string) {
  // The reals run at nice 10: on a 2-core machine they would otherwise take the prober's CPU.
  // The TCP handshake itself is answered by the kernel, so this does not slow connect checks.
  const srv = start(NS_SRV, ["nice", "-n", String(REALS_NICE), process.execPath, join(here, "reals.mjs"), mode, addrs.join(","), String(PORT0), String(PER_ADDR)]);
  if ((await nextLine(srv.lines, 60_000, "reals ready")) !== "ready") throw new Error("reals failed");
  // BENCH_PROF=DIR writes a V8 CPU profile of each prober there (chrome://inspect, or any .cpuprofile viewer).
  const prof = process.env.BENCH_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  // One prober alone has no group (as a single prober runs); several share the reals as group "bench".
  const group = PROBERS > 1 ? "bench" : "-";
  const prbs = Array.from({ length: PROBERS }, (_, i) => start(NS_PRB, [process.execPath, ...prof, "--import", "tsx", join(here, "prober-side.ts"), mode, natsUrl, addrs.join(","), String(PORT0), String(PER_ADDR),
    String(INTERVAL), String(TIMEOUT), String(MEASURE), `bench-${i}`, group]));
  const events: { ev: string; real?: string; at?: number; error?: string }[] = [];
  const stats: Stats[] = [];
  let started = 0;
  const readers = prbs.map(async (prb) => {
    for await (const l of prb.lines) {
      try {
        const o = JSON.parse(l);
        if (o.ev === "stats") stats.push(o);
        else if (o.ev === "started") started++;
        else events.push(o);
      } catch { /* not ours */ }
    }
  });
  const until = async (cond: () => boolean, ms: number) => { const end = Date.now() + ms; while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20)); return cond(); };
  if (!(await until(() => started === PROBERS, 60_000))) throw new Error(`only ${started} of ${PROBERS} probers started`);
  // Every prober has taken its share by now; the warm-up covers the first slots (and JIT).
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  const snap0 = { all: cpuTimes(), srv: procTicks(srv.child.pid!), t: performance.now() };
  for (const p of prbs) p.child.stdin!.write("measure\n");
  if (!(await until(() => stats.length === PROBERS, (MEASURE + 60) * 1000))) throw new Error("a prober never reported its figures");
  const d = cpuTimes().map((v, i) => v - snap0.all[i]);
  const total = d.reduce((a, b) => a + b, 0), secs = (performance.now() - snap0.t) / 1000;
  const machine = { busyPct: Math.round(1000 * (1 - (d[3] + d[4]) / total)) / 10, srvCpuPct: Math.round((procTicks(srv.child.pid!) - snap0.srv) / CLK / secs * 1000) / 10 };
  if (!(await until(() => events.filter((e) => e.ev === "armed").length === PROBERS, 10_000))) throw new Error("probers never armed");
  stats.sort((a, b) => a.node.localeCompare(b.node));
  if (process.env.BENCH_VERBOSE) console.error(JSON.stringify(stats));
  const detect = async (label: string, refuse: number, dropIdx: number) => {
    const r1 = realAt(refuse), r2 = realAt(dropIdx);
    const id1 = `${r1.address}:${r1.port}`, id2 = `${r2.address}:${r2.port}`;
    const t0 = Date.now();
    srv.child.stdin!.write(`close ${r1.address} ${r1.port}\n`);
    drop([r2]);
    await until(() => [id1, id2].every((id) => events.some((e) => e.ev === "down" && e.real === id && e.at! >= t0)), 10_000);
    const at = (id: string) => events.find((e) => e.ev === "down" && e.real === id && e.at! >= t0)?.at;
    return { label, refusedMs: at(id1) ? at(id1)! - t0 : null, droppedMs: at(id2) ? at(id2)! - t0 : null, errs: [id1, id2].map((id) => events.find((e) => e.real === id)?.error) };
  };
  const d1 = await detect(`1 of ${REALS} fails`, 17, 4242 % REALS);
  // Then DEAD more reals stop answering (SYNs dropped); once they are down, two more fail.
  const many = Array.from({ length: DEAD }, (_, k) => realAt((100 + k * Math.floor(REALS / DEAD)) % REALS)).filter((_, k) => ((100 + k * Math.floor(REALS / DEAD)) % REALS) !== 17);
  drop(many);
  await new Promise((r) => setTimeout(r, (INTERVAL + TIMEOUT) * 1000 + 1500));
  const d2 = await detect(`with ${many.length} dead`, 33, 5151 % REALS);
  for (const p of prbs) p.child.stdin!.end();
  await Promise.all(prbs.map((p) => (p.child.exitCode !== null ? null : new Promise((r) => p.child.once("exit", r)))));
  await Promise.all(readers);
  srv.child.stdin!.end();
  await new Promise((r) => srv.child.once("exit", r));
  inNs(NS_SRV, ["nft", "flush", "set", "inet", "lvsb", "dead"]);
  return { mode, each: stats, stats: stats.length ? combine(stats) : null, machine, detections: [d1, d2] };
}

setup();
const nats = start(NS_PRB, ["nats-server", "-a", "127.0.0.1", "-p", "14222", "-l", "/dev/null"]);
await new Promise((r) => setTimeout(r, 500));
if (nats.child.exitCode !== null) throw new Error("nats-server did not start");
const results = [];
for (const mode of MODES) results.push(await runMode(mode, "nats://127.0.0.1:14222"));

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
console.log(`\nbench/probes: ${REALS} reals (at nice ${REALS_NICE}), ${PROBERS} prober(s)${PROBERS > 1 ? " in one probe group" : ""}, interval ${INTERVAL} s, timeout ${TIMEOUT} s, ${MEASURE} s measured after ${WARMUP} s warm-up; ${new Date().toISOString()}`);
// "everything else": the machine's busy time less probers and reals (nats-server, and any other
// work on the machine: on a shared machine that is what starves the probers).
console.log("| mode | checks/s | of which failed | target | started ≤10 ms late | ≤100 ms late | skipped | prober CPU | RSS | loop delay p99 / max | reals' CPU | everything else | machine busy (2 cores) |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of results) {
  const s = r.stats;
  if (!s) { console.log(`| ${r.mode} | no stats | | | | | | | |`); continue; }
  const target = REALS / INTERVAL;
  const cpu = PROBERS > 1 ? `${s.cpuPct} % of a core (sum)` : `${s.cpuPct} % of a core`;
  // Failed checks count as checks: with starved reals most of them are timeouts, so say how many.
  console.log(`| ${r.mode} | ${s.checksPerSec} | ${s.failsPerSec} | ${target} (${(s.checksPerSec / target * 100).toFixed(1)} %) | ${pct(s.within10ms)} | ${pct(s.within100ms)} | ${s.skipped} | ${cpu} | ${s.rssMB} MiB | ${s.loopDelayP99ms} / ${s.loopDelayMaxMs} ms | ${r.machine.srvCpuPct} % | ${Math.max(0, Math.round(r.machine.busyPct * 2 - s.cpuPct - r.machine.srvCpuPct))} % | ${r.machine.busyPct} % |`);
}
if (PROBERS > 1) {
  // "reals assigned" at the window's end, with the range seen during it; "group changes": how
  // often this prober's view of the live members changed while measuring (0 when stable).
  console.log("\n| mode | prober | reals assigned (min–max while measuring) | members (min) | group changes | checks/s (failed) | started ≤10 / ≤100 ms late | CPU | RSS | loop delay p99 / max |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    for (const e of r.each) console.log(`| ${r.mode} | ${e.node} | ${e.targets} (${(e.targets / REALS * 100).toFixed(1)} %; ${e.targetsMin}–${e.targetsMax}) | ${e.members} (${e.membersMin}) | ${e.groupChanges} | ${e.checksPerSec} (${e.failsPerSec}) | ${pct(e.within10ms)} / ${pct(e.within100ms)} | ${e.cpuPct} % | ${e.rssMB} MiB | ${e.loopDelayP99ms} / ${e.loopDelayMaxMs} ms |`);
    for (const e of r.each) if (Object.keys(e.downErrors).length) console.log(`| ${r.mode} | ${e.node} | reals down at the end, by last error: ${Object.entries(e.downErrors).map(([k, n]) => `${n} × ${k}`).join("; ")} | | | | | | | |`);
    const assigned = r.each.reduce((a, e) => a + e.targets, 0);
    if (assigned !== REALS) console.log(`| ${r.mode} | (sum) | ${assigned} — not ${REALS}: the members disagreed on the split at the end | | | | | | | |`);
  }
}
const bound = (INTERVAL + TIMEOUT) * 1000 + 100;
console.log(`\n| mode | scenario | refused → down | SYN dropped → down | bound (interval + timeout + 100 ms) |`);
console.log("|---|---|---|---|---|");
for (const r of results) for (const d of r.detections) {
  const f = (ms: number | null) => (ms === null ? "not detected in 10 s" : `${ms} ms${ms <= bound ? "" : " (over)"}`);
  console.log(`| ${r.mode} | ${d.label} | ${f(d.refusedMs)} | ${f(d.droppedMs)} | ${bound} ms |`);
}
process.exit(0);
