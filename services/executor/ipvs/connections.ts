// PURE: active connections per real from IPVS's own counters (`ipvsadm -Ln --thresholds`:
// ActiveConn, InActConn per destination), for operator drains and status. conntrack does not see
// IPVS flows (IPVS untracks them unless net.ipv4.vs.conntrack = 1), so the counter the nftables
// driver uses would report every drained real empty at once.
// Counted like the conntrack counter: TCP connections in ESTABLISHED (ActiveConn), every UDP
// connection entry (IPVS lists UDP ones as InActConn); firewall-mark services: ActiveConn.
import { realId } from "../../../shared/schemas/config.ts";
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import { poolDestKey, poolServiceKey } from "./desired.ts";
import type { DestStats } from "./parse.ts";

/**
 * "vs|real" → connections, only where there are some. Every destination of a pool's service
 * counts, also one the decision no longer lists (it may still be draining); such a one is named
 * by the kernel's address:port. Throws when the counters were not printed.
 */
export function connectionCounts(pools: readonly PoolSpec[], stats: ReadonlyMap<string, ReadonlyMap<string, DestStats>>): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of pools) {
    const dests = stats.get(poolServiceKey(p));
    if (!dests) continue;
    const names = new Map(p.reals.map((r) => [poolDestKey(p, r), realId(r)]));
    for (const [dk, s] of dests) {
      if (s.active === null || s.inactive === null) throw new Error(`ipvsadm printed no connection counters for ${dk} of ${p.vs}`);
      const n = p.protocol === "udp" ? s.active + s.inactive : s.active;
      if (n > 0) out.set(`${p.vs}|${names.get(dk) ?? dk}`, n);
    }
  }
  return out;
}
