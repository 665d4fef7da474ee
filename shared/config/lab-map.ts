// The lab runs the seed's ldirectord.cf unchanged except for its addresses: the published ones
// (10.0.2.0/24, 192.168.120.0/24) are replaced by documentation ranges that the lab's network
// namespaces use, so the lab never collides with a real network.

/** Seed address → lab address. */
export const SEED_ADDRESS_MAP: readonly (readonly [string, string])[] = [
  ["10.0.2.50", "198.51.100.50"], // the VIP
  ["192.168.120.86", "203.0.113.11"], // real server 1
  ["192.168.120.87", "203.0.113.12"], // real server 2
];

/**
 * Rewrites the seed's addresses in ldirectord.cf text. Only whole addresses are replaced
 * (10.0.2.500 or 110.0.2.50 stay as they are). `mapping` lists the pairs that occurred.
 */
export function mapSeedAddresses(text: string): { text: string; mapping: [string, string][] } {
  const mapping: [string, string][] = [];
  let out = text;
  for (const [from, to] of SEED_ADDRESS_MAP) {
    const re = new RegExp(`(?<![0-9.])${from.replaceAll(".", "\\.")}(?![0-9]|\\.[0-9])`, "g");
    const next = out.replace(re, to);
    if (next !== out) mapping.push([from, to]);
    out = next;
  }
  return { text: out, mapping };
}
