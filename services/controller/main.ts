// The controller of one LB node: a pool machine per virtual service and an ownership machine
// per floating address group. Health and heartbeats in; decisions for this node's executor out.
import { createActor, type Actor } from "xstate";
import client from "prom-client";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { makeEvent, type Event, type EventOf } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";
import { registry } from "../../shared/metrics.ts";
import { poolMachine } from "./pool-machine.ts";
import { vantageKey } from "./pool-logic.ts";
import { ownershipMachine } from "./ownership-machine.ts";
import { alive, ownsForView, type OwnDecisions, type OwnExecutorView, leaseFor, selfEligible, quorumMode } from "./ownership-logic.ts";
import { Hearing } from "./hearing.ts";
import { attachCommands, type Commands } from "../commands/controller-side.ts";
import { ControllerState } from "./snapshot.ts";

const decisionsTotal = new client.Counter({ name: "lvsflow_controller_decisions_total", help: "Decisions published", labelNames: ["kind"], registers: [registry] });
const termGauge = new client.Gauge({ name: "lvsflow_controller_term", help: "Ownership term per group", labelNames: ["group"], registers: [registry] });
const roleGauge = new client.Gauge({ name: "lvsflow_controller_owner", help: "1 while this node is the group's owner", labelNames: ["group"], registers: [registry] });

/** Generations grow across restarts too: never below the wall clock in ms. */
export function generations(): () => number {
  let last = 0;
  return () => (last = Math.max(last + 1, Date.now()));
}

