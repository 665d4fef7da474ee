// Defence in depth: a decision is applied only if it stays inside the configured virtual
// services and floating groups. Anything else is refused whole, never half-applied.
import type { Model } from "../../shared/schemas/config.ts";
import { realId } from "../../shared/schemas/config.ts";
import type { DataOf } from "../../shared/schemas/events.ts";

export function checkPoolDecision(model: Model, d: DataOf<"decision.pool">): string | null {
  const vs = model.virtualServices.find((v) => v.id === d.pool.vs);
  if (!vs) return `virtual service ${d.pool.vs} is not in the configuration`;
  if (d.pool.address !== vs.address || d.pool.port !== vs.port || d.pool.protocol !== vs.protocol) return `decision for ${d.pool.vs} does not match its configured address/port/protocol`;
  const known = new Set(vs.reals.map(realId));
  for (const r of d.pool.reals) if (!known.has(realId(r))) return `real ${realId(r)} is not configured in ${vs.id}`;
  if (d.pool.fallback && (!vs.fallback || vs.fallback.address !== d.pool.fallback.address || vs.fallback.port !== d.pool.fallback.port)) return `fallback ${d.pool.fallback.address}:${d.pool.fallback.port} is not configured for ${vs.id}`;
  return null;
}

export function checkOwnerDecision(model: Model, d: DataOf<"decision.owner">): string | null {
  const g = model.groups.find((x) => x.name === d.group);
  if (!g) return `floating group ${d.group} is not in the configuration`;
  const want = new Set(g.addresses.map((a) => `${a.address}/${a.prefix}@${a.interface}`));
  for (const a of d.addresses) if (!want.has(`${a.address}/${a.prefix}@${a.interface}`)) return `address ${a.address}/${a.prefix} on ${a.interface} is not in group ${d.group}`;
  return null;
}
