// PURE: an operator drain (PoolReal.draining) the IPVS way. The decision keeps the real at
// weight 0: IPVS schedules no new connection to a weight-0 destination (every scheduler skips it)
// while the connection entries it already has go on being forwarded. The real stays in the table
// until the decision no longer lists it (the controller saw its connections end, or the drain's
// timeout passed); then it is deleted, and with expire_nodest_conn its last connections end.
//
// Clients with a persistence template pointing at the real are the one IPVS-specific catch: the
// template still leads to it unless net.ipv4.vs.expire_quiescent_template = 1 (lvsflow's default),
// which expires a template of a weight-0 destination when it is next used, so they are scheduled
// afresh (nftables: the driver skips the real's affinity set instead).
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import { poolDestKey, poolServiceKey } from "./desired.ts";
import { SYSCTL_DEFAULTS, type IpvsSysctls } from "./sysctl.ts";

/** "<service key> <dest key>" of every real an operator drains. */
export function drainingKeys(pools: readonly PoolSpec[]): Set<string> {
  const out = new Set<string>();
  for (const p of pools) for (const r of p.reals) if (r.draining) out.add(`${poolServiceKey(p)} ${poolDestKey(p, r)}`);
  return out;
}

/**
 * What a drain cannot promise with these settings: persistent clients of a draining real keep
 * reaching it while expire_quiescent_template is not enforced on. One line per virtual service.
 */
export function drainCaveats(pools: readonly PoolSpec[], sysctls: Partial<IpvsSysctls> = {}): string[] {
  const eqt = { ...SYSCTL_DEFAULTS, ...sysctls }.expireQuiescentTemplate;
  if (eqt === true) return [];
  const why = eqt === false ? "is set to 0 (global.ipvs.expireQuiescentTemplate: false)" : "is left alone (global.ipvs.expireQuiescentTemplate: null; the kernel's default is 0)";
  const out: string[] = [];
  for (const p of pools) {
    const reals = p.reals.filter((r) => r.draining).map((r) => `${r.address}:${r.port}`);
    if (!reals.length || !p.persistence) continue;
    out.push(`${p.vs}: draining ${reals.join(", ")}: net.ipv4.vs.expire_quiescent_template ${why}, so clients whose persistence template points at it still reach it until the template expires (${p.persistence.timeout} s after their last connection)`);
  }
  return out;
}
