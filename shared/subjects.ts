// The subject scheme, in one place. Every subject starts with `lvsflow.<site>.`.
// Tokens that come from addresses are encoded so they never contain '.', '*', '>' or spaces.
//
//   lvsflow.<site>.health.<prober>.<vs>.<real>     health.result   (prober → controllers)
//   lvsflow.<site>.health.<prober>.summary         health.summary  (prober, every interval)
//   lvsflow.<site>.decision.<node>.pool.<vs>       decision.pool   (controller → executor of <node>)
//   lvsflow.<site>.decision.<node>.owner.<group>   decision.owner  (controller → executor of <node>)
//   lvsflow.<site>.heartbeat.<node>                node.heartbeat  (executor → controllers)
//   lvsflow.<site>.peer.<observer>.<peer>          peer.state      (controller: liveness changes)
//   lvsflow.<site>.report.<node>.<kind>            executor.applied / executor.drift
//   lvsflow.<site>.rejected.<service>.<node>       bus.rejected    (any service that dropped an invalid message)
//   lvsflow.<site>.command.request.<action>        command.request (lvsflow CLI / dashboard → every controller)
//   lvsflow.<site>.command.ack.<node>              command.ack     (controller: applied/done/refused/failed)
//   lvsflow.<site>.command.state.<node>            command.state   (controller: its override map, for catch-up)
//   lvsflow.<site>.report.<node>.connections       executor.connections (executor: active connections per real)
//   lvsflow.<site>.view.<voter>                    voter.view      (controllers and witnesses: who they hear; quorum)
//   lvsflow.<site>.lease.<node>.<group>            owner.lease     (controller → executor of <node>, quorum mode)
//   lvsflow.<site>.inputs.<node>                   controller.inputs (controller: the inputs its machines consumed, for replay)
//   lvsflow.<site>.query.view                      request; each controller replies with controller.view
//   lvsflow.<site>.config.push                     config.pushed   (lvsflow config push → every service)
//   lvsflow.<site>.config.applied.<node>           config.applied  (any service: a configuration applied, what changed)
//   lvsflow.<site>.config.rejected.<node>          config.rejected (any service: a configuration refused, why; the old one runs)
//   lvsflow.<site>.probers.<group>.<prober>        prober.heartbeat (probers sharing checks: membership)
import type { EventType } from "./schemas/events.ts";

/** Encode an id (e.g. "tcp:198.51.100.50:80") as one subject token. */
export function token(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, (c) => (c === "." ? "_" : c === ":" ? "-" : "~" + c.charCodeAt(0).toString(16)));
}

export const subjects = {
  all: (site: string) => `lvsflow.${site}.>`,
  health: (site: string, prober: string, vs: string, real: string) => `lvsflow.${site}.health.${token(prober)}.${token(vs)}.${token(real)}`,
  healthSummary: (site: string, prober: string) => `lvsflow.${site}.health.${token(prober)}.summary`,
  healthAll: (site: string) => `lvsflow.${site}.health.>`,
  decisionPool: (site: string, node: string, vs: string) => `lvsflow.${site}.decision.${token(node)}.pool.${token(vs)}`,
  decisionOwner: (site: string, node: string, group: string) => `lvsflow.${site}.decision.${token(node)}.owner.${token(group)}`,
  decisionsFor: (site: string, node: string) => `lvsflow.${site}.decision.${token(node)}.>`,
  heartbeat: (site: string, node: string) => `lvsflow.${site}.heartbeat.${token(node)}`,
  heartbeatAll: (site: string) => `lvsflow.${site}.heartbeat.*`,
  peer: (site: string, observer: string, peer: string) => `lvsflow.${site}.peer.${token(observer)}.${token(peer)}`,
  report: (site: string, node: string, kind: string) => `lvsflow.${site}.report.${token(node)}.${token(kind)}`,
  rejected: (site: string, service: string, node: string) => `lvsflow.${site}.rejected.${token(service)}.${token(node)}`,
  commandRequest: (site: string, action: string) => `lvsflow.${site}.command.request.${token(action)}`,
  commandRequestAll: (site: string) => `lvsflow.${site}.command.request.*`,
  commandAck: (site: string, node: string) => `lvsflow.${site}.command.ack.${token(node)}`,
  commandAckAll: (site: string) => `lvsflow.${site}.command.ack.*`,
  commandState: (site: string, node: string) => `lvsflow.${site}.command.state.${token(node)}`,
  commandStateAll: (site: string) => `lvsflow.${site}.command.state.*`,
  connectionsAll: (site: string) => `lvsflow.${site}.report.*.connections`,
  view: (site: string, voter: string) => `lvsflow.${site}.view.${token(voter)}`,
  viewAll: (site: string) => `lvsflow.${site}.view.*`,
  lease: (site: string, node: string, group: string) => `lvsflow.${site}.lease.${token(node)}.${token(group)}`,
  leasesFor: (site: string, node: string) => `lvsflow.${site}.lease.${token(node)}.*`,
  queryView: (site: string) => `lvsflow.${site}.query.view`,
  inputs: (site: string, node: string) => `lvsflow.${site}.inputs.${token(node)}`,
  configPush: (site: string) => `lvsflow.${site}.config.push`,
  configReport: (site: string, node: string, kind: "applied" | "rejected") => `lvsflow.${site}.config.${kind}.${token(node)}`,
  configAll: (site: string) => `lvsflow.${site}.config.>`,
  proberHeartbeat: (site: string, group: string, prober: string) => `lvsflow.${site}.probers.${token(group)}.${token(prober)}`,
  proberHeartbeatAll: (site: string, group: string) => `lvsflow.${site}.probers.${token(group)}.*`,
};

/** Event types the recorder keeps in the audit history (heartbeats and summaries are telemetry). */
export const AUDITED: ReadonlySet<EventType> = new Set<EventType>([
  "health.result", "decision.pool", "decision.owner", "peer.state", "executor.applied", "executor.drift", "bus.rejected",
  "command.request", "command.ack",
  "config.pushed", "config.applied", "config.rejected",
]);

/**
 * Subjects the recorder's durable buffer (a JetStream stream) captures: every audited event's
 * subject and the controllers' input journals. A new audited event type must add its subject here.
 */
export function recordedSubjects(site: string): string[] {
  const p = `lvsflow.${site}`;
  return [`${p}.health.*.*.*`, `${p}.decision.>`, `${p}.peer.>`, `${p}.report.>`, `${p}.rejected.>`, `${p}.command.request.*`, `${p}.command.ack.*`, `${p}.inputs.*`, `${p}.config.>`];
}
