// The executor of one LB node: applies this node's decisions to the kernel (virtual services
// through a driver, floating addresses with ip + gratuitous ARP), reports what it did, and
// heartbeats. Fail static: without bus or controller, the kernel keeps its last good state.
import { join } from "node:path";
import { readFileSync } from "node:fs";
import client from "prom-client";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { makeEvent, type EventOf, type PoolSpec } from "../../shared/schemas/events.ts";
import type { FloatingAddress } from "../../shared/schemas/config.ts";
import { subjects } from "../../shared/subjects.ts";
import { registry } from "../../shared/metrics.ts";
import { chooseDriver } from "./driver.ts";
import type { IpvsHost } from "./ipvs/host.ts";
import { readAddresses, ensureAddresses, sendGarp, garpSchedule } from "./addresses.ts";
import { loadState, saveState } from "./state.ts";
import { checkPoolDecision, checkOwnerDecision } from "./guard.ts";
import { startConnectionReports } from "../commands/connections.ts";
import { drainMs, expired, nextDrains, withDrains, type Drain } from "./drain.ts";

const applyLatency = new client.Histogram({ name: "lvsflow_executor_apply_seconds", help: "Kernel apply duration", labelNames: ["kind"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
const applyFailures = new client.Counter({ name: "lvsflow_executor_apply_failures_total", help: "Kernel applies of virtual services that failed (the node reports a fault and steps down)", registers: [registry] });
const refused = new client.Counter({ name: "lvsflow_executor_decisions_refused_total", help: "Decisions refused (stale term, wrong node, outside configuration)", labelNames: ["reason"], registers: [registry] });
const heldGauge = new client.Gauge({ name: "lvsflow_executor_group_held", help: "1 while this node holds the group's addresses", labelNames: ["group"], registers: [registry] });

interface PoolEntry { generation: number; spec: PoolSpec; eventId: string; correlationId: string | null }
interface GroupEntry {
  generation: number; role: "owner" | "backup"; term: number; addresses: FloatingAddress[]; garp: number[]; eventId: string; correlationId: string | null;
  /** Quorum mode: hold only until then unless an owner.lease renews it (null: no lease). */
  leaseUntil?: number | null;
}

export interface ExecutorOptions {
  /** Where the IPVS driver runs ipvsadm (default: this machine); the kernel test passes its VM. */
  ipvsHost?: IpvsHost;
}

export async function startExecutor(ctx: ServiceContext, opts: ExecutorOptions = {}): Promise<RunningService> {
  const { site, node, bus, log } = ctx;
  let model = ctx.model; // replaced by updateModel (live reload)
  const source = { service: "executor" as const, node };
  const statePath = join(ctx.stateDir, `executor-${node}.json`);
  const state = loadState(statePath);
  const driver = await chooseDriver(model.global.driver, { model, log, host: opts.ipvsHost });
  let priority = model.nodes.find((n) => n.name === node)?.priority ?? 0;
  const startedAt = new Date().toISOString();
  const pools = new Map<string, PoolEntry>();
  const groups = new Map<string, GroupEntry>();
  const held = new Map<string, boolean>();
  const cancelGarp = new Map<string, () => void>();
  let applyFault: string | null = null;
  let seq = 0;
  let stopping = false;
  let quorum = new Set([...model.nodes.map((n) => n.name), ...(model.global.witnesses ?? [])]).size >= 3;

  // What does the kernel hold right now? Addresses of a group all present = held (fail static).
  const present = await readAddresses().catch(() => []);
  for (const g of model.groups) {
    const all = g.addresses.every((a) => present.some((p) => p.address === a.address && p.interface === a.interface));
    held.set(g.name, all);
    if (all) log.info({ group: g.name, term: state.terms[g.name] ?? 0 }, "found the group's addresses in the kernel: keeping them until told otherwise");
  }

  const report = (kind: "pool" | "owner" | "resync", r: { ok: boolean; ops: string[]; error: string | null; readback: string | null; durationMs: number }, generation: number, cause: { eventId: string; correlationId: string | null } | null) => {
    const ev = makeEvent("executor.applied", { node, kind, generation, ok: r.ok, ops: r.ops, durationMs: r.durationMs, error: r.error, readback: r.readback, subject: null },
      { source, causationId: cause?.eventId ?? null, correlationId: cause?.correlationId ?? cause?.eventId ?? null, configVersion: ctx.configVersion });
    bus.publish(subjects.report(site, node, kind), ev);
  };

  // ---- virtual services: one reconcile at a time, coalescing decisions that arrive meanwhile
  let applying = false;
  let dirty = false;
  let lastCause: PoolEntry | null = null;
  // Reals a configuration change removed, kept at weight 0 while they drain (drain.ts).
  const drains = new Map<string, Map<string, Drain>>();
  let appliedOnce = false;
  const applyPools = async () => {
    if (applying) { dirty = true; return; }
    // Never apply a partial desired state at start: that would delete the services we have not
    // heard of yet. A virtual service a reload added is simply not in the kernel until decided.
    if (!appliedOnce && !model.virtualServices.every((v) => pools.has(v.id))) return;
    applying = true;
    try {
      do {
        dirty = false;
        const cause = lastCause;
        const now = Date.now();
        const desired = [...pools.values()].map((p) => withDrains(p.spec, drains.get(p.spec.vs), now));
        const t0 = performance.now();
        await driver.ensureSysctls({ routeLocalnet: desired.some((p) => p.fallback?.address.startsWith("127.")) });
        const r = await driver.apply(desired);
        applyLatency.observe({ kind: "pool" }, (performance.now() - t0) / 1000);
        applyFault = r.ok ? null : `kernel apply failing: ${r.error}`;
        if (!r.ok) applyFailures.inc();
        const gen = Math.max(...[...pools.values()].map((p) => p.generation));
        if (r.ok) { state.appliedGeneration = gen; saveState(statePath, state); appliedOnce = true; }
        if (r.ops.length || !r.ok) {
          log[r.ok ? "info" : "error"]({ ops: r.ops.length, error: r.error, readback: r.readback, ms: Math.round(r.durationMs), causationId: cause?.eventId ?? null, correlationId: cause?.correlationId ?? cause?.eventId ?? null }, r.ok ? "applied virtual services" : "apply failed");
          report("pool", r, gen, cause);
        }
        if (r.drift?.length) bus.publish(subjects.report(site, node, "drift"), makeEvent("executor.drift", { node, found: r.drift, repaired: r.ok }, { source, causationId: cause?.eventId ?? null, correlationId: cause?.correlationId ?? cause?.eventId ?? null, configVersion: ctx.configVersion }));
      } while (dirty);
    } finally {
      applying = false;
    }
  };

  // A refused decision (another node's, an older term's, outside the configuration) is reported to
  // the audit history as bus.rejected, not only logged: a forged or stale order leaves a trace.
  // At most one report per reason and target a minute, so a re-sent decision cannot flood it.
  const lastRefusal = new Map<string, number>();
  const refuse = (ev: EventOf<"decision.pool" | "decision.owner">, subject: string, reason: string, detail: string) => {
    refused.inc({ reason });
    const key = `${reason}|${ev.type === "decision.pool" ? ev.data.pool.vs : ev.data.group}`;
    if (Date.now() - (lastRefusal.get(key) ?? -Infinity) < 60_000) return;
    lastRefusal.set(key, Date.now());
    bus.publish(subjects.rejected(site, "executor", node), makeEvent("bus.rejected", { subject, reason: `${ev.type} refused (${reason}): ${detail}`.slice(0, 500), service: "executor" },
      { source, causationId: ev.id, correlationId: ev.correlationId ?? ev.id, configVersion: ctx.configVersion }));
  };

  // During a reload the controller may decide under the new configuration before this executor
  // runs it: such a decision that this model would refuse, or that drops a real (whose drain
  // depends on the new quiescent), waits for our own reload, at most PARK_MS, then is taken as is.
  const PARK_MS = 3000;
  const parked = new Map<string, { ev: EventOf<"decision.pool">; subject: string; timer: ReturnType<typeof setTimeout> }>();
  const unpark = (vs: string) => {
    const p = parked.get(vs);
    if (!p) return;
    clearTimeout(p.timer);
    parked.delete(vs);
    onPool(p.ev, p.subject, true);
  };
  const onPool = (ev: EventOf<"decision.pool">, subject = "", unparked = false) => {
    const d = ev.data;
    if (d.node !== node) { refuse(ev, subject, "other-node", `for node ${d.node}`); log.warn({ eventId: ev.id, for: d.node }, "refused a decision for another node"); return; }
    const bad = checkPoolDecision(model, d);
    const cur = pools.get(d.pool.vs);
    const drops = !!cur && cur.spec.reals.some((r) => !d.pool.reals.some((x) => x.address === r.address && x.port === r.port));
    if (!unparked && ev.configVersion && ev.configVersion !== ctx.configVersion && (bad || drops)) {
      const prev = parked.get(d.pool.vs);
      // The latest decision waits; the deadline stays that of the first (re-sends do not extend it).
      if (prev) Object.assign(prev, { ev, subject });
      else parked.set(d.pool.vs, { ev, subject, timer: setTimeout(() => unpark(d.pool.vs), PARK_MS) });
      return;
    }
    if (bad) { refuse(ev, subject, "outside-config", bad); log.error({ eventId: ev.id, reason: bad }, "refused decision"); return; }
    if (cur && d.generation < cur.generation) { refused.inc({ reason: "old-generation" }); return; }
    const entry = { generation: d.generation, spec: d.pool, eventId: ev.id, correlationId: ev.correlationId };
    const vsConf = model.virtualServices.find((v) => v.id === d.pool.vs);
    drains.set(d.pool.vs, nextDrains(cur?.spec, d.pool, drains.get(d.pool.vs) ?? new Map(), drainMs(vsConf?.quiescent ?? false, d.pool), Date.now()));
    pools.set(d.pool.vs, entry);
    // A re-sent decision (same generation) still triggers a reconcile: it repairs drift.
    if (!cur || cur.generation !== d.generation) lastCause = entry;
    void applyPools();
  };

  // ---- floating address groups
  // One apply at a time per group, always of the entry current when it runs: a repair started
  // as owner must never re-add what a release that came in meanwhile has just removed.
  const groupChain = new Map<string, Promise<void>>();
  const adding = new Set<string>();
  const applyGroup = (g0: GroupEntry, name: string, reason: "decision" | "repair"): Promise<void> => {
    const run = () => applyGroupNow(groups.get(name) ?? g0, name, reason);
    const p = (groupChain.get(name) ?? Promise.resolve()).then(run, run);
    groupChain.set(name, p);
    return p;
  };
  const applyGroupNow = async (g: GroupEntry, name: string, reason: "decision" | "repair") => {
    // Quorum mode: never add under a lease that ran out while this apply waited its turn.
    if (g.role === "owner" && g.leaseUntil != null && Date.now() > g.leaseUntil) {
      groups.set(name, g = { ...g, role: "backup", leaseUntil: null });
      log.warn({ group: name, term: g.term }, "lease ran out before the addresses were added: not adding them");
    }
    const want = g.role === "owner";
    const t0 = performance.now();
    let ops: string[] = [];
    let error: string | null = null;
    // While addresses are being added the heartbeat already says "held": peers must not count
    // this node as released in the middle of a takeover.
    if (want) adding.add(name);
    try {
      ops = await ensureAddresses(g.addresses, want);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    } finally {
      adding.delete(name);
    }
    const wasHeld = held.get(name) ?? false;
    held.set(name, want && !error);
    heldGauge.set({ group: name }, want && !error ? 1 : 0);
    applyLatency.observe({ kind: "owner" }, (performance.now() - t0) / 1000);
    if (want && !wasHeld && !error) {
      // Takeover: tell the neighbours where the addresses live now, on keepalived's schedule.
      cancelGarp.get(name)?.();
      cancelGarp.set(name, garpSchedule(g.garp, () => { for (const a of g.addresses) sendGarp(a.address, a.interface); }));
      ops.push(`garp ${g.addresses.map((a) => a.address).join(",")} at ${g.garp.join(",")} ms`);
    }
    if (!want) { cancelGarp.get(name)?.(); cancelGarp.delete(name); }
    if (ops.length || error) {
      const r = { ok: !error, ops, error, readback: `${name}: ${want ? "held" : "released"}`, durationMs: performance.now() - t0 };
      if (reason === "repair") {
        log.warn({ group: name, ops }, "repaired address drift");
        bus.publish(subjects.report(site, node, "drift"), makeEvent("executor.drift", { node, found: ops, repaired: !error }, { source, causationId: g.eventId, correlationId: g.correlationId, configVersion: ctx.configVersion }));
      } else {
        log.info({ group: name, role: g.role, term: g.term, ops, error, causationId: g.eventId, correlationId: g.correlationId ?? g.eventId }, "applied ownership");
        report("owner", r, g.generation, g);
      }
    }
  };

  const onOwner = async (ev: EventOf<"decision.owner">, subject = "") => {
    const d = ev.data;
    if (d.node !== node) { refuse(ev, subject, "other-node", `for node ${d.node}`); log.warn({ eventId: ev.id, for: d.node }, "refused a decision for another node"); return; }
    const bad = checkOwnerDecision(model, d);
    if (bad) { refuse(ev, subject, "outside-config", bad); log.error({ eventId: ev.id, reason: bad }, "refused decision"); return; }
    const known = Math.max(state.terms[d.group] ?? 0, groups.get(d.group)?.term ?? 0);
    if (d.term < known) { refuse(ev, subject, "old-term", `term ${d.term} < ${known} for group ${d.group}`); log.warn({ group: d.group, term: d.term, known }, "ignored a decision from an older term"); return; }
    const cur = groups.get(d.group);
    if (cur && d.generation < cur.generation) { refused.inc({ reason: "old-generation" }); return; }
    if (cur && cur.generation === d.generation) return; // re-sent; the repair loop covers drift
    const g: GroupEntry = { generation: d.generation, role: d.role, term: d.term, addresses: d.addresses, garp: d.garpScheduleMs, eventId: ev.id, correlationId: ev.correlationId,
      leaseUntil: d.role === "owner" && d.leaseMs != null ? Date.now() + d.leaseMs : null };
    groups.set(d.group, g);
    state.terms[d.group] = d.term;
    saveState(statePath, state);
    await applyGroup(g, d.group, "decision");
    // IPVS: the connection sync daemon follows the group (master on its owner, backup elsewhere).
    if (driver.onOwnership) await driver.onOwnership(d.group, d.role).then((ops) => { if (ops.length) log.info({ group: d.group, role: d.role, ops }, "sync daemon switched"); }, (e: Error) => log.error({ group: d.group, err: e.message }, "sync daemon switch failed"));
  };

  // Owners re-add missing addresses; non-owners remove stale ones (no split brain left behind).
  const repair = setInterval(() => { for (const [name, g] of groups) void applyGroup(g, name, "repair"); }, 1000);

  /** Lets a group go on this node's own authority (lease expired, newer term seen, stopping). */
  const releaseLocally = (name: string, why: string) => {
    const g = groups.get(name);
    if (!g || g.role !== "owner") return;
    groups.set(name, { ...g, role: "backup", leaseUntil: null });
    log.warn({ group: name, term: g.term, why }, "released the group's addresses");
    void applyGroup(g, name, "decision");
  };
  // Quorum mode: the controller renews the lease while a majority votes for this node. Without
  // renewals (controller dead, bus gone, partition) the addresses go before the majority may move.
  const onLease = (ev: EventOf<"owner.lease">) => {
    const d = ev.data, g = groups.get(d.group);
    if (d.node !== node || !g || g.role !== "owner" || g.term !== d.term || g.leaseUntil == null) return;
    // Same host, same clock: the controller's deadline, not "now + leaseMs" late by the transit.
    g.leaseUntil = Math.max(g.leaseUntil, Math.min(Date.now() + d.leaseMs, d.untilMs ?? Infinity));
  };
  const leaseTimer = setInterval(() => {
    const t = Date.now();
    for (const [name, g] of groups) if (g.role === "owner" && g.leaseUntil != null && t > g.leaseUntil) releaseLocally(name, `lease expired ${t - g.leaseUntil} ms ago (no renewal from the controller)`);
  }, 10);
  // Another node holding a group under a newer term (or the same term with a better priority):
  // let go at once, without waiting for our controller (it may be slow, stopped or cut off).
  let prio = new Map(model.nodes.map((n) => [n.name, n.priority]));
  const onPeerHeartbeat = (ev: EventOf<"node.heartbeat">) => {
    const h = ev.data;
    if (h.node === node) return;
    for (const o of h.owned) {
      const g = groups.get(o.group);
      if (!g || g.role !== "owner") continue;
      const theirs = prio.get(h.node) ?? h.priority;
      if (o.term > g.term || (o.term === g.term && (theirs > priority || (theirs === priority && h.node < node)))) releaseLocally(o.group, `${h.node} holds it under term ${o.term} (mine ${g.term})`);
    }
  };

  // ---- faults and heartbeats
  let ifaces = [...new Set(model.groups.flatMap((g) => g.addresses.map((a) => a.interface)))];
  const faults = (): string[] => {
    const f: string[] = [];
    for (const i of ifaces) {
      let st = "missing";
      try { st = readFileSync(`/sys/class/net/${i}/operstate`, "utf8").trim(); } catch { /* missing */ }
      if (st !== "up" && st !== "unknown") f.push(`interface ${i} ${st}`);
    }
    if (applyFault) f.push(applyFault);
    if (stopping) f.push("stopping");
    return f;
  };
  const beat = () => {
    const owned = [...new Set([...[...held].filter(([, h]) => h).map(([g]) => g), ...adding])].map((group) => ({ group, term: state.terms[group] ?? 0 }));
    const ownerGenerations = Object.fromEntries([...groups].map(([name, g]) => [name, g.generation]));
    bus.publish(subjects.heartbeat(site, node), makeEvent("node.heartbeat", { node, priority, seq: seq++, startedAt, appliedGeneration: state.appliedGeneration, owned, ownerGenerations, faults: faults(), driver: driver.kind }, { source, configVersion: ctx.configVersion }));
  };
  const hb = setInterval(beat, model.timers.heartbeatMs);
  // Active connections per real (conntrack; IPVS: its own table), for operator drains and status.
  const count = driver.countConnections?.bind(driver);
  const conns = startConnectionReports({ site, node, bus, log, configVersion: ctx.configVersion, pools: () => [...pools.values()].map((p) => p.spec), counter: count && { source: driver.kind, count } });

  bus.subscribe(subjects.decisionsFor(site, node), ["decision.pool", "decision.owner"], (ev, subject) => (ev.type === "decision.pool" ? onPool(ev, subject) : onOwner(ev, subject)));
  bus.subscribe(subjects.leasesFor(site, node), ["owner.lease"], onLease);
  // (A role that may not read heartbeats gets this subscription refused; the controller still releases.)
  bus.subscribe(subjects.heartbeatAll(site), ["node.heartbeat"], onPeerHeartbeat);
  beat();

  /**
   * A graceful stop hands the floating addresses over (like keepalived's priority-0 advert and
   * heartbeat's shutdown): heartbeats say "stopping" so a peer takes over now. VRRP mode: keep
   * forwarding until the peer holds a newer term (bounded), then let go: no gap. Quorum mode:
   * let go first, then say so: no overlap. The nftables rules stay (the standby has them too).
   * A crash or SIGKILL leaves everything in place (fail static).
   */
  const handOver = async () => {
    stopping = true;
    const mine = () => [...groups].filter(([, g]) => g.role === "owner").map(([n]) => n);
    if (mine().length && bus.connected) {
      beat();
      if (!quorum) {
        const until = Date.now() + 2 * model.timers.deadMs;
        while (mine().length && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      }
    }
    for (const n of mine()) releaseLocally(n, "stopping: handing over");
    await Promise.all([...groupChain.values()]);
    beat();
  };

  // A drain that ran out: apply again without it.
  const drainTimer = setInterval(() => {
    const now = Date.now();
    if ([...drains.values()].some((d) => expired(d, now))) {
      for (const [vs, d] of drains) drains.set(vs, new Map([...d].filter(([, x]) => x.until > now)));
      void applyPools();
    }
  }, 1000);

  /**
   * Live reload: the guard checks decisions against the new model from now on; pools of removed
   * virtual services are dropped, so the reconcile removes them from the kernel (unchanged ones
   * are not touched); addresses that left a group, and whole removed groups, are released.
   */
  const updateModel = async (next: typeof model, version: string) => {
    const prev = model;
    model = next;
    ctx.model = next;
    ctx.configVersion = version;
    priority = next.nodes.find((n) => n.name === node)?.priority ?? 0;
    prio = new Map(next.nodes.map((n) => [n.name, n.priority]));
    ifaces = [...new Set(next.groups.flatMap((g) => g.addresses.map((a) => a.interface)))];
    quorum = new Set([...next.nodes.map((n) => n.name), ...(next.global.witnesses ?? [])]).size >= 3;
    if (prev.global.driver !== next.global.driver) log.warn({ from: prev.global.driver, to: next.global.driver }, "a driver change takes effect at the next executor start");
    if (prev.timers.heartbeatMs !== next.timers.heartbeatMs) log.warn("a heartbeat period change takes effect at the next executor start");
    // The driver's own settings (IPVS: fallbacks, scheduler flags, sysctls, sync daemon): in force
    // from the reconcile started here.
    const driverChanges = driver.reload(next);
    if (driverChanges.length) { log.info({ changed: driverChanges }, "data-plane settings reloaded: applying them now"); void applyPools(); }
    const keep = new Set(next.virtualServices.map((v) => v.id));
    // Decisions that waited for this configuration are taken now.
    for (const vs of [...parked.keys()]) unpark(vs);
    const removed = [...pools.keys()].filter((id) => !keep.has(id));
    for (const id of removed) { pools.delete(id); drains.delete(id); }
    if (removed.length) { log.info({ removed }, "virtual services removed from the configuration: removing them from the kernel"); void applyPools(); }
    const sameAddr = (a: FloatingAddress, b: FloatingAddress) => a.address === b.address && a.prefix === b.prefix && a.interface === b.interface;
    for (const pg of prev.groups) {
      const ng = next.groups.find((g) => g.name === pg.name);
      const cur = groups.get(pg.name);
      const gone = ng ? pg.addresses.filter((a) => !ng.addresses.some((b) => sameAddr(a, b))) : pg.addresses;
      if (!gone.length && ng && cur && cur.garp.join() === ng.garpScheduleMs.join()) continue;
      if (!ng) {
        // The group is no longer managed: release what this node holds of it, then forget it.
        log.info({ group: pg.name }, "floating group removed from the configuration: releasing its addresses");
        if (cur) { groups.set(pg.name, { ...cur, role: "backup", leaseUntil: null }); await applyGroup(cur, pg.name, "decision"); }
        else if (held.get(pg.name)) await ensureAddresses(pg.addresses, false).catch((e: Error) => log.error({ group: pg.name, err: e.message }, "release failed"));
        groups.delete(pg.name);
        held.delete(pg.name);
        heldGauge.set({ group: pg.name }, 0);
        continue;
      }
      if (gone.length) await ensureAddresses(gone, false).then((ops) => ops.length && log.info({ group: pg.name, ops }, "released addresses that left the group"), (e: Error) => log.error({ group: pg.name, err: e.message }, "release failed"));
      if (cur) {
        groups.set(pg.name, { ...cur, addresses: ng.addresses, garp: ng.garpScheduleMs });
        await applyGroup(cur, pg.name, "decision");
      }
    }
  };

  return {
    updateModel,
    async stop() { for (const p of parked.values()) clearTimeout(p.timer); clearInterval(drainTimer); clearInterval(repair); clearInterval(leaseTimer); await handOver().catch((e: Error) => log.error({ err: e.message }, "handover failed")); clearInterval(hb); conns.stop(); for (const c of cancelGarp.values()) c(); },
    health() {
      const f = faults();
      return { ok: f.length === 0, faults: f, bus: bus.connected, appliedGeneration: state.appliedGeneration, held: Object.fromEntries(held), services: pools.size };
    },
  };
}
