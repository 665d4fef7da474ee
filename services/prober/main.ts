// The prober service: checks every real server of every virtual service and publishes what it
// sees as health.result events (on change, and while a streak still matters to the controller)
// plus one health.summary per interval. It decides nothing: controllers count the streaks.
import client from "prom-client";
import { registry } from "../../shared/metrics.ts";
import { makeEvent } from "../../shared/schemas/events.ts";
import type { Model } from "../../shared/schemas/config.ts";
import type { RunningService, ServiceContext } from "../../shared/service.ts";
import { subjects } from "../../shared/subjects.ts";
import { checkLabel, unsupportedReason, type CheckTarget } from "./checks.ts";
import { loadProbeModule, probeModulesFromEnv } from "./checks/plugins.ts";
import { ProbeScheduler, targetKey, type ProbeResult, type TargetState } from "./scheduler.ts";
import { Membership, heartbeatPeriodMs, ownerOf, probeGroupName } from "./sharing.ts";

const proberMetrics = {
  checks: new client.Counter({
    name: "lvsflow_prober_checks_total", help: "Health checks run, by check and result",
    labelNames: ["check", "result"], registers: [registry],
  }),
  latency: new client.Histogram({
    name: "lvsflow_prober_check_duration_seconds", help: "Duration of health checks (failed ones included)",
    labelNames: ["check"], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
  }),
  skipped: new client.Counter({
    name: "lvsflow_prober_checks_skipped_total", help: "Check slots skipped because the previous check of the real was still running",
    registers: [registry],
  }),
  lateness: new client.Histogram({
    name: "lvsflow_prober_schedule_lateness_seconds", help: "How late checks start against their planned slot (a busy prober falls behind)",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry],
  }),
  targets: new client.Gauge({
    name: "lvsflow_prober_targets", help: "Checked real servers by last result (unknown = no result yet)",
    labelNames: ["state"], registers: [registry],
  }),
};

export interface Prober extends RunningService {
  /** Applies a new configuration: unchanged checks keep their history and schedule. */
  updateModel(model: Model, configVersion?: string): void;
  states(): TargetState[];
  /** Live members of this prober's group (just itself without a group). */
  members(): string[];
}

export interface ProberOptions {
  /**
   * Probe group (--probe-group, LVSFLOW_PROBE_GROUP): probers of one group share the checks
   * instead of each running all of them, and the group is their one vantage point. Without a
   * group every prober checks every real (one vantage point each).
   */
  group?: string | null;
  /** In-process probe modules to load (LVSFLOW_PROBE_MODULES, comma-separated paths). */
  probeModules?: string[];
}

export function targetsOf(model: Model): CheckTarget[] {
  return model.virtualServices.flatMap((vs) => vs.reals.map((real) => ({ vs, real })));
}

/** Results per health.summary message; a prober with more reals sends several per period. */
export const SUMMARY_CHUNK = 1000;

/** Summary period: the smallest check interval of the model, at least one second. */
export function summaryPeriodMs(model: Model): number {
  const min = Math.min(...model.virtualServices.map((vs) => vs.check.interval * 1000));
  return Math.max(1000, Number.isFinite(min) ? min : 1000);
}

