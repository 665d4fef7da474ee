// PURE: the desired pools (decisions) → the IPVS table the kernel should hold, validated before
// any command is built. ldirectord's semantics: a quiescent real is a destination at weight 0;
// the fallback server is a destination at weight 1, present only while no real is up.
import { isIP } from "node:net";
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import {
  SCHEDULERS, canonicalAddress, destKey, flagBit, flagNames, fullMask, serviceKey,
  type IpvsDest, type IpvsFamily, type IpvsService, type IpvsTable,
} from "./table.ts";

export class IpvsSpecError extends Error {
  constructor(readonly vs: string, readonly field: string, message: string) {
    super(`${vs}: ${field}: ${message}`);
    this.name = "IpvsSpecError";
  }
}

/** What a decision may carry beyond PoolSpec's core (scheduler flags, one-packet scheduling). */
export type PoolInput = PoolSpec & { schedFlags?: string | null; onePacket?: boolean };

const int = (n: unknown, lo: number, hi: number) => typeof n === "number" && Number.isInteger(n) && n >= lo && n <= hi;

function checkAddress(vs: string, field: string, a: unknown, family: IpvsFamily): string {
  if (typeof a !== "string" || isIP(a) !== (family === "ipv4" ? 4 : 6)) {
    throw new IpvsSpecError(vs, field, `${JSON.stringify(a)} is not an ${family === "ipv4" ? "IPv4" : "IPv6"} address`);
  }
  return canonicalAddress(a);
}

/** Dotted quad with contiguous ones (IPv4) or a prefix length 1–128 (IPv6), as ipvsadm prints it. */
export function normalizeNetmask(vs: string, mask: string, family: IpvsFamily): string {
  if (family === "ipv6") {
    const m = /^\/?(\d{1,3})$/.exec(mask);
    if (!m || !int(Number(m[1]), 1, 128)) throw new IpvsSpecError(vs, "netmask", `${JSON.stringify(mask)} is not an IPv6 prefix length (1-128)`);
    return String(Number(m[1]));
  }
  if (/^\/?\d{1,2}$/.test(mask)) {
    const n = Number(mask.replace("/", ""));
    if (!int(n, 1, 32)) throw new IpvsSpecError(vs, "netmask", `${JSON.stringify(mask)} is not an IPv4 prefix length (1-32)`);
    const bits = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
    return [24, 16, 8, 0].map((s) => (bits >>> s) & 255).join(".");
  }
  if (isIP(mask) !== 4) throw new IpvsSpecError(vs, "netmask", `${JSON.stringify(mask)} is not a dotted-quad netmask`);
  const v = mask.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const inv = (~v >>> 0) + 1;
  if (v === 0 || (inv & (inv - 1)) !== 0) throw new IpvsSpecError(vs, "netmask", `${mask} is not a contiguous netmask`);
  return mask;
}

export function parseSchedFlags(vs: string, scheduler: string, text: string | null | undefined): number {
  if (!text) return 0;
  let bits = 0;
  const allowed = flagNames(scheduler);
  for (const name of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const b = flagBit(name);
    if (b === undefined || !allowed.includes(name)) {
      throw new IpvsSpecError(vs, "schedflags", `${JSON.stringify(name)} is not a flag of scheduler ${scheduler} (use ${allowed.join(", ")})`);
    }
    bits |= b;
  }
  return bits;
}

