// The failover benchmark (issue 5). In the namespace lab, side by side: keepalived VRRPv2 advert 1,
// keepalived VRRPv3 advert 0.1 and lvsflow with default settings, N trials per failure mode; then
// quorum mode under random partitions, and false failovers under CPU load. Prints tables;
// not a test (no assertion on timings). Root; installs keepalived and stress-ng (install.sh).
//
// "linkdown" = the owner is cut off from every network at one instant (all its frames dropped in
// one nft transaction; see ClusterLab.isolate), its processes keep running.
//
//   npx tsx bench/failover/run.ts [--trials 10] [--systems lvsflow,keepalived-v3,keepalived-v2]
//       [--modes linkdown,kill9,natskill,graceful] [--conns 20] [--partition-s 60] [--load-s 120]
//       [--witness-too] [--json FILE] [--skip-failover]
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { ClusterLab, VipWatch, probeLoop, echoClients, largestGap, waitFor, untilServing, type System, type Link } from "./cluster-lab.ts";
import { nsExec } from "../../services/lab/topology.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const { values: a } = parseArgs({ options: {
  trials: { type: "string", default: "10" }, systems: { type: "string", default: "lvsflow,keepalived-v3,keepalived-v2" },
  modes: { type: "string", default: "linkdown,kill9,natskill,graceful" }, conns: { type: "string", default: "20" },
  "partition-s": { type: "string", default: "60" }, "load-s": { type: "string", default: "120" }, json: { type: "string" },
  "witness-too": { type: "boolean", default: false }, "skip-failover": { type: "boolean", default: false },
  /** lvsflow and its nats-servers with realtime scheduling (chrt -f 10). Dangerous on a small machine:
   *  a Node process starting up at FIFO priority starves everything else (load average 70 seen). */
  rt: { type: "boolean", default: false },
} });
const TRIALS = Math.min(Number(a.trials), 100), CONNS = Math.min(Number(a.conns), 200);
const PARTITION_S = Math.min(Number(a["partition-s"]), 1800), LOAD_S = Math.min(Number(a["load-s"]), 1800);
type Mode = "linkdown" | "kill9" | "natskill" | "graceful";
type SysName = System | "lvsflow-quorum";
const say = (s: string) => process.stdout.write(s + "\n");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stats = (xs: number[]) => { const s = [...xs].sort((x, y) => x - y); return s.length ? { min: s[0]!, med: s[Math.floor((s.length - 1) / 2)]!, max: s.at(-1)! } : null; };
const fmt = (st: ReturnType<typeof stats>) => (st ? `${st.min} / ${st.med} / ${st.max}` : "–");

if (process.getuid?.() !== 0) { process.stderr.write("the failover benchmark needs root (namespaces, nftables)\n"); process.exit(1); }
if (spawnSync("bash", [join(HERE, "install.sh")], { stdio: "inherit" }).status !== 0) { process.stderr.write("install.sh failed\n"); process.exit(1); }
const base = mkdtempSync("/tmp/lvsflow-bench-failover-");
const results: Record<string, unknown> = { started: new Date().toISOString(), trials: TRIALS, conns: CONNS };
let current: ClusterLab | null = null;
const started = new Set<ClusterLab>(); // every lab brought up, also one whose start failed halfway
const cleanup = async () => { for (const l of started) { await l.down().catch(() => undefined); started.delete(l); } current = null; };
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
process.on("SIGTERM", () => void cleanup().then(() => process.exit(143)));

async function newLab(system: SysName, tag: string, opts: { timers?: { heartbeatMs?: number; deadMs?: number }; rt?: boolean } = {}): Promise<ClusterLab> {
  const dir = join(base, tag);
  mkdirSync(dir, { recursive: true });
  const lab = new ClusterLab({ dir, prefix: `fb${randomBytes(2).toString("hex")}-`, system: system === "lvsflow-quorum" ? "lvsflow" : system, witness: system === "lvsflow-quorum", timers: opts.timers, rt: opts.rt ?? a.rt });
  started.add(lab);
  await lab.up();
  await waitFor(async () => (await lab.holds("lb1")) && !(await lab.holds("lb2")), 60_000, `${system}: lb1 to own the VIP`);
  await untilServing(lab);
  return lab;
}

