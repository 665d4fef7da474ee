// Operator commands inside each controller: turns command.request events into overrides of the
// pool machines (OVERRIDE events) and of floating-group ownership (a planned failover), keeps the
// override map on disk and in step with the other controllers, counts drains down, answers each
// command once this node's executor has applied it (command.ack), and replies to status queries.
import client from "prom-client";
import type { Actor } from "xstate";
import type { ServiceContext } from "../../shared/service.ts";
import { makeEvent, type Event, type EventOf, type DataOf, type OverrideEntry } from "../../shared/schemas/events.ts";
import { realId } from "../../shared/schemas/config.ts";
import { subjects } from "../../shared/subjects.ts";
import { registry } from "../../shared/metrics.ts";
import type { poolMachine, PoolEvent } from "../controller/pool-machine.ts";
import { entriesFor, mergeEntries, behind, overridesFor, pinFor, type OverrideMap, type OperatorOverride, type DrainLookup } from "./overrides.ts";
import { drainStatus, connKey, type ConnReport } from "./drain.ts";
import { loadOverrides, saveOverrides, overridesPath } from "./store.ts";

const commandsTotal = new client.Counter({ name: "lvsflow_operator_commands_total", help: "Operator commands handled by this controller, by action and result", labelNames: ["action", "result"], registers: [registry] });
const overridesGauge = new client.Gauge({ name: "lvsflow_operator_overrides", help: "Operator overrides in force, by kind", labelNames: ["kind"], registers: [registry] });
const failovers = new client.Counter({ name: "lvsflow_failovers_total", help: "Times this node took a floating group over (its first ownership after start included)", labelNames: ["group"], registers: [registry] });
const healthToApplied = new client.Histogram({
  name: "lvsflow_health_to_applied_seconds",
  help: "From a health event's creation to this node's kernel holding the pool decision it caused (seen in the executor's heartbeat)",
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
});

/** How long a node's executor gets to apply a command before the controller answers "failed". */
export const ACK_TIMEOUT_MS = 10_000;
const STATE_EVERY_MS = 5000;

export interface CommandMachines {
  pools: ReadonlyMap<string, Actor<typeof poolMachine>>;
  /** Sends an event to a pool machine (main.ts's path, so journals and replays see it). */
  sendPool: (vs: string, e: PoolEvent) => void;
}

export interface Commands {
  /** Every event the controller remembers (health results: their time, for apply latency). */
  seen(ev: Event): void;
  /** Every decision this controller published. */
  decided(ev: EventOf<"decision.pool"> | EventOf<"decision.owner">): void;
  /** Every heartbeat heard, before the ownership machines get it. */
  heartbeat(ev: EventOf<"node.heartbeat">): void;
  /** A fault to add to `node`'s heartbeat for `group` while an operator failover pins it elsewhere. */
  operatorFault(group: string, node: string, now: number): { fault: string; cause: string } | null;
  /** After a live reload: recompute every pool's overrides (added virtual services get theirs). */
  reload(): void;
  stop(): void;
  health(): { overrides: number; pins: Record<string, string> };
}

interface Pending {
  commandId: string;
  action: DataOf<"command.request">["action"];
  phase: "applied" | "done";
  deadline: number;
  started: number;
  /** Pool: the generation whose application answers it. */
  generation?: number;
  /** Failover: whether this node's executor must hold the group. */
  group?: string;
  hold?: boolean | "role";
  detail: string;
}

