// Draining real servers that a configuration change removed, per quiescent. Pure.
//
// With quiescent = yes a real server that fails stays at weight 0, so clients with affinity keep
// reaching it; a real server removed from the configuration is treated the same way for one
// persistence timeout (the life of the affinity entries), then deleted. With quiescent = no it
// is deleted at once, as ldirectord does on reload. Established connections survive either way
// with the nftables driver (conntrack keeps their translation).
//
// Under quiescent = yes the controller never drops a configured real from a decision (a failed
// one stays at weight 0), so a real that disappears from one decision to the next has left the
// configuration. This needs no ordering between the executor's and the controller's reloads.
import type { PoolReal, PoolSpec } from "../../shared/schemas/events.ts";

export interface Drain { real: PoolReal; until: number }
/** Draining reals of one virtual service, by "address:port". */
export type Drains = ReadonlyMap<string, Drain>;

const key = (r: { address: string; port: number }) => `${r.address}:${r.port}`;

/** How long a removed real drains: one persistence timeout with quiescent = yes, else not at all. */
export function drainMs(quiescent: boolean, spec: PoolSpec): number {
  return quiescent && spec.persistence ? spec.persistence.timeout * 1000 : 0;
}

/** The drains after `next` replaces `prev` for one virtual service. */
export function nextDrains(prev: PoolSpec | undefined, next: PoolSpec, drains: Drains, ms: number, now: number): Map<string, Drain> {
  const out = new Map<string, Drain>();
  const present = new Set(next.reals.map(key));
  for (const [k, d] of drains) if (!present.has(k) && d.until > now) out.set(k, d); // back in the pool, or done
  if (ms > 0 && prev) {
    for (const r of prev.reals) {
      const k = key(r);
      if (!present.has(k) && !out.has(k)) out.set(k, { real: { ...r, weight: 0, draining: false }, until: now + ms });
    }
  }
  return out;
}

/** The spec to apply: the decision's reals plus the draining ones at weight 0. */
export function withDrains(spec: PoolSpec, drains: Drains | undefined, now: number): PoolSpec {
  const extra = [...(drains?.values() ?? [])].filter((d) => d.until > now).map((d) => d.real);
  return extra.length ? { ...spec, reals: [...spec.reals, ...extra] } : spec;
}

/** True when some drain has run out (the pools must be applied again without it). */
export function expired(drains: Drains | undefined, now: number): boolean {
  return [...(drains?.values() ?? [])].some((d) => d.until <= now);
}