export async function startProber(ctx: ServiceContext, opts: ProberOptions = {}): Promise<Prober> {
  const { log, bus, site } = ctx;
  const prober = ctx.node;
  const source = { service: "prober" as const, node: ctx.node };
  let model = ctx.model;
  let configVersion = ctx.configVersion;
  const group = opts.group !== undefined ? probeGroupName(opts.group, "probe group") : probeGroupName(process.env.LVSFLOW_PROBE_GROUP, "LVSFLOW_PROBE_GROUP");

  // Probe plugins first, so the configuration's plugin checks find them.
  for (const path of opts.probeModules ?? probeModulesFromEnv()) {
    try {
      log.info({ module: path, probes: await loadProbeModule(path) }, "probe module loaded");
    } catch (e) {
      // The prober still runs: checks that name a missing probe fail loudly, every time.
      log.error({ module: path, err: e instanceof Error ? e.message : String(e) }, "could not load probe module");
    }
  }

  const publishResult = (r: ProbeResult) => {
    const o = r.outcome;
    if (r.changed) {
      log.info({ vs: r.vs, real: r.real, check: r.check, ok: r.ok, previous: r.previous, error: o.error, httpStatus: o.httpStatus },
        r.ok ? "real server passes its check" : "real server fails its check");
    }
    try {
      const ev = makeEvent("health.result", {
        vs: r.vs, real: r.real, prober, ok: r.ok, streak: r.streak, check: r.check,
        latencyMs: Math.max(0, o.latencyMs), error: o.error, httpStatus: o.httpStatus, matched: o.matched,
        ...(group ? { group } : {}), // the group is the vantage point: its members vote once
      }, { source, configVersion });
      bus.publish(subjects.health(site, prober, r.vs, r.real), ev);
    } catch (e) {
      log.error({ err: String(e), vs: r.vs, real: r.real }, "could not build health.result");
    }
  };

  // Labelled metric children cached per check definition: thousands of checks per second.
  const metricCache = new WeakMap<object, { ok: client.Counter; fail: client.Counter; latency: client.Histogram }>();
  const metricsFor = (c: Model["virtualServices"][number]["check"]) => {
    let m = metricCache.get(c);
    if (!m) {
      const check = checkLabel(c);
      m = {
        ok: proberMetrics.checks.labels({ check, result: "ok" }) as unknown as client.Counter,
        fail: proberMetrics.checks.labels({ check, result: "fail" }) as unknown as client.Counter,
        latency: proberMetrics.latency.labels({ check }) as unknown as client.Histogram,
      };
      metricCache.set(c, m);
    }
    return m;
  };
  let lastSkipLog = 0, skippedSinceLog = 0;

  const sched = new ProbeScheduler({
    onResult: publishResult,
    onCheck: (o, t) => {
      const m = metricsFor(t.vs.check);
      (o.ok ? m.ok : m.fail).inc();
      m.latency.observe(o.latencyMs / 1000);
    },
    onLaunch: (_key, lateMs) => proberMetrics.lateness.observe(Math.max(0, lateMs) / 1000),
    onSkip: (key) => {
      proberMetrics.skipped.inc();
      // At most one line per 10 s: with many dead reals this would otherwise flood the log.
      skippedSinceLog++;
      if (Date.now() - lastSkipLog >= 10_000) {
        log.warn({ target: key, skipped: skippedSinceLog }, "previous check still running; slot(s) skipped (timeout longer than interval?)");
        lastSkipLog = Date.now();
        skippedSinceLog = 0;
      }
    },
  });

  const warnUnsupported = (m: Model) => {
    for (const vs of m.virtualServices) {
      const reason = unsupportedReason(vs);
      // Loud on purpose: these reals will be reported down on every check until the prober learns the check.
      if (reason) log.error({ vs: vs.id, reals: vs.reals.length, reason }, "cannot check this virtual service; its reals will be reported as failing");
    }
  };

  const countOf = (states: TargetState[]) => {
    let up = 0, down = 0, unknown = 0;
    for (const s of states) s.ok === null ? unknown++ : s.ok ? up++ : down++;
    return { targets: up + down + unknown, up, down, unknown };
  };
  const counts = () => countOf(sched.states());

  const publishSummary = () => {
    const now = Date.now();
    const states = sched.states();
    // Reals without a first result yet are left out: absent means unknown, never "down".
    const results = states.filter((s) => s.ok !== null && s.lastCheckAt !== null)
      .map((s) => ({ vs: s.vs, real: s.real, ok: s.ok as boolean, streak: s.streak, ageMs: Math.max(0, now - (s.lastCheckAt as number)) }));
    const c = countOf(states);
    proberMetrics.targets.set({ state: "up" }, c.up);
    proberMetrics.targets.set({ state: "down" }, c.down);
    proberMetrics.targets.set({ state: "unknown" }, c.unknown);
    // In parts of SUMMARY_CHUNK results: 10,000 reals in one message would pass NATS's 1 MB limit.
    for (let i = 0; i === 0 || i < results.length; i += SUMMARY_CHUNK) {
      try {
        bus.publish(subjects.healthSummary(site, prober), makeEvent("health.summary", { prober, ...(group ? { group } : {}), intervalMs: periodMs, results: results.slice(i, i + SUMMARY_CHUNK) }, { source, configVersion }));
      } catch (e) {
        log.error({ err: String(e) }, "could not build health.summary");
      }
    }
  };

  let periodMs = summaryPeriodMs(model);
  let summaryTimer: ReturnType<typeof setInterval> | null = setInterval(publishSummary, periodMs);

  // Sharing: this prober runs the targets it owns among the group's live members.
  const membership = group ? new Membership(prober) : null;
  let members = [prober];
  const minIntervalMs = () => Math.min(1000 * 3600, ...model.virtualServices.map((vs) => vs.check.interval * 1000));
  const assign = (firstWithinMs?: number) => {
    const all = targetsOf(model);
    const mine = membership ? all.filter((t) => ownerOf(targetKey(t), members) === prober) : all;
    sched.setTargets(mine, { firstWithinMs });
    return mine.length;
  };
  const reassign = (why: string) => {
    const before = sched.size;
    // Inherited reals get their first check within a quarter interval: a takeover stays inside one interval.
    const n = assign(minIntervalMs() / 4);
    log.info({ group, members, targets: n, before, why }, "probe group changed; checks reassigned");
  };
  let hbSeq = 0;
  let hbTimer: ReturnType<typeof setInterval> | null = null;
  let hbPeriod = heartbeatPeriodMs(minIntervalMs());
  const publishHeartbeat = (leaving = false) => {
    if (!group) return;
    try {
      bus.publish(subjects.proberHeartbeat(site, group, prober), makeEvent("prober.heartbeat",
        { prober, group, seq: hbSeq++, periodMs: hbPeriod, leaving, targets: sched.size }, { source, configVersion }));
    } catch (e) {
      log.error({ err: String(e) }, "could not publish prober.heartbeat");
    }
  };
  const sub = group && membership ? bus.subscribe(subjects.proberHeartbeatAll(site, group), ["prober.heartbeat"], (ev) => {
    if (ev.data.group !== group) return;
    if (membership.heard(ev.data.prober, Date.now(), ev.data.periodMs, ev.data.leaving)) {
      members = membership.alive(Date.now());
      reassign(ev.data.leaving ? `${ev.data.prober} left` : `${ev.data.prober} joined`);
    }
  }) : null;
  let lastTick = Date.now(), skipped = 0;
  const tickMembership = () => {
    publishHeartbeat();
    const now = Date.now(), late = now - lastTick - hbPeriod;
    lastTick = now;
    // A silence we did not listen to is no evidence: after a stall of our own (this tick came a
    // period late) judge nobody this round, and otherwise judge only after the heartbeats that
    // arrived meanwhile were absorbed (setImmediate runs after pending I/O). Without this a starved
    // prober dropped its peers and took every real, which starved it further (seen in bench/probes).
    if (late > hbPeriod && skipped++ < 3) return; // bounded: a prober starved for good still takes over
    skipped = 0;
    setImmediate(() => {
      if (!membership || !membership.expire(Date.now(), members)) return;
      const gone = members.filter((m) => !membership.alive(Date.now()).includes(m));
      members = membership.alive(Date.now());
      reassign(gone.length ? `${gone.join(", ")} stopped sending heartbeats` : "membership changed");
    });
  };

  warnUnsupported(model);
  if (group) {
    // Hear the group for a moment before taking a share, so a joining prober does not start
    // every check of the site only to drop most of them a heartbeat later.
    publishHeartbeat();
    await new Promise((r) => setTimeout(r, Math.min(1500, hbPeriod * 1.5)));
    members = membership!.alive(Date.now());
    hbTimer = setInterval(tickMembership, hbPeriod);
  }
  assign();
  sched.start();
  log.info({ targets: sched.size, virtualServices: model.virtualServices.length, summaryMs: periodMs, group, members }, "prober started");

  return {
    health: () => ({ ok: true, ...counts(), ...(group ? { group, members: members.length } : {}) }),
    states: () => sched.states(),
    members: () => [...members],
    updateModel(next: Model, nextVersion?: string) {
      model = next;
      if (nextVersion) configVersion = nextVersion;
      warnUnsupported(model);
      assign();
      const hp = heartbeatPeriodMs(minIntervalMs());
      if (hbTimer && hp !== hbPeriod) {
        clearInterval(hbTimer);
        hbPeriod = hp;
        hbTimer = setInterval(tickMembership, hbPeriod);
      }
      const p = summaryPeriodMs(model);
      if (p !== periodMs && summaryTimer) {
        clearInterval(summaryTimer);
        periodMs = p;
        summaryTimer = setInterval(publishSummary, periodMs);
      }
      log.info({ targets: sched.size }, "prober configuration updated");
    },
    async stop() {
      if (summaryTimer) clearInterval(summaryTimer);
      summaryTimer = null;
      if (hbTimer) clearInterval(hbTimer);
      hbTimer = null;
      sub?.unsubscribe();
      // Tell the group at once, so the others take over without waiting for missed heartbeats.
      if (group) publishHeartbeat(true);
      sched.stop();
      log.info("prober stopped");
    },
  };
}