export function attachCommands(ctx: ServiceContext, m: CommandMachines): Commands {
  const { site, node, bus, log } = ctx;
  // Live reload replaces ctx.model: always read the configuration in force.
  const M = () => ctx.model;
  const source = { service: "controller" as const, node };
  const path = overridesPath(ctx.stateDir, node);
  const loaded = loadOverrides(path);
  if (loaded.error) log.error({ err: loaded.error }, "operator overrides file unreadable: starting without it; peers will resend theirs");
  const map: OverrideMap = loaded.map;
  if (map.size) log.info({ overrides: [...map.values()].filter((e) => e.value !== null).map((e) => e.key) }, "operator overrides restored from disk");

  const reports = new Map<string, ConnReport>();
  const latched = new Map<string, { done: boolean; why: string }>();
  const lastOv = new Map<string, string>();
  const lastPool = new Map<string, DataOf<"decision.pool">>();
  const lastOwner = new Map<string, DataOf<"decision.owner">>();
  const beats = new Map<string, { at: number; faults: string[]; owned: Set<string>; appliedGeneration: number }>();
  const healthTimes = new Map<string, number>();
  const latencyPending = new Map<number, number>();
  const processed = new Set<string>();
  const drains = new Map<string, string>(); // drain command id → override key, awaiting "done"
  let pending: Pending[] = [];
  let collecting: { id: string; gens: number[] } | null = null;
  let lastStateSent = 0;

  const ack = (commandId: string, status: DataOf<"command.ack">["status"], detail: string, generation: number | null = null, action = "?") => {
    commandsTotal.inc({ action, result: status });
    log[status === "failed" || status === "refused" ? "warn" : "info"]({ commandId, status, detail, generation }, "command answered");
    bus.publish(subjects.commandAck(site, node), makeEvent("command.ack", { commandId, node, status, detail, generation },
      { source, causationId: commandId, correlationId: commandId, configVersion: ctx.configVersion }));
  };

  const persist = (write = true) => {
    if (write) try { saveOverrides(path, map); } catch (e) { log.error({ err: String(e), path }, "could not save operator overrides"); }
    const by: Record<string, number> = { disabled: 0, maintenance: 0, weight: 0, drain: 0, pin: 0 };
    for (const e of map.values()) if (e.value !== null) by[e.kind] = (by[e.kind] ?? 0) + 1;
    for (const [k, n] of Object.entries(by)) overridesGauge.set({ kind: k }, n);
  };
  const publishState = () => {
    lastStateSent = Date.now();
    bus.publish(subjects.commandState(site, node), makeEvent("command.state", { node, entries: [...map.values()] }, { source, configVersion: ctx.configVersion }));
  };

  const drainLookup = (now: number): DrainLookup => (e) => {
    const k = `${e.key}#${e.commandId}`;
    const l = latched.get(k);
    if (l) return l;
    const st = drainStatus(e, reports.values(), now);
    if (st.done) latched.set(k, { done: true, why: st.why });
    return { done: st.done, why: st.why };
  };

  /** Sends each pool machine whose overrides changed its new overrides; `cause` names the command behind it. */
  const reapply = (now: number, cause: (vs: string, ov: Record<string, OperatorOverride>) => string | null) => {
    const lookup = drainLookup(now);
    for (const vs of M().virtualServices) {
      const ov = overridesFor(vs, map, lookup);
      const json = JSON.stringify(ov);
      // First look at a machine: compare with what it holds (nothing, or what a snapshot restored).
      if (!lastOv.has(vs.id)) lastOv.set(vs.id, JSON.stringify(m.pools.get(vs.id)?.getSnapshot().context.overrides ?? {}));
      if (lastOv.get(vs.id) === json) continue;
      lastOv.set(vs.id, json);
      m.sendPool(vs.id, { type: "OVERRIDE", now, overrides: ov, eventId: cause(vs.id, ov) });
    }
  };
  /** Runs `fn` and returns the generations of the pool decisions it caused on behalf of `id`. */
  const collect = (id: string, fn: () => void): number[] => {
    // XState actors process a sent event and emit its decisions synchronously, inside fn().
    const c = { id, gens: [] as number[] };
    collecting = c;
    try { fn(); } finally { collecting = null; }
    return c.gens;
  };
  /** The command behind a virtual service's overrides: the newest entry among its reals. */
  const newestCause = (vsId: string): string | null => {
    const vs = M().virtualServices.find((v) => v.id === vsId);
    let best: OverrideEntry | null = null;
    for (const r of vs?.reals ?? []) {
      const id = realId(r);
      for (const k of [`disabled||${id}`, `maintenance||${id}`, `drain|${vsId}|${id}`, `weight|${vsId}|${id}`]) {
        const e = map.get(k);
        if (e && (!best || e.at > best.at)) best = e;
      }
    }
    return best?.commandId ?? null;
  };

  const describeTargets = (entries: OverrideEntry[]) => [...new Set(entries.filter((e) => e.kind !== "drain" || entries.length === 1).map((e) => e.kind === "pin" ? e.group : `${e.real}${e.vs ? ` in ${e.vs}` : ""}`))].join(", ");

  // ---- a command arrives
  const onCommand = (ev: EventOf<"command.request">) => {
    if (processed.has(ev.id)) return;
    processed.add(ev.id);
    if (processed.size > 10_000) processed.delete(processed.values().next().value!);
    const d = ev.data;
    const now = Date.now();
    const entries = entriesFor(M(), { id: ev.id, at: Date.parse(ev.time), data: d });
    if (typeof entries === "string") { ack(ev.id, "refused", entries, null, d.action); return; }
    if (d.action === "failover" && d.to !== null && d.to !== node) {
      const b = beats.get(d.to);
      if (!b || now - b.at > M().timers.deadMs) { ack(ev.id, "refused", `${d.to} is not alive (no heartbeat for ${b ? now - b.at : "ever"} ms): the group stays where it is`, null, d.action); return; }
    }
    log.info({ commandId: ev.id, action: d.action, by: d.issuedBy, entries: entries.map((e) => `${e.key}=${e.value}`) }, "operator command");
    const changed = mergeEntries(map, entries);
    if (!changed.length) { ack(ev.id, "applied", "superseded: a newer command already set the same overrides", null, d.action); return; }
    persist();
    publishState();
    const what = describeTargets(entries);
    if (d.action === "failover") {
      // Ownership machines re-decide on every heartbeat (every few ms): the pin acts at once.
      pending.push({ commandId: ev.id, action: d.action, phase: "applied", started: now, deadline: now + ACK_TIMEOUT_MS, group: d.group!, hold: d.to === null ? "role" : d.to === node, detail: d.to === null ? `${d.group} follows priorities again` : `${d.group} moves to ${d.to}` });
      return;
    }
    const gens = collect(ev.id, () => reapply(now, () => ev.id));
    const detail = d.action === "drain" ? `${what}: weight 0, no new connections; leaves the pool when its connections end (timeout ${(entries[0]!.value as number) / 1000} s)`
      : d.action === "weight" ? `${what}: weight ${d.weight ?? "as configured"}`
      : d.action === "maintenance" ? `${what}: maintenance ${d.on ? "on (weight 0)" : "off"}`
      : `${what}: ${d.action}d`;
    if (gens.length) pending.push({ commandId: ev.id, action: d.action, phase: "applied", started: now, deadline: now + ACK_TIMEOUT_MS, generation: Math.max(...gens), detail });
    else ack(ev.id, "applied", `${detail} (no change to this node's kernel pool needed)`, null, d.action);
    if (d.action === "drain") { drains.set(ev.id, entries[0]!.key); checkDrains(now); }
  };

  // ---- drains: done when connections end or the timeout passes
  const checkDrains = (now: number) => {
    for (const [id, key] of drains) {
      const e = map.get(key);
      if (!e || e.commandId !== id || e.value === null) {
        drains.delete(id);
        ack(id, "failed", `drain of ${key.split("|").slice(1).join(" ")} cancelled by ${e ? `${e.by} (command ${e.commandId.slice(0, 8)})` : "a newer command"}`, null, "drain");
        continue;
      }
      const st = drainLookup(now)(e);
      if (!st.done) continue;
      drains.delete(id);
      reapply(now, (vs) => (vs === e.vs ? id : newestCause(vs)));
      // Whoever sent the drained override (this call or an earlier refresh), the latest decision
      // for the virtual service is the one to see applied.
      const dec = lastPool.get(e.vs!);
      const detail = `${e.real} left ${e.vs}: ${st.why}`;
      if (dec && !dec.pool.reals.some((r) => realId(r) === e.real)) pending.push({ commandId: id, action: "drain", phase: "done", started: now, deadline: now + ACK_TIMEOUT_MS, generation: dec.generation, detail });
      else ack(id, "done", `${detail} (this node has published no pool decision for it yet)`, null, "drain");
    }
    // Draining overrides carry the live count in their why: refresh them (drains only change with time).
    if ([...map.values()].some((e) => e.kind === "drain" && e.value !== null)) reapply(now, (vs) => newestCause(vs));
  };

  // ---- answers, once this node's executor shows the change
  const settle = (now: number) => {
    const own = beats.get(node);
    const keep: Pending[] = [];
    for (const p of pending) {
      let ok = false;
      if (p.generation !== undefined) ok = !!own && own.appliedGeneration >= p.generation;
      else if (p.group && own) {
        const want = p.hold === "role" ? lastOwner.get(p.group)?.role === "owner" : p.hold;
        ok = own.owned.has(p.group) === want && now - p.started >= 2 * M().timers.heartbeatMs;
      }
      if (ok) {
        const ms = now - p.started;
        const holds = p.group ? (own!.owned.has(p.group) ? `; ${node} holds ${p.group} (term ${lastOwner.get(p.group)?.term ?? "?"})` : `; ${node} does not hold ${p.group}`) : "";
        ack(p.commandId, p.phase, `${p.detail}${holds}; in the kernel after ${ms} ms`, p.generation ?? null, p.action);
      } else if (now > p.deadline) {
        const why = !own ? "no heartbeat from this node's executor" : p.generation !== undefined ? `the executor has applied generation ${own.appliedGeneration}, not ${p.generation}${own.faults.length ? ` (faults: ${own.faults.join(", ")})` : ""}` : `the executor ${own.owned.has(p.group!) ? "still holds" : "does not hold"} ${p.group}`;
        ack(p.commandId, "failed", `${p.detail}: not applied after ${ACK_TIMEOUT_MS / 1000} s: ${why}`, p.generation ?? null, p.action);
      } else keep.push(p);
    }
    pending = keep;
  };

  // ---- catch-up between controllers
  const onState = (ev: EventOf<"command.state">) => {
    if (ev.data.node === node) return;
    const changed = mergeEntries(map, ev.data.entries);
    if (changed.length) {
      log.info({ from: ev.data.node, keys: changed }, "operator overrides learned from a peer");
      persist();
      reapply(Date.now(), (vs) => newestCause(vs));
    }
    if (behind(map, ev.data.entries) && Date.now() - lastStateSent > 500) publishState();
  };

  const onConnections = (ev: EventOf<"executor.connections">) => {
    reports.set(ev.data.node, { node: ev.data.node, at: Date.now(), source: ev.data.source, counts: new Map(ev.data.counts.map((c) => [connKey(c.vs, c.real), c.active])) });
    if (drains.size) checkDrains(Date.now());
  };

  // ---- status queries: this controller's view
  const view = (): DataOf<"controller.view"> => {
    const now = Date.now();
    const pools = M().virtualServices.map((vs) => {
      const snap = m.pools.get(vs.id)?.getSnapshot();
      const c = snap?.context;
      const dec = lastPool.get(vs.id);
      return {
        vs: vs.id,
        state: snap ? String(snap.value) : "unknown",
        fallbackActive: dec?.fallbackActive ?? false,
        reals: vs.reals.map((r) => {
          const id = realId(r);
          const rec = c?.pool.reals[id];
          const inPool = dec?.pool.reals.find((x) => realId(x) === id);
          return {
            real: id, state: rec?.state ?? "unknown", why: rec?.why ?? "not checked yet",
            weight: inPool ? inPool.weight : null,
            admin: c?.overrides[id] ?? null,
            // One per vantage point; a probe group's names the member that checked last.
            checks: Object.entries(rec?.probers ?? {}).map(([key, v]) => ({ prober: v.prober ?? key, ...(v.group ? { group: v.group } : {}), ok: v.ok, streak: v.streak, ageMs: Math.max(0, now - v.at), error: v.error, check: v.check })),
          };
        }),
      };
    });
    const groups = M().groups.map((g) => {
      const d = lastOwner.get(g.name);
      return { group: g.name, state: d ? d.role : "backup", role: d?.role ?? ("backup" as const), term: d?.term ?? 0, pinned: pinFor(g.name, map)?.node ?? null };
    });
    return { node, pools, groups };
  };
  const querySub = bus.nc!.subscribe(subjects.queryView(site));
  void (async () => {
    for await (const q of querySub) {
      if (!q.reply) continue;
      try { bus.publish(q.reply, makeEvent("controller.view", view(), { source, configVersion: ctx.configVersion })); }
      catch (e) { log.warn({ err: String(e) }, "could not answer a status query"); }
    }
  })();

  bus.subscribe(subjects.commandRequestAll(site), ["command.request"], onCommand);
  bus.subscribe(subjects.commandStateAll(site), ["command.state"], onState);
  bus.subscribe(subjects.connectionsAll(site), ["executor.connections"], onConnections);

  // Overrides restored from disk are in force before the first pool decision.
  reapply(Date.now(), (vs) => newestCause(vs));
  persist(false);
  publishState();
  const timer = setInterval(() => {
    const now = Date.now();
    checkDrains(now);
    settle(now);
    if (now - lastStateSent >= STATE_EVERY_MS) publishState();
    for (const [gen, t0] of latencyPending) if (now - t0 > 60_000) latencyPending.delete(gen);
  }, 250);

  return {
    seen(ev) {
      if (ev.type !== "health.result" && ev.type !== "health.summary") return;
      healthTimes.set(ev.id, Date.parse(ev.time));
      if (healthTimes.size > 10_000) healthTimes.delete(healthTimes.keys().next().value!);
    },
    decided(ev) {
      if (ev.type === "decision.pool") {
        lastPool.set(ev.data.pool.vs, ev.data);
        if (collecting && ev.causationId === collecting.id) collecting.gens.push(ev.data.generation);
        const t0 = ev.causationId ? healthTimes.get(ev.causationId) : undefined;
        if (t0 !== undefined) latencyPending.set(ev.data.generation, t0);
      } else {
        const prev = lastOwner.get(ev.data.group);
        if (ev.data.role === "owner" && prev?.role !== "owner") failovers.inc({ group: ev.data.group });
        lastOwner.set(ev.data.group, ev.data);
      }
    },
    heartbeat(ev) {
      const h = ev.data;
      const now = Date.now();
      beats.set(h.node, { at: now, faults: h.faults, owned: new Set(h.owned.map((o) => o.group)), appliedGeneration: h.appliedGeneration });
      if (h.node !== node) return;
      for (const [gen, t0] of latencyPending) {
        if (h.appliedGeneration >= gen) { healthToApplied.observe(Math.max(0, now - t0) / 1000); latencyPending.delete(gen); }
      }
      if (pending.length) settle(now);
    },
    operatorFault(group, n, now) {
      const pin = pinFor(group, map);
      if (!pin || n === pin.node) return null;
      // Only while the chosen node can take the group: if it dies, priorities decide again.
      const b = beats.get(pin.node);
      if (!b || now - b.at > M().timers.deadMs || b.faults.length) return null;
      return { fault: pin.why, cause: pin.commandId };
    },
    reload() { lastOv.clear(); reapply(Date.now(), (vs) => newestCause(vs)); },
    stop() { clearInterval(timer); querySub.unsubscribe(); },
    health() {
      return {
        overrides: [...map.values()].filter((e) => e.value !== null).length,
        pins: Object.fromEntries(M().groups.map((g) => [g.name, pinFor(g.name, map)?.node ?? ""]).filter(([, v]) => v)),
      };
    },
  };
}
