// Kernel settings the IPVS driver keeps, with lvsflow's defaults and why (null = leave alone):
//   net.ipv4.vs.expire_nodest_conn = 1 (kernel 0): when a real is deleted (quiescent=no), its
//     connections are expired on their next packet, so clients reconnect to a live real at once
//     instead of hanging until the entry times out (up to 15 min for established TCP).
//   net.ipv4.vs.expire_quiescent_template = 1 (kernel 0): a real quiesced at weight 0 because it
//     failed no longer receives returning persistent clients through their templates (the
//     ldirectord manual's persistence caveat, §1.7).
//   net.ipv4.vs.conntrack = null (kernel 0): set it to 1 only if netfilter rules must see IPVS
//     traffic in conntrack (e.g. a firewall matching ct state on LVS-NAT flows); it costs.
//   net.ipv4.ip_forward = 1: LVS-NAT forwards between the outside and the real servers.
export interface IpvsSysctls {
  expireNodestConn: boolean | null;
  expireQuiescentTemplate: boolean | null;
  conntrack: boolean | null;
  ipForward: boolean | null;
}

export const SYSCTL_DEFAULTS: IpvsSysctls = { expireNodestConn: true, expireQuiescentTemplate: true, conntrack: null, ipForward: true };

const PATHS: Record<keyof IpvsSysctls, string> = {
  expireNodestConn: "/proc/sys/net/ipv4/vs/expire_nodest_conn",
  expireQuiescentTemplate: "/proc/sys/net/ipv4/vs/expire_quiescent_template",
  conntrack: "/proc/sys/net/ipv4/vs/conntrack",
  ipForward: "/proc/sys/net/ipv4/ip_forward",
};

/** [path, value] pairs to enforce. */
export function sysctlTargets(s: Partial<IpvsSysctls> = {}): [string, string][] {
  const eff = { ...SYSCTL_DEFAULTS, ...s };
  return (Object.keys(PATHS) as (keyof IpvsSysctls)[]).filter((k) => eff[k] !== null).map((k) => [PATHS[k], eff[k] ? "1" : "0"]);
}

/** "/proc/sys/net/ipv4/vs/conntrack" → "net.ipv4.vs.conntrack". */
export const sysctlName = (path: string) => path.replace(/^\/proc\/sys\//, "").replaceAll("/", ".");