interface Trial { gapMs: number; movedMs: number | null; ok: number; total: number; conns: number; connsOk: number; errs: Record<string, number>; restoreMs: number | null;
  /** Preempt back to lb1: from lb2 letting the VIP go to lb1 adding it (no owner in between; negative: overlap). */
  handoverMs: number | null }

async function trial(lab: ClusterLab, system: SysName, mode: Mode, watch: VipWatch): Promise<Trial> {
  await waitFor(async () => (await lab.holds("lb1")) && !(await lab.holds("lb2")), 30_000, "lb1 alone to hold the VIP before the trial");
  await sleep(700); // let the GARP burst of the previous takeover pass
  await lab.flushNeighbours();
  await untilServing(lab);
  const post = system === "keepalived-v2" ? 5500 : 2500, pre = 1000;
  // Both clients are separate processes: wait until they really run before the failure.
  const echo = echoClients(lab, { conns: CONNS, intervalMs: 50, durationMs: pre + post + 3000, graceMs: system === "keepalived-v2" ? 12_000 : 7000 });
  await echo.ready;
  const probes = probeLoop(lab, { intervalMs: 20, timeoutMs: 150, count: Math.ceil((pre + post) / 20), durationMs: pre + post });
  await probes.ready;
  await sleep(pre);
  const tf = Date.now();
  if (mode === "linkdown") await lab.isolate("lb1", true);
  else if (mode === "kill9") await lab.kill9("lb1");
  else if (mode === "natskill") lab.killNats("lb1");
  else await lab.stop("lb1");
  const rs = await probes;
  const moved = watch.firstAdd("lb2", tf);
  // restore, and let lb1 take the group back (preempt)
  if (mode === "linkdown") await lab.isolate("lb1", false);
  else if (mode === "natskill") await lab.restartNats("lb1");
  else await lab.restart("lb1");
  const tr = Date.now();
  let restoreMs: number | null = null;
  try {
    await waitFor(async () => (await lab.holds("lb1")) && !(await lab.holds("lb2")), 30_000, "lb1 to take the VIP back");
    restoreMs = Date.now() - tr;
  } catch { /* reported as null */ }
  await sleep(300); // `ip monitor` lines arrive a little after the fact
  const back = watch.firstAdd("lb1", tr);
  const let2 = watch.events.find((e) => e.lb === "lb2" && !e.held && e.t >= tr)?.t ?? null;
  const handoverMs = back !== null && let2 !== null && moved !== null ? back - let2 : null;
  const conns = await echo;
  const errs: Record<string, number> = {};
  for (const c of conns) if (!c.ok) errs[c.err ?? "?"] = (errs[c.err ?? "?"] ?? 0) + 1;
  return { gapMs: largestGap(rs, 20), movedMs: moved === null ? null : moved - tf, ok: rs.filter((r) => r.ok).length, total: rs.length, conns: conns.length, connsOk: conns.filter((c) => c.ok).length, errs, restoreMs, handoverMs };
}