export async function startController(ctx: ServiceContext): Promise<RunningService> {
  const { site, node, bus, log } = ctx;
  let model = ctx.model; // replaced by updateModel (live reload)
  const nextGen = generations();
  const now = () => Date.now();
  const source = { service: "controller" as const, node };
  const latest = new Map<string, { subject: string; ev: Event }>(); // re-sent so restarted executors converge
  let self = model.nodes.find((n) => n.name === node);
  if (!self) log.warn({ node, nodes: model.nodes.map((n) => n.name) }, "this node is not in the configuration's nodes: it will never own a group");

  const correlation = new Map<string, string | null>(); // event id → its correlation id
  const corrOf = (id: string | null) => (id ? correlation.get(id) ?? id : null);
  let cmds: Commands | null = null; // operator commands, attached once the machines exist
  const remember = (ev: Event) => {
    cmds?.seen(ev);
    correlation.set(ev.id, ev.correlationId ?? ev.id);
    if (correlation.size > 10_000) correlation.delete(correlation.keys().next().value!);
  };
  // Per group: our last "owner" decision and the release after it (ownsForView).
  const ownDecisions = new Map<string, OwnDecisions>();
  const send = (key: string, subject: string, ev: Event) => {
    latest.set(key, { subject, ev });
    if (ev.type === "decision.owner") {
      const d = ownDecisions.get(ev.data.group) ?? { owner: null, release: null };
      ownDecisions.set(ev.data.group, ev.data.role === "owner"
        ? { owner: { generation: ev.data.generation, term: ev.data.term }, release: null }
        : { ...d, release: d.owner ? { generation: ev.data.generation, at: Date.parse(ev.time) } : null });
    }
    bus.publish(subject, ev);
  };
  // Machine snapshots in Redis (restored here, bounded wait) and the input journal for replay.
  const cs = await ControllerState.open(ctx);

  const pools = new Map<string, Actor<typeof poolMachine>>();
  const createPool = (vs: (typeof model.virtualServices)[number]) => {
    const a = cs.create(`pool:${vs.id}`, poolMachine, { vs, policy: model.global.vantagePolicy, now: now() });
    a.on("decision", (d) => {
      const ev = makeEvent("decision.pool", { node, generation: nextGen(), pool: d.pool, changes: d.changes, fallbackActive: d.fallbackActive, ...(d.operator ? { operator: d.operator } : {}) },
        { source, causationId: d.causationId, correlationId: corrOf(d.causationId), configVersion: ctx.configVersion });
      cs.decided(ev);
      decisionsTotal.inc({ kind: "pool" });
      log.info({ vs: vs.id, reals: d.pool.reals.map((r) => `${r.address}:${r.port}/${r.weight}`), fallback: d.fallbackActive, changes: d.changes, eventId: ev.id, causationId: ev.causationId, correlationId: ev.correlationId }, "pool decision");
      send(`pool:${vs.id}`, subjects.decisionPool(site, node, vs.id), ev);
      cmds?.decided(ev);
    });
    a.start();
    pools.set(vs.id, a);
    const restored = cs.restoredDecision(`pool:${vs.id}`);
    if (restored) send(`pool:${vs.id}`, subjects.decisionPool(site, node, vs.id), restored);
  };
  for (const vs of model.virtualServices) createPool(vs);

  // Quorum mode with LB nodes + witnesses >= 3 voters (ownership-logic.ts); VRRP mode below that.
  let voters = [...new Set([...model.nodes.map((n) => n.name), ...(model.global.witnesses ?? [])])];
  let Q = quorumMode(voters);
  const owners = new Map<string, Actor<typeof ownershipMachine>>();
  const createOwner = (g: (typeof model.groups)[number]) => {
    const a = cs.create(`owner:${g.name}`, ownershipMachine, { self: node, group: g.name, priority: self?.priority ?? 0, preempt: g.preempt, preemptDelayMs: g.preemptDelayMs, deadMs: model.timers.deadMs, now: now(), voters, stepDownWithoutReals: g.stepDownWithoutReals });
    a.on("decision", (d) => {
      // Quorum mode: a first lease of one guard time; owner.lease renewals extend it every tick.
      const leaseMs = Q && d.role === "owner" ? Math.round(model.timers.deadMs / 3) : null;
      const ev = makeEvent("decision.owner", { node, generation: nextGen(), group: g.name, role: d.role, term: d.term, owner: d.owner, addresses: g.addresses, garpScheduleMs: g.garpScheduleMs, why: d.why, leaseMs },
        { source, causationId: d.causationId, correlationId: corrOf(d.causationId), configVersion: ctx.configVersion });
      cs.decided(ev);
      decisionsTotal.inc({ kind: "owner" });
      termGauge.set({ group: g.name }, d.term);
      roleGauge.set({ group: g.name }, d.role === "owner" ? 1 : 0);
      log.info({ group: g.name, role: d.role, term: d.term, why: d.why, eventId: ev.id, causationId: ev.causationId, correlationId: ev.correlationId }, "ownership decision");
      send(`owner:${g.name}`, subjects.decisionOwner(site, node, g.name), ev);
      cmds?.decided(ev);
    });
    a.start();
    owners.set(g.name, a);
    const restored = cs.restoredDecision(`owner:${g.name}`);
    if (restored?.type === "decision.owner" && restored.data.role === "owner") {
      // A restored "owner" waits out the start-up wait before it is re-sent: after a whole-node
      // restart a peer may own the group under a newer term by now, and re-sending at once made a
      // fresh executor add the addresses beside it. An executor that still holds them (only the
      // controller restarted) keeps them meanwhile: nothing is released in the wait.
      const key = `owner:${g.name}`;
      const timer = setTimeout(() => {
        const st = a.getSnapshot().context.s;
        if (owners.get(g.name) === a && !latest.has(key) && st.role === "owner" && st.term === restored.data.term) send(key, subjects.decisionOwner(site, node, g.name), restored);
      }, model.timers.deadMs + model.timers.heartbeatMs);
      timer.unref();
    } else if (restored) send(`owner:${g.name}`, subjects.decisionOwner(site, node, g.name), restored);
  };
  for (const g of model.groups) createOwner(g);

  // Each vantage point's latest word on each real, for step-down without reals (per group, per
  // node's prober). A prober in a probe group sees what its group sees: the members share the checks.
  const realOk = new Map<string, Map<string, boolean>>();
  const vantageOfProber = new Map<string, string>();
  const noteReal = (prober: string, group: string | null | undefined, vs: string, real: string, ok: boolean) => {
    const v = vantageKey(prober, group);
    vantageOfProber.set(prober, v);
    if (!realOk.has(v)) realOk.set(v, new Map());
    realOk.get(v)!.set(`${vs}|${real}`, ok);
  };
  const onHealth = (ev: EventOf<"health.result" | "health.summary">) => {
    remember(ev);
    const t = now();
    const group = ev.data.group ?? null;
    if (ev.type === "health.result") noteReal(ev.data.prober, group, ev.data.vs, ev.data.real, ev.data.ok);
    else for (const r of ev.data.results) noteReal(ev.data.prober, group, r.vs, r.real, r.ok);
    // `group` only when there is one: inputs of ungrouped probers stay as journaled before.
    const g = group ? { group } : {};
    if (ev.type === "health.result") {
      const d = ev.data;
      pools.get(d.vs)?.send({ type: "HEALTH", now: t, eventId: ev.id, real: d.real, prober: d.prober, ...g, ok: d.ok, streak: d.streak, at: t, error: d.error, check: d.check });
    } else {
      for (const r of ev.data.results) {
        pools.get(r.vs)?.send({ type: "HEALTH", now: t, eventId: ev.id, real: r.real, prober: ev.data.prober, ...g, ok: r.ok, streak: r.streak, at: t - r.ageMs, error: null, check: "summary" });
      }
    }
  };

  // Peer liveness, for the audit history: one event per change, not per heartbeat.
  const lastSeen = new Map<string, number>();
  const peerAlive = new Map<string, boolean>();
  const hearing = new Hearing(node); // any message from a voter: heartbeat or view
  let ownBeat: { at: number; data: EventOf<"node.heartbeat">["data"] } | null = null;
  const onHeartbeat = (ev: EventOf<"node.heartbeat">) => {
    cmds?.heartbeat(ev);
    const t = now();
    const h = ev.data;
    if (h.node === node) ownBeat = { at: t, data: h };
    lastSeen.set(h.node, t);
    const at = hearing.heard(h.node, t, ev.time);
    if (peerAlive.get(h.node) !== true) publishPeer(h.node, true, 0, ev.id);
    // A peer found dead now is the cause of whatever this heartbeat leads the machine to decide.
    const cause = checkPeers(t) ?? ev.id;
    for (const [group, a] of owners) {
      // A planned failover (lvsflow failover) reads as a fault of every node but the chosen one.
      const op = cmds?.operatorFault(group, h.node, t) ?? null;
      a.send({ type: "HEARTBEAT", now: t, at, node: h.node, priority: h.priority, holds: h.owned.find((o) => o.group === group)?.term ?? null, faults: op ? [...h.faults, op.fault] : h.faults, eventId: op?.cause ?? cause });
    }
    viewIfChanged();
  };

  // ---- quorum: our view (whom we hear, our votes), others' views, leases for our executor
  let viewSeq = 0;
  let lastVotes = "";
  let lastOwning = "";
  const publishView = () => {
    const t = now();
    const votes: Record<string, string | null> = {};
    const eligible: Record<string, boolean> = {};
    const owns: Record<string, number | null> = {};
    for (const [g, a] of owners) { const s = a.getSnapshot().context.s; votes[g] = s.vote ?? null; owns[g] = ownsOf(g, t); eligible[g] = selfEligible(s, t) && (t - s.startedAt >= s.deadMs || execHolds(g, t)); }
    lastVotes = JSON.stringify(votes);
    lastOwning = JSON.stringify(owns);
    const acks = hearing.acks(t, model.timers.deadMs);
    bus.publish(subjects.view(site, node), makeEvent("voter.view", { voter: node, witness: false, seq: viewSeq++, hears: hearing.hears(t, model.timers.deadMs), canOwn: Object.values(eligible).some(Boolean), eligible, votes, owns, acks }, { source, configVersion: ctx.configVersion }));
  };
  // `eligible` waits out our start-up wait unless our executor holds the group (a restored "owner"
  // role alone does not count): a candidate that cannot take it yet would only make the voters
  // withdraw from the holder early and leave the group without an owner until it can.
  /** Our executor's last word on group `g` (its latest heartbeat), or null before the first. */
  const ownExec = (g: string): OwnExecutorView | null => ownBeat && { at: ownBeat.at, holds: ownBeat.data.owned.find((o) => o.group === g)?.term ?? null, generation: ownBeat.data.ownerGenerations?.[g] };
  const execHolds = (g: string, t: number) => { const e = ownExec(g); return !!e && t - e.at <= model.timers.deadMs && e.holds !== null; };
  /** `owns` in our view: held, or maybe still held by our executor (ownsForView). */
  const ownsOf = (g: string, t: number): number | null => {
    const exec = ownExec(g);
    const d = ownDecisions.get(g) ?? { owner: null, release: null };
    // A release the executor has taken in (and nothing held) closes the matter.
    if (d.release && exec && exec.holds === null && exec.generation !== undefined && exec.generation >= d.release.generation) ownDecisions.delete(g);
    return ownsForView(owners.get(g)!.getSnapshot().context.s, t, exec, d);
  };
  // A moved vote, a role change or a release reaching the kernel is news at once: it is what lets
  // the majority take over promptly.
  const viewIfChanged = () => {
    if (!Q) return;
    const t = now();
    const votes = JSON.stringify(Object.fromEntries([...owners].map(([g, a]) => [g, a.getSnapshot().context.s.vote ?? null])));
    const owning = JSON.stringify(Object.fromEntries([...owners.keys()].map((g) => [g, ownsOf(g, t)])));
    if (owning !== lastOwning || votes !== lastVotes) publishView();
  };
  const onView = (ev: EventOf<"voter.view">) => {
    const input = hearing.view(ev, now());
    if (!input) return;
    for (const a of owners.values()) a.send(input);
    viewIfChanged();
  };
  const renewLeases = (t: number) => {
    for (const [g, a] of owners) {
      const s = a.getSnapshot().context.s;
      const leaseMs = leaseFor(s, t);
      if (leaseMs !== null) bus.publish(subjects.lease(site, node, g), makeEvent("owner.lease", { node, group: g, term: s.term, leaseMs, untilMs: t + leaseMs }, { source, configVersion: ctx.configVersion }));
    }
  };
  const realsOfGroup = (g: (typeof model.groups)[number]) => {
    const vss = new Set(model.virtualServices.filter((v) => g.addresses.some((a) => a.address === v.address)).map((v) => v.id));
    const up: Record<string, number> = {};
    for (const [prober, v] of vantageOfProber) up[prober] = [...(realOk.get(v) ?? [])].filter(([k, ok]) => ok && vss.has(k.split("|")[0]!)).length;
    return up;
  };
  const publishPeer = (peer: string, isAlive: boolean, ago: number | null, cause: string | null) => {
    peerAlive.set(peer, isAlive);
    const ev = makeEvent("peer.state", { observer: node, peer, alive: isAlive, lastSeenMsAgo: ago }, { source, causationId: cause, configVersion: ctx.configVersion });
    remember(ev);
    log.info({ peer, alive: isAlive, lastSeenMsAgo: ago }, isAlive ? "peer alive" : "peer lost");
    bus.publish(subjects.peer(site, node, peer), ev);
    return ev.id;
  };

  /** Publishes a peer.state for every peer that just went silent; returns the last such event's id. */
  function checkPeers(t: number): string | undefined {
    if (!bus.connected) return undefined;
    let cause: string | undefined;
    for (const [peer, seen] of lastSeen) {
      if (peerAlive.get(peer) && !alive({ priority: 0, lastSeen: seen, holds: null, faults: [] }, t, model.timers.deadMs)) {
        cause = publishPeer(peer, false, t - seen, null);
      }
    }
    return cause;
  }

  bus.subscribe(subjects.healthAll(site), ["health.result", "health.summary"], onHealth);
  bus.subscribe(subjects.heartbeatAll(site), ["node.heartbeat"], onHeartbeat);
  bus.subscribe(subjects.viewAll(site), ["voter.view"], onView);
  cmds = attachCommands(ctx, { pools, sendPool: (vs, e) => pools.get(vs)?.send(e) });
  bus.onStatus((up) => { const t = now(); for (const a of owners.values()) a.send({ type: "BUS", now: t, up }); });

  // Ownership needs prompt detection: tick often; it is cheap. setImmediate lets the messages that
  // arrived while this process was stalled be absorbed first: a silence we did not listen to is
  // no evidence that a peer died.
  const fastTick = setInterval(() => setImmediate(() => {
    const t = now();
    const cause = checkPeers(t);
    for (const a of owners.values()) a.send({ type: "TICK", now: t, ...(cause ? { eventId: cause } : {}) });
    viewIfChanged();
    if (Q) renewLeases(t);
  }), Math.max(10, Math.floor(model.timers.heartbeatMs / 2)));
  const viewTimer = setInterval(() => { if (Q) publishView(); }, model.timers.heartbeatMs);
  const slowTick = setInterval(() => {
    const t = now();
    for (const a of pools.values()) a.send({ type: "TICK", now: t });
    for (const g of model.groups) if (g.stepDownWithoutReals) owners.get(g.name)?.send({ type: "REALS", now: t, realsUp: realsOfGroup(g) });
  }, 250);
  // Anti-entropy: re-send the latest decisions (same event ids: the recorder de-duplicates).
  const resend = setInterval(() => { for (const { subject, ev } of latest.values()) bus.publish(subject, ev); }, 1000);

  /**
   * Live reload: pool machines of changed virtual services get a CONFIG (they keep the health of
   * unchanged reals), added ones are created, removed ones stopped and no longer re-sent. A group
   * whose settings changed gets a fresh ownership machine, as after a controller restart: it
   * adopts the term its executor holds, so the addresses do not move.
   */
  const updateModel = (next: typeof model, version: string) => {
    const prev = model;
    model = next;
    ctx.model = next;
    ctx.configVersion = version;
    self = next.nodes.find((n) => n.name === node);
    const t = now();
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (prev.global.vantagePolicy !== next.global.vantagePolicy) log.warn({ from: prev.global.vantagePolicy, to: next.global.vantagePolicy }, "the vantage policy of running pool machines changes at the next controller start");
    const keep = new Set(next.virtualServices.map((v) => v.id));
    for (const [id, a] of pools) if (!keep.has(id)) { a.stop(); pools.delete(id); cs.remove(`pool:${id}`); latest.delete(`pool:${id}`); log.info({ vs: id }, "virtual service removed"); }
    for (const vs of next.virtualServices) {
      const old = prev.virtualServices.find((v) => v.id === vs.id);
      if (!pools.has(vs.id)) { createPool(vs); log.info({ vs: vs.id }, "virtual service added"); }
      else if (!same({ ...old, source: null }, { ...vs, source: null })) pools.get(vs.id)!.send({ type: "CONFIG", now: t, vs, eventId: null });
    }
    const votersChanged = !same(prev.nodes, next.nodes) || !same(prev.global.witnesses, next.global.witnesses) || prev.timers.deadMs !== next.timers.deadMs;
    voters = [...new Set([...next.nodes.map((n) => n.name), ...(next.global.witnesses ?? [])])];
    Q = quorumMode(voters);
    const groups = new Set(next.groups.map((g) => g.name));
    for (const [name, a] of owners) if (!groups.has(name)) { a.stop(); owners.delete(name); cs.remove(`owner:${name}`); latest.delete(`owner:${name}`); log.info({ group: name }, "floating group removed"); }
    for (const g of next.groups) {
      const old = prev.groups.find((x) => x.name === g.name);
      if (owners.has(g.name) && !votersChanged && same(old, g)) continue;
      owners.get(g.name)?.stop();
      createOwner(g);
      log.info({ group: g.name, added: !old }, old ? "floating group changed: fresh ownership machine" : "floating group added");
      // The last decision, re-sent every second, must carry the new addresses: same role and term.
      const last = latest.get(`owner:${g.name}`)?.ev;
      if (last?.type === "decision.owner") {
        const resent = makeEvent("decision.owner",
          { ...last.data, generation: nextGen(), addresses: g.addresses, garpScheduleMs: g.garpScheduleMs, why: `configuration ${version} changed group ${g.name}; role unchanged` },
          { source, causationId: null, configVersion: version });
        cs.published(resent, "re-sent with the group's new addresses after a reload");
        send(`owner:${g.name}`, subjects.decisionOwner(site, node, g.name), resent);
      }
    }
    if (!same(prev.timers, next.timers)) log.warn("timer changes (heartbeat period) take effect at the next controller start");
    cmds?.reload(); // operator overrides (maintenance…) outlive the reload; added virtual services get theirs
  };

  return {
    updateModel,
    async stop() { cmds?.stop(); await cs.stop(); clearInterval(fastTick); clearInterval(viewTimer); clearInterval(slowTick); clearInterval(resend); for (const a of [...pools.values(), ...owners.values()]) a.stop(); },
    health() {
      return {
        ok: bus.connected,
        operator: cmds?.health(),
        journal: cs.health(),
        bus: bus.connected,
        pools: Object.fromEntries([...pools].map(([id, a]) => [id, String(a.getSnapshot().value)])),
        quorum: Q ? { voters, hears: hearing.hears(now(), model.timers.deadMs) } : null,
        groups: Object.fromEntries([...owners].map(([g, a]) => [g, { state: String(a.getSnapshot().value), term: a.getSnapshot().context.s.term, vote: a.getSnapshot().context.s.vote ?? null }])),
      };
    },
  };
}
