// The IPVS table as the kernel holds it: virtual services (address/port/protocol or firewall
// mark, IPv4 or IPv6) and their destinations. Desired and current state use the same shape, in
// the kernel's own normal form, so comparing them is plain equality.
import { isIP } from "node:net";

export type IpvsProtocol = "tcp" | "udp" | "fwm";
export type IpvsFamily = "ipv4" | "ipv6";
export type IpvsForwarding = "masq" | "gate" | "ipip";

export interface IpvsDest {
  address: string;
  port: number;
  forwarding: IpvsForwarding;
  /** 0 = quiescent: kept for existing connections, no new ones. */
  weight: number;
  /** Connection thresholds; 0 = none (the kernel's meaning). */
  upper: number;
  lower: number;
}

export interface IpvsService {
  protocol: IpvsProtocol;
  family: IpvsFamily;
  address: string | null;
  port: number;
  fwmark: number | null;
  scheduler: string;
  /** Scheduler flag bits: 1 = flag-1 (sh-/mh-fallback), 2 = flag-2 (sh-/mh-port), 4 = flag-3. */
  flags: number;
  /** netmask: dotted quad for IPv4, prefix length for IPv6, in the form ipvsadm prints. */
  persistence: { timeout: number; netmask: string } | null;
  onePacket: boolean;
  dests: IpvsDest[];
}

export interface IpvsTable { services: IpvsService[] }

export const SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"] as const;

/** Flag names as ipvsadm prints them for a scheduler, by bit (index 0 = bit 1). */
export function flagNames(scheduler: string): string[] {
  if (scheduler === "sh") return ["sh-fallback", "sh-port"];
  if (scheduler === "mh") return ["mh-fallback", "mh-port"];
  return ["flag-1", "flag-2", "flag-3"];
}
const FLAG_BITS: Record<string, number> = {
  "flag-1": 1, "flag-2": 2, "flag-3": 4, "sh-fallback": 1, "sh-port": 2, "mh-fallback": 1, "mh-port": 2,
};
export function flagBit(name: string): number | undefined { return FLAG_BITS[name]; }

export function flagsToString(scheduler: string, flags: number): string {
  const names = flagNames(scheduler);
  return [1, 2, 4].filter((b) => flags & b).map((b) => names[Math.log2(b)] ?? `flag-${Math.log2(b) + 1}`).join(",");
}

/** The address as ipvsadm prints it (IPv6 compressed, lower case). */
export function canonicalAddress(a: string): string {
  if (isIP(a) === 6) return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  return a;
}

const hostPort = (a: string, p: number) => (a.includes(":") ? `[${a}]:${p}` : `${a}:${p}`);

/** The service's ipvsadm target: ["-t", "192.0.2.50:80"], ["-f", "7", "-6"], … */
export function serviceTarget(s: Pick<IpvsService, "protocol" | "family" | "address" | "port" | "fwmark">): string[] {
  if (s.protocol === "fwm") return s.family === "ipv6" ? ["-f", String(s.fwmark), "-6"] : ["-f", String(s.fwmark)];
  return [s.protocol === "tcp" ? "-t" : "-u", hostPort(s.address!, s.port)];
}
export const serviceKey = (s: Parameters<typeof serviceTarget>[0]) => serviceTarget(s).join(" ");
export const destKey = (d: Pick<IpvsDest, "address" | "port">) => hostPort(d.address, d.port);

/** Default persistence netmask of a family: the kernel does not print it. */
export const fullMask = (f: IpvsFamily) => (f === "ipv4" ? "255.255.255.255" : "128");
