// One prober under test, inside the bench's prober namespace: the real lvsflow prober service
// (startProber, publishing to a local nats-server) checking N reals every interval, alone or as one
// member of a probe group (group "-" = none). Prints JSON lines: {"ev":"started",targets} once
// running; {"ev":"stats",…} after the window that a "measure" line on stdin starts (so several
// probers measure the same seconds); {"ev":"down",real,at} when one of its reals fails.
import { pino } from "pino";
import { Model } from "../../shared/schemas/config.ts";
import { Event } from "../../shared/schemas/events.ts";
import { Bus } from "../../shared/bus.ts";
import { registry } from "../../shared/metrics.ts";
import { token } from "../../shared/subjects.ts";
import { startProber } from "../../services/prober/main.ts";
import { connect } from "@nats-io/transport-node";
import { createInterface } from "node:readline";

const [mode, natsUrl, addrList, portFrom, perAddr, intervalS, timeoutS, measureS, node, groupArg] = process.argv.slice(2);
const group = groupArg && groupArg !== "-" ? groupArg : null;
const addrs = addrList.split(",");
const reals = addrs.flatMap((address) => Array.from({ length: Number(perAddr) }, (_, i) => ({ address, port: Number(portFrom) + i, forwarding: "masq", weight: 1 })));
const check = mode === "http"
  ? { type: "negotiate", service: "http", request: "/health", receive: "ok" }
  : { type: "connect", service: "none", request: "", receive: "" };
const model = Model.parse({
  site: "bench",
  virtualServices: [{
    id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4",
    scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { ...check, port: null, interval: Number(intervalS), timeout: Number(timeoutS), failureCount: 1 },
    reals,
  }],
});
const out = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
const log = pino({ level: "error" });
const bus = await new Bus({ servers: [natsUrl], name: `bench-prober-${node}`, site: "bench", node, service: "prober", log }).connect();

// A separate connection, as a controller would listen: failures of reals after the warm-up.
const nc = await connect({ servers: natsUrl });
let armed = false;
// health.<prober>.<vs>.<real> of this prober: results only, not the summaries (health.<prober>.summary).
nc.subscribe(`lvsflow.bench.health.${token(node)}.*.*`, {
  callback: (_e, m) => {
    if (!armed) return;
    const ev = Event.safeParse(JSON.parse(m.string()));
    if (ev.success && ev.data.type === "health.result" && !ev.data.data.ok && ev.data.data.streak === 1) out({ ev: "down", real: ev.data.data.real, at: Date.now(), error: ev.data.data.error });
  },
});

const prober = await startProber({ site: "bench", node, model, configVersion: "bench", bus, log, redisUrl: "", httpPort: 0, stateDir: "/tmp" }, { group, probeModules: [] });
out({ ev: "started", node, targets: prober.health().targets });

interface Snap { t: number; cpu: NodeJS.CpuUsage; checks: number; fails: number; late: { le: number; n: number }[]; lateCount: number; skipped: number }
async function snap(): Promise<Snap> {
  const m = await registry.getMetricsAsJSON();
  const get = (name: string) => m.find((x) => x.name === name) as unknown as { values: { value: number; labels: Record<string, string | number>; metricName?: string }[] } | undefined;
  const checks = get("lvsflow_prober_checks_total")?.values ?? [];
  const lat = get("lvsflow_prober_schedule_lateness_seconds")?.values ?? [];
  return {
    t: performance.now(), cpu: process.cpuUsage(),
    checks: checks.reduce((a, v) => a + v.value, 0), fails: checks.filter((v) => v.labels.result === "fail").reduce((a, v) => a + v.value, 0),
    late: lat.filter((v) => v.metricName?.endsWith("_bucket")).map((v) => ({ le: Number(v.labels.le), n: v.value })),
    lateCount: lat.find((v) => v.metricName?.endsWith("_count"))?.value ?? 0,
    skipped: (get("lvsflow_prober_checks_skipped_total")?.values ?? []).reduce((a, v) => a + v.value, 0),
  };
}

// Event-loop delay as a second view of "on schedule".
const { monitorEventLoopDelay } = await import("node:perf_hooks");
async function measure(): Promise<void> {
  const a = await snap();
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  let rssMax = 0;
  // How stable the probe group was: a member whose heartbeats arrive late (a stalled event loop)
  // is counted as gone and its reals are taken over, then handed back when it is heard again.
  let groupChanges = 0, membersMin = Infinity, targetsMin = Infinity, targetsMax = 0, lastMembers = prober.members().join(",");
  const rssTimer = setInterval(() => {
    rssMax = Math.max(rssMax, process.memoryUsage().rss);
    const m = prober.members(), n = Number(prober.health().targets);
    if (m.join(",") !== lastMembers) { groupChanges++; lastMembers = m.join(","); }
    membersMin = Math.min(membersMin, m.length);
    targetsMin = Math.min(targetsMin, n);
    targetsMax = Math.max(targetsMax, n);
  }, 50);
  await new Promise((r) => setTimeout(r, Number(measureS) * 1000));
  const b = await snap();
  eld.disable();
  clearInterval(rssTimer);
  const secs = (b.t - a.t) / 1000;
  const lateDelta = (le: number) => (b.late.find((x) => x.le === le)?.n ?? 0) - (a.late.find((x) => x.le === le)?.n ?? 0);
  const launched = b.lateCount - a.lateCount;
  const cpuMs = (b.cpu.user - a.cpu.user + b.cpu.system - a.cpu.system) / 1000;
  const h = prober.health();
  // Why the failing reals fail (their last error), most common first: under overload the reason
  // (timeouts, refused connections) says whether the prober or the reals gave out.
  const errors = new Map<string, number>();
  for (const st of prober.states()) if (st.ok === false) { const e = (st.lastOutcome?.error ?? "?").replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDR"); errors.set(e, (errors.get(e) ?? 0) + 1); }
  out({
    ev: "stats", mode, node, reals: reals.length, targets: h.targets, members: prober.members().length, seconds: Math.round(secs * 10) / 10,
    groupChanges, membersMin, targetsMin, targetsMax, downErrors: Object.fromEntries([...errors].sort((x, y) => y[1] - x[1]).slice(0, 5)),
    checksPerSec: Math.round((b.checks - a.checks) / secs), failsPerSec: Math.round((b.fails - a.fails) / secs),
    launched, late10ms: lateDelta(0.01), late100ms: lateDelta(0.1), within10ms: lateDelta(0.01) / launched, within100ms: lateDelta(0.1) / launched, skipped: b.skipped - a.skipped,
    lateBuckets: Object.fromEntries(b.late.map((x) => [x.le, lateDelta(x.le)])),
    cpuPct: Math.round((cpuMs / (secs * 1000)) * 1000) / 10, rssMB: Math.round(rssMax / 1048576),
    loopDelayP99ms: Math.round(eld.percentile(99) / 1e4) / 100, loopDelayMaxMs: Math.round(eld.max / 1e4) / 100,
    health: h,
  });
  armed = true;
  out({ ev: "armed", at: Date.now() });
}

// stdin: "measure" starts the window; its end stops the prober.
createInterface({ input: process.stdin })
  .on("line", (l) => { if (l.trim() === "measure") void measure(); })
  .on("close", async () => { await prober.stop(); await bus.close(); await nc.close(); process.exit(0); });
