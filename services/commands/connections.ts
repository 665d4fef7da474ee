// Active connections per real server, for drain and status, as the executor's kernel sees them.
//
// The nftables driver does LVS-NAT with DNAT, so every connection through a virtual service is a
// conntrack entry whose original destination is the VIP:port and whose reply source is the real.
// We count ESTABLISHED TCP entries (ipvsadm's ActiveConn) and every UDP entry, from
// `conntrack -L -p tcp|udp` (Debian's conntrack package; argv only, never a shell). nft counters
// were the alternative, but they count packets since creation, not connections that are open now.
// A driver that counts itself (IPVS: `ipvsadm -Ln`, since IPVS flows are not in conntrack) passes
// `counter` and is used instead.
import client from "prom-client";
import type { Logger } from "pino";
import type { Bus } from "../../shared/bus.ts";
import { registry } from "../../shared/metrics.ts";
import { makeEvent, type PoolSpec } from "../../shared/schemas/events.ts";
import { realId } from "../../shared/schemas/config.ts";
import { subjects } from "../../shared/subjects.ts";
import { runCmd, type CmdResult } from "../executor/run.ts";

const activeGauge = new client.Gauge({ name: "lvsflow_executor_active_connections", help: "Active connections through the virtual services (conntrack)", registers: [registry] });

export interface Flow { proto: string; state: string | null; origDst: string; origDport: number; replySrc: string; replySport: number }

/** Parses `conntrack -L` lines (default output format). Lines it cannot read are skipped. */
export function parseConntrack(text: string): Flow[] {
  const out: Flow[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim().split(/\s+/);
    if (t.length < 6) continue;
    const kv = (k: string, n: number) => t.filter((x) => x.startsWith(k + "="))[n]?.slice(k.length + 1);
    const origDst = kv("dst", 0), replySrc = kv("src", 1), origDport = Number(kv("dport", 0)), replySport = Number(kv("sport", 1));
    if (!origDst || !replySrc || !Number.isInteger(origDport) || !Number.isInteger(replySport)) continue;
    const firstKv = t.findIndex((x) => x.includes("="));
    const state = t.slice(0, firstKv).find((x) => /^[A-Z_]{3,}$/.test(x)) ?? null;
    out.push({ proto: t[0]!, state, origDst, origDport, replySrc, replySport });
  }
  return out;
}

/** Connections per "vs|real" for these pools: ESTABLISHED for tcp, every entry for udp. */
export function countByReal(flows: Flow[], pools: PoolSpec[]): Map<string, number> {
  const index = new Map<string, { vs: string; reals: Set<string> }>();
  for (const p of pools) {
    if (p.protocol === "fwm" || !p.address) continue; // a mark is not in the tuple
    index.set(`${p.protocol} ${p.address} ${p.port}`, { vs: p.vs, reals: new Set(p.reals.map(realId)) });
  }
  const counts = new Map<string, number>();
  for (const f of flows) {
    if (f.proto === "tcp" && f.state !== "ESTABLISHED") continue;
    const svc = index.get(`${f.proto} ${f.origDst} ${f.origDport}`);
    if (!svc) continue;
    const real = realId({ address: f.replySrc, port: f.replySport });
    // A real that left the pool still has connections while it drains: count those too.
    const k = `${svc.vs}|${real}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

export interface ConnectionReporter { stop(): void; last(): Map<string, number> | null }

export interface ReporterOptions {
  site: string; node: string; bus: Bus; log: Logger;
  configVersion?: string | null;
  pools: () => PoolSpec[];
  intervalMs?: number;
  run?: (argv: string[]) => Promise<CmdResult>;
  /** The data plane's own counter instead of conntrack (IPVS: its table; conntrack does not see its flows). Throws when unknown. */
  counter?: { source: string; count(pools: PoolSpec[]): Promise<Map<string, number>> };
}

/** Counts every interval and publishes executor.connections (only reals with connections are listed). */
export function startConnectionReports(o: ReporterOptions): ConnectionReporter {
  const interval = o.intervalMs ?? 1000;
  const run = o.run ?? ((argv: string[]) => runCmd(argv, { timeoutMs: 10_000 }));
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let last: Map<string, number> | null = null;
  const tick = async () => {
    if (stopped) return;
    const pools = o.pools();
    const t0 = performance.now();
    if (o.counter) {
      try {
        publish(await o.counter.count(pools), o.counter.source, t0);
      } catch (e) {
        // Unknown, not zero: publish nothing (a drain then waits).
        o.log.warn({ err: (e as Error).message }, "cannot count connections");
        if (!stopped) timer = setTimeout(() => void tick(), interval * 5);
      }
      return;
    }
    const protos = [...new Set(pools.map((p) => p.protocol).filter((p) => p === "tcp" || p === "udp"))];
    const flows: Flow[] = [];
    let failed: string | null = null;
    for (const proto of protos) {
      const r = await run(["conntrack", "-L", "-p", proto]);
      if (r.code === 127) { o.log.warn({ err: r.stderr.trim() }, "conntrack is not installed: no connection counts (drains end at their timeout)"); stopped = true; return; }
      if (r.code !== 0) { failed = `conntrack -L -p ${proto} exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`; break; }
      flows.push(...parseConntrack(r.stdout));
    }
    // Counts we could not read are unknown, not zero: publish nothing (a drain then waits).
    if (failed) { o.log.warn({ err: failed }, "cannot count connections"); if (!stopped) timer = setTimeout(() => void tick(), interval * 5); return; }
    publish(countByReal(flows, pools), "conntrack", t0);
  };
  const publish = (counted: Map<string, number>, source: string, t0: number) => {
    last = counted;
    activeGauge.set([...last.values()].reduce((a, b) => a + b, 0));
    const counts = [...last].map(([k, active]) => { const i = k.lastIndexOf("|"); return { vs: k.slice(0, i), real: k.slice(i + 1), active }; });
    o.bus.publish(subjects.report(o.site, o.node, "connections"),
      makeEvent("executor.connections", { node: o.node, source, counts }, { source: { service: "executor", node: o.node }, configVersion: o.configVersion ?? null }));
    // A huge table makes listing it slow: never spend more than a quarter of the time on it.
    const took = performance.now() - t0;
    if (!stopped) timer = setTimeout(() => void tick(), Math.max(interval, 4 * took));
  };
  timer = setTimeout(() => void tick(), interval);
  return { stop() { stopped = true; if (timer) clearTimeout(timer); }, last: () => last };
}