// ---- 1. failover trials -------------------------------------------------------------------------
const systems = a.systems!.split(",").filter(Boolean) as SysName[];
if (a["witness-too"] && !systems.includes("lvsflow-quorum")) systems.push("lvsflow-quorum");
const modes = a.modes!.split(",").filter(Boolean) as Mode[];
const table: Record<string, Record<string, Trial[]>> = {};
if (!a["skip-failover"]) {
  for (const system of systems) {
    table[system] = {};
    say(`\n## ${system}: bringing the lab up`);
    const lab = (current = await newLab(system, system));
    const watch = new VipWatch(lab);
    await watch.start();
    for (const mode of modes) {
      if (mode === "natskill" && !system.startsWith("lvsflow")) continue;
      const ts: Trial[] = (table[system]![mode] = []);
      for (let i = 0; i < TRIALS; i++) {
        try {
          const t = await trial(lab, system, mode, watch);
          ts.push(t);
          say(`${system} ${mode} #${i + 1}: gap ${t.gapMs} ms, VIP on lb2 after ${t.movedMs ?? "never"} ms, probes ${t.ok}/${t.total}, connections ${t.connsOk}/${t.conns}${Object.keys(t.errs).length ? ` ${JSON.stringify(t.errs)}` : ""}, back on lb1 in ${t.restoreMs ?? "?"} ms (no owner for ${t.handoverMs ?? "?"} ms of the handover)`);
        } catch (e) {
          say(`${system} ${mode} #${i + 1}: FAILED ${(e as Error).message}`);
        }
      }
    }
    watch.stop();
    await cleanup();
  }
  results.failover = table;
  say("\n### Failover: client gap (ms, min / median / max), VIP on the new owner (ms), long-lived connections that survived\n");
  say("| failure | system | n | client gap | VIP moved | connections survived | gap ratio lvsflow / keepalived-v3 (median) | preempt back: no owner (ms) |");
  say("|---|---|---|---|---|---|---|---|");
  for (const mode of modes) {
    const v3 = stats((table["keepalived-v3"]?.[mode] ?? []).map((t) => t.gapMs));
    for (const system of systems) {
      const ts = table[system]?.[mode];
      if (!ts) { if (mode === "natskill" && !system.startsWith("lvsflow")) say(`| ${mode} | ${system} | – | n/a (no bus) | | | |`); continue; }
      const g = stats(ts.map((t) => t.gapMs));
      const mv = stats(ts.filter((t) => t.movedMs !== null).map((t) => t.movedMs!));
      const co = ts.reduce((n, t) => n + t.connsOk, 0), ct = ts.reduce((n, t) => n + t.conns, 0);
      const ratio = system.startsWith("lvsflow") && g && v3 ? (v3.med > 0 ? (g.med / v3.med).toFixed(2) : g.med === 0 ? "1.00" : "∞") : "";
      const ho = stats(ts.filter((t) => t.handoverMs !== null).map((t) => t.handoverMs!));
      say(`| ${mode} | ${system} | ${ts.length} | ${fmt(g)} | ${mv ? fmt(mv) : "not moved"} | ${co}/${ct} (${ct ? ((100 * co) / ct).toFixed(1) : "–"} %) | ${ratio} | ${fmt(ho)} |`);
    }
  }
}

// ---- 2. quorum mode under random partitions -----------------------------------------------------
if (PARTITION_S > 0) {
  for (const system of ["lvsflow-quorum", "lvsflow"] as SysName[]) {
    say(`\n## ${system}: random partitions for ${PARTITION_S} s`);
    const lab = (current = await newLab(system, `partition-${system}`));
    const watch = new VipWatch(lab);
    await watch.start();
    const links: Link[] = system === "lvsflow-quorum" ? ["lb1-lb2", "lb1-w", "lb2-w"] : ["lb1-lb2"];
    const t0 = Date.now();
    // Park–Miller: exact in doubles (a 1103515245 multiplier overflows 2^53 and loses the low bits).
    let rnd = 12345, shapes = 0;
    const next = () => (rnd = (rnd * 48271) % 2147483647);
    const down = new Set<Link>();
    while (Date.now() - t0 < PARTITION_S * 1000) {
      const want = new Set(links.filter(() => next() % 1000 < 500));
      for (const l of links) if (want.has(l) !== down.has(l)) { await lab.link(l, !want.has(l)); if (want.has(l)) down.add(l); else down.delete(l); }
      shapes++;
      await sleep(700 + (next() % 2300));
    }
    for (const l of [...down]) await lab.link(l, true);
    await sleep(2000);
    const s = watch.doubleSamples(t0, Date.now(), 10);
    const moves = watch.events.filter((e) => e.t >= t0 && e.held).length;
    watch.stop();
    (results.partitions ??= {} as Record<string, unknown>) && ((results.partitions as Record<string, unknown>)[system] = { ...s, shapes, moves });
    say(`${system}: ${shapes} partition shapes over ${PARTITION_S} s, ${moves} takeovers; samples every 10 ms: ${s.samples}, with two owners: ${s.double} (${((100 * s.double) / s.samples).toFixed(2)} %), with none: ${s.none} (${((100 * s.none) / s.samples).toFixed(2)} %)`);
    await cleanup();
  }
}