/** One pool → one virtual service. Throws IpvsSpecError naming the pool and the field. */
export function serviceFromPool(p: PoolInput): IpvsService {
  const vs = typeof p.vs === "string" ? p.vs : "(unnamed virtual service)";
  if (p.family !== "ipv4" && p.family !== "ipv6") throw new IpvsSpecError(vs, "family", `unknown family ${JSON.stringify(p.family)}`);
  if (!(SCHEDULERS as readonly string[]).includes(p.scheduler)) {
    throw new IpvsSpecError(vs, "scheduler", `${JSON.stringify(p.scheduler)} is not an IPVS scheduler (one of ${SCHEDULERS.join(", ")})`);
  }
  let address: string | null = null;
  let fwmark: number | null = null;
  let port = 0;
  if (p.protocol === "fwm") {
    if (!int(p.fwmark, 1, 0xffffffff)) throw new IpvsSpecError(vs, "fwmark", `${JSON.stringify(p.fwmark)} is not a firewall mark (1-4294967295)`);
    fwmark = p.fwmark;
  } else if (p.protocol === "tcp" || p.protocol === "udp") {
    address = checkAddress(vs, "address", p.address, p.family);
    if (!int(p.port, 0, 65535)) throw new IpvsSpecError(vs, "port", `${JSON.stringify(p.port)} is not a port`);
    if (p.port === 0 && !p.persistence) throw new IpvsSpecError(vs, "port", "port 0 (all ports) needs persistence");
    port = p.port;
  } else {
    throw new IpvsSpecError(vs, "protocol", `${JSON.stringify(p.protocol)} is not tcp, udp or fwm`);
  }
  let persistence: IpvsService["persistence"] = null;
  if (p.persistence) {
    if (!int(p.persistence.timeout, 1, 0x7fffffff)) throw new IpvsSpecError(vs, "persistent", `${JSON.stringify(p.persistence.timeout)} is not a timeout in seconds`);
    persistence = { timeout: p.persistence.timeout, netmask: normalizeNetmask(vs, p.persistence.netmask ?? fullMask(p.family), p.family) };
  }
  const onePacket = p.onePacket === true;
  if (onePacket && p.protocol === "tcp") throw new IpvsSpecError(vs, "ops", "one-packet scheduling is for UDP (or firewall-mark) services only");
  const svc: IpvsService = {
    protocol: p.protocol, family: p.family, address, port, fwmark, scheduler: p.scheduler,
    flags: parseSchedFlags(vs, p.scheduler, p.schedFlags), persistence, onePacket, dests: [],
  };
  const seen = new Set<string>();
  const add = (d: IpvsDest, what: string) => {
    const k = destKey(d);
    if (seen.has(k)) throw new IpvsSpecError(vs, what, `destination ${k} given twice`);
    seen.add(k);
    svc.dests.push(d);
  };
  const dest = (r: { address: unknown; port: unknown; forwarding: unknown }, what: string): Omit<IpvsDest, "weight" | "upper" | "lower"> => {
    const addr = checkAddress(vs, what, r.address, p.family);
    if (!int(r.port, 0, 65535)) throw new IpvsSpecError(vs, what, `${JSON.stringify(r.port)} is not a port`);
    if (r.forwarding !== "masq" && r.forwarding !== "gate" && r.forwarding !== "ipip") throw new IpvsSpecError(vs, what, `${JSON.stringify(r.forwarding)} is not masq, gate or ipip`);
    // ipvsadm stores gate/ipip destinations of an address service with the service's port (§1.7).
    const dport = r.forwarding !== "masq" && p.protocol !== "fwm" ? port : (r.port as number);
    return { address: addr, port: dport, forwarding: r.forwarding };
  };
  for (const r of p.reals ?? []) {
    const what = `real ${String(r.address)}:${String(r.port)}`;
    if (!int(r.weight, 0, 65535)) throw new IpvsSpecError(vs, what, `weight ${JSON.stringify(r.weight)} is not 0-65535`);
    const upper = r.upperThreshold ?? 0, lower = r.lowerThreshold ?? 0;
    if (!int(upper, 0, 0x7fffffff) || !int(lower, 0, 0x7fffffff)) throw new IpvsSpecError(vs, what, "thresholds must be whole numbers ≥ 0");
    if (upper && lower > upper) throw new IpvsSpecError(vs, what, `lower threshold ${lower} is above the upper threshold ${upper}`);
    add({ ...dest(r, what), weight: r.weight, upper, lower }, what);
  }
  if (p.fallback) {
    const d = dest(p.fallback, "fallback");
    // A fallback that is also a real: the real's entry stands (ldirectord would not add it twice).
    if (!seen.has(destKey(d))) add({ ...d, weight: 1, upper: 0, lower: 0 }, "fallback");
  }
  return svc;
}

/** All pools → the table; two pools for the same kernel service are an error. */
export function desiredTable(pools: readonly PoolInput[]): IpvsTable {
  const services: IpvsService[] = [];
  const byKey = new Map<string, string>();
  for (const p of pools) {
    const s = serviceFromPool(p);
    const k = serviceKey(s);
    if (byKey.has(k)) throw new IpvsSpecError(p.vs, "virtual", `same kernel service (${k}) as ${byKey.get(k)}`);
    byKey.set(k, p.vs);
    services.push(s);
  }
  return { services };
}

type PoolAddressing = { protocol: string; family: string; address: string | null; port: number; fwmark: number | null };

/** The kernel's key of a pool's virtual service (as serviceKey() prints a parsed one). */
export function poolServiceKey(p: PoolAddressing): string {
  return serviceKey({ protocol: p.protocol as IpvsService["protocol"], family: p.family as IpvsFamily, address: p.address ? canonicalAddress(p.address) : null, port: p.port, fwmark: p.fwmark });
}

/** The kernel's key of a real (or fallback) of a pool: gate/ipip ones carry the service's port. */
export function poolDestKey(p: PoolAddressing, r: { address: string; port: number; forwarding: string }): string {
  const port = r.forwarding !== "masq" && p.protocol !== "fwm" ? p.port : r.port;
  return destKey({ address: canonicalAddress(r.address), port });
}

/** "<service key> <dest key>" of each pool's configured fallback: deleted at once, never quiesced. */
export function fallbackKeys(pools: readonly (PoolAddressing & { fallback: { address: string; port: number; forwarding: string } | null })[]): Set<string> {
  const out = new Set<string>();
  for (const p of pools) {
    if (!p.fallback || isIP(p.fallback.address) === 0) continue;
    out.add(`${poolServiceKey(p)} ${poolDestKey(p, p.fallback)}`);
  }
  return out;
}
