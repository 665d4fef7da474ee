// `lvsflow run witness`: a voter that is not a load balancer. It holds no address and runs no
// data plane; it hears the LB nodes (their heartbeats and views), votes per floating group with
// the same rules as their controllers, and publishes its view. With two LB nodes it makes the
// third voter of quorum mode, so a partition between the LBs never leaves both owning a group.
// Run it on any third host that reaches the bus (ideally beside its own clustered nats-server).
import { createActor, type Actor } from "xstate";
import client from "prom-client";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { makeEvent, type EventOf } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";
import { registry } from "../../shared/metrics.ts";
import { ownershipMachine } from "../controller/ownership-machine.ts";
import { Hearing } from "../controller/hearing.ts";
import { quorumMode } from "../controller/ownership-logic.ts";

const heardGauge = new client.Gauge({ name: "lvsflow_witness_voters_heard", help: "Voters this witness hears within the dead time", registers: [registry] });

export async function startWitness(ctx: ServiceContext): Promise<RunningService> {
  const { site, node, model, bus, log } = ctx;
  const now = () => Date.now();
  const source = { service: "witness" as const, node };
  const voters = [...new Set([...model.nodes.map((n) => n.name), ...(model.global.witnesses ?? [])])];
  if (model.nodes.some((n) => n.name === node)) throw new Error(`witness name ${node} is an LB node's name: give the witness its own name (global.witnesses)`);
  if (!voters.includes(node)) log.warn({ node, witnesses: model.global.witnesses }, "this witness is not listed in global.witnesses: the LB nodes will not count its votes");
  if (!quorumMode(voters)) log.warn({ voters }, "fewer than 3 voters: the LB nodes run in VRRP mode and ignore votes");

  // The same machine as an LB controller's: without an executor of its own it never owns, it only votes.
  const groups = new Map<string, Actor<typeof ownershipMachine>>();
  for (const g of model.groups) {
    const a = createActor(ownershipMachine, { input: { self: node, group: g.name, priority: 0, preempt: g.preempt, preemptDelayMs: g.preemptDelayMs, deadMs: model.timers.deadMs, now: now(), voters } });
    a.start();
    groups.set(g.name, a);
  }
  const hearing = new Hearing(node);
  let seq = 0;
  let lastVotes = "";
  const votes = () => Object.fromEntries([...groups].map(([g, a]) => [g, a.getSnapshot().context.s.vote ?? null]));
  const publish = () => {
    const t = now();
    const v = votes();
    lastVotes = JSON.stringify(v);
    const hears = hearing.hears(t, model.timers.deadMs);
    heardGauge.set(Object.keys(hears).length);
    const acks = hearing.acks(t, model.timers.deadMs);
    bus.publish(subjects.view(site, node), makeEvent("voter.view", { voter: node, witness: true, seq: seq++, hears, canOwn: false, votes: v, acks }, { source, configVersion: ctx.configVersion }));
  };
  const ifChanged = () => { if (JSON.stringify(votes()) !== lastVotes) publish(); };

  bus.subscribe(subjects.heartbeatAll(site), ["node.heartbeat"], (ev: EventOf<"node.heartbeat">) => {
    const t = now();
    const h = ev.data;
    const at = hearing.heard(h.node, t, ev.time);
    for (const [g, a] of groups) a.send({ type: "HEARTBEAT", now: t, at, node: h.node, priority: h.priority, holds: h.owned.find((o) => o.group === g)?.term ?? null, faults: h.faults, eventId: ev.id });
    ifChanged();
  });
  bus.subscribe(subjects.viewAll(site), ["voter.view"], (ev: EventOf<"voter.view">) => {
    const input = hearing.view(ev, now());
    if (!input) return;
    for (const a of groups.values()) a.send(input);
    ifChanged();
  });
  bus.onStatus((up) => { const t = now(); for (const a of groups.values()) a.send({ type: "BUS", now: t, up }); });
  // setImmediate: absorb what arrived during a stall before judging anyone silent.
  const tick = setInterval(() => setImmediate(() => { const t = now(); for (const a of groups.values()) a.send({ type: "TICK", now: t }); ifChanged(); }), Math.max(10, Math.floor(model.timers.heartbeatMs / 2)));
  const beat = setInterval(publish, model.timers.heartbeatMs);
  publish();
  log.info({ voters, groups: [...groups.keys()] }, "witness voting");

  return {
    async stop() { clearInterval(tick); clearInterval(beat); for (const a of groups.values()) a.stop(); },
    health() {
      return { ok: bus.connected, bus: bus.connected, voters, hears: hearing.hears(now(), model.timers.deadMs), votes: votes() };
    },
  };
}