// ---- 3. false failovers under CPU load ----------------------------------------------------------
if (LOAD_S > 0) {
  say(`\n## false failovers: lvsflow (defaults), lvsflow quorum and keepalived VRRPv3 0.1, side by side, both cores saturated for ${LOAD_S} s`);
  const labs: [SysName, ClusterLab, VipWatch][] = [];
  try {
    // lvsflow at the scheduling the run asked for (--rt or not); keepalived as Debian runs it.
    for (const system of ["lvsflow", "lvsflow-quorum", "keepalived-v3"] as SysName[]) {
      const lab = await newLab(system, `load-${system}`);
      const w = new VipWatch(lab);
      await w.start();
      labs.push([system, lab, w]);
    }
    say(`(lvsflow ${a.rt ? "with chrt -f 10 on its processes and nats-servers" : "at default scheduling priority"})`);
    await sleep(3000);
    const t0 = Date.now();
    // Heartbeat gaps as lb2's controller sees lb1 (and itself), measured in lb2's namespace.
    const observers = labs.filter(([s]) => s.startsWith("lvsflow")).map(([s, lab]) => [s, collectJson(nsExec(lab.ns("lb2"), [process.execPath, "--import", "tsx", join(HERE, "hb-observer.ts"), "nats://127.0.0.1:4222", "bench", String(LOAD_S * 1000)]))] as const);
    const stress = spawn("stress-ng", ["--cpu", "0", "--cpu-load", "100", "--timeout", `${LOAD_S}s`, "--quiet"], { stdio: "ignore" });
    await new Promise((r) => stress.on("exit", r));
    const load = Date.now();
    const out: Record<string, unknown> = {};
    for (const [system, , w] of labs) {
      const moves = w.events.filter((e) => e.t >= t0 && e.t <= load + 1000);
      const s = w.doubleSamples(t0, load, 10);
      out[system] = { vipEvents: moves.length, doubleSamples: s.double, noOwnerSamples: s.none };
      say(`${system}: VIP events during load: ${moves.length} (false failovers: ${moves.filter((e) => e.lb === "lb2" && e.held).length}), samples with two owners ${s.double}, with none ${s.none}`);
    }
    for (const [system, p] of observers) {
      const hb = await p;
      out[`${system}-heartbeats-at-lb2`] = hb;
      say(`${system}: heartbeat gaps seen at lb2 (ms): ${JSON.stringify(hb)}`);
    }
    results.load = { seconds: LOAD_S, ...out };
  } finally {
    for (const [, , w] of labs) w.stop();
    await cleanup();
  }
}

results.finished = new Date().toISOString();
if (a.json) writeFileSync(a.json, JSON.stringify(results, null, 2));
say(`\nraw results: ${a.json ?? "(use --json FILE)"}; logs under ${base}`);
await cleanup();
if (!a.json) rmSync(base, { recursive: true, force: true });
process.exit(0);

function collectJson(argv: string[]): Promise<unknown> {
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.on("exit", () => { try { resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "null")); } catch { resolve(null); } });
  });
}
