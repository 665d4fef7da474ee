// Index fields stored beside each audited event, so the audit query can filter without parsing.
import type { Event } from "../../shared/schemas/events.ts";

export function indexFields(ev: Event): string[] {
  const f: Record<string, string> = { id: ev.id, type: ev.type, time: ev.time, node: ev.source.node, service: ev.source.service };
  const d = ev.data as Record<string, unknown>;
  if (ev.type === "health.result") { f.vs = ev.data.vs; f.real = ev.data.real; }
  if (ev.type === "decision.pool") { f.vs = ev.data.pool.vs; f.real = [...new Set([...ev.data.changes.map((c) => c.real), ...(ev.data.operator ?? []).map((o) => o.real)])].join(","); }
  if (ev.type === "decision.owner") { f.group = ev.data.group; f.addr = ev.data.addresses.map((a) => a.address).join(","); }
  if (ev.type === "command.request") { if (ev.data.vs) f.vs = ev.data.vs; if (ev.data.real) f.real = ev.data.real; if (ev.data.group) f.group = ev.data.group; f.by = ev.data.issuedBy; }
  if (typeof d.node === "string") f.node = d.node;
  // What caused it and which incident it belongs to: `lvsflow why` and `audit --vs` follow these.
  if (ev.causationId) f.cause = ev.causationId;
  if (ev.correlationId) f.corr = ev.correlationId;
  return Object.entries(f).flatMap(([k, v]) => [k, v]);
}
