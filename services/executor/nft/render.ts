// Maps PoolSpecs (desired virtual services) to nftables objects in table `ip lvsflow`.
//
//   prerouting / output (nat base chains): ip daddr VIP tcp dport P goto svc-<h(vs)>
//   svc-<h(vs)>:  1. persistence lookups  `ip saddr [& mask] @aff-… goto ep-…` (all reals, also weight 0)
//                 2. weighted selection over reals with weight > 0 (numgen/jhash mod SUM vmap)
//                 3. fallback `dnat to` when the pool has one, else (no real with weight > 0)
//                    `reject`: tcp reset / icmp port-unreachable, so clients fail fast instead of
//                    hanging on a VIP nobody answers.
//   ep-<h(vs)>-<h(real)>: `update @aff-… { ip saddr [& mask] }`, then `meta l4proto P counter dnat to IP:PORT`
//
// Schedulers: rr/wrr → `numgen inc` (exact weighted round robin); sh/mh → `jhash ip saddr`
// (source hashing); fo → all new connections to the highest weight; every other IPVS scheduler
// (wlc, lc, sed, nq, lblc, lblcr, dh, ovf, twos) needs per-real connection counts that nftables
// does not keep, so they are approximated by weighted random (`numgen random`).
//
// A quiescent real (weight 0) keeps its endpoint chain and affinity set, so clients that already
// have affinity keep reaching it (IPVS quiescent + persistence), but it gets no share in the vmap.
// Only LVS-NAT (masq) is possible with DNAT; gate (DR) and ipip (TUN) are rejected.
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import { checkComment, TABLE, type Chain, type NftSet, type Rule } from "./objects.ts";
import { maglevTable, tableRanges, MAGLEV_SIZE } from "./maglev.ts";

/**
 * How a real is picked for a new flow. `per-node`: the IPVS scheduler's nearest nftables
 * equivalent (numgen inc/random, unseeded jhash): fine for one balancer, but two nodes pick
 * differently, so a flow that moves to the other node at failover lands on another real and is
 * reset. `consistent` (what the executor uses): a seeded jhash of the flow (of the client network
 * with persistence or sh/mh) into a weighted Maglev table: every node picks the same real, and
 * a reply-first pickup rule (postrouting SNAT of a real's packet that opens a conntrack entry
 * back to its VIP) keeps server-first flows too. The dynamic affinity sets stay: they keep
 * ldirectord's persistence timeout across pool changes on the node that saw the client.
 */
export interface RenderOptions { selection?: "per-node" | "consistent"; seed?: number }

export class NftValidationError extends Error {
  override name = "NftValidationError";
}

export interface DesiredChain { chain: Chain; rules: Rule[]; hash: string }
export interface Desired {
  chains: DesiredChain[];
  sets: NftSet[];
  summary: { services: number; reals: number; fallbacks: number };
}

const KNOWN_SCHEDULERS = new Set(["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "mh", "sed", "nq", "fo", "ovf", "twos"]);
const VS_ID_RE = /^[A-Za-z0-9_.:[\]/@-]{1,100}$/;

const h8 = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 8);
export const realKey = (r: { address: string; port: number }) => `${r.address}:${r.port}`;
export const svcChainName = (vs: string) => `svc-${h8(vs)}`;
export const epChainName = (vs: string, real: string) => `ep-${h8(vs)}-${h8(real)}`;
export const affSetName = (vs: string, real: string) => `aff-${h8(vs)}-${h8(real)}`;

/** Rule comments end with `#<hash of the chain's desired rules>`: the drift detector. */
export const HASH_RE = /#([0-9a-f]{12})$/;
export function commentParts(c: string | null | undefined): { label: string; hash: string | null } {
  const m = c ? HASH_RE.exec(c) : null;
  return { label: (m ? c!.slice(0, m.index) : c ?? "").trim(), hash: m ? m[1] : null };
}

export type Selector = "numgen inc" | "numgen random" | "jhash ip saddr" | "fo";
export function selectorFor(scheduler: string): { selector: Selector; exact: boolean } {
  if (scheduler === "rr" || scheduler === "wrr") return { selector: "numgen inc", exact: true };
  if (scheduler === "sh" || scheduler === "mh") return { selector: "jhash ip saddr", exact: true };
  if (scheduler === "fo") return { selector: "fo", exact: true };
  return { selector: "numgen random", exact: false };
}

/** "255.255.255.0" or "24" → 24. Throws on non-contiguous masks. */
export function netmaskPrefix(mask: string): number {
  if (/^\d{1,2}$/.test(mask) && Number(mask) <= 32) return Number(mask);
  if (isIP(mask) !== 4) throw new NftValidationError(`persistence netmask ${JSON.stringify(mask)} is not an IPv4 netmask`);
  const n = mask.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const bits = n.toString(2).padStart(32, "0");
  if (!/^1*0*$/.test(bits)) throw new NftValidationError(`persistence netmask ${mask} is not contiguous`);
  return bits.indexOf("0") === -1 ? 32 : bits.indexOf("0");
}

function prefixToMask(p: number): string {
  const n = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

const isLoopback4 = (a: string) => isIP(a) === 4 && a.startsWith("127.");

/** True when some pool DNATs to 127.0.0.0/8, which needs net.ipv4.conf.all.route_localnet=1. */
export function needsRouteLocalnet(pools: PoolSpec[]): boolean {
  return pools.some((p) => p.fallback !== null && isLoopback4(p.fallback.address));
}

function fail(vs: string, msg: string): never {
  throw new NftValidationError(`virtual service ${vs}: ${msg}`);
}

/** Everything that goes into a command is checked here, before any nft text exists. */
export function validatePool(p: PoolSpec): void {
  if (typeof p.vs !== "string" || !VS_ID_RE.test(p.vs)) throw new NftValidationError(`invalid virtual service id ${JSON.stringify(p.vs)}`);
  const vs = p.vs;
  if (p.family !== "ipv4") fail(vs, `family ${p.family} is not supported by the nftables driver (table ip ${TABLE} is IPv4 only)`);
  if (p.protocol === "fwm") {
    if (!Number.isInteger(p.fwmark) || p.fwmark! < 1 || p.fwmark! > 0xffffffff) fail(vs, `invalid fwmark ${p.fwmark}`);
  } else {
    if (p.protocol !== "tcp" && p.protocol !== "udp") fail(vs, `invalid protocol ${JSON.stringify(p.protocol)}`);
    if (p.address === null || isIP(p.address) !== 4) fail(vs, `virtual address ${JSON.stringify(p.address)} is not an IPv4 address`);
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) fail(vs, `invalid port ${p.port}`);
  }
  if (!KNOWN_SCHEDULERS.has(p.scheduler)) fail(vs, `unknown scheduler ${JSON.stringify(p.scheduler)}`);
  if (p.persistence) {
    if (!Number.isInteger(p.persistence.timeout) || p.persistence.timeout < 1) fail(vs, `invalid persistence timeout ${p.persistence.timeout}`);
    netmaskPrefix(p.persistence.netmask);
  }
  const seen = new Set<string>();
  for (const r of p.reals) {
    const id = realKey(r);
    if (isIP(r.address) !== 4) fail(vs, `real ${JSON.stringify(r.address)} is not an IPv4 address`);
    if (!Number.isInteger(r.port) || r.port < 0 || r.port > 65535) fail(vs, `real ${id}: invalid port`);
    if (!Number.isInteger(r.weight) || r.weight < 0 || r.weight > 65535) fail(vs, `real ${id}: invalid weight ${r.weight}`);
    if (r.forwarding !== "masq") fail(vs, `real ${id}: forwarding "${r.forwarding}" (${r.forwarding === "gate" ? "LVS-DR" : "LVS-TUN"}) is not supported by the nftables driver, only masq (LVS-NAT)`);
    if (seen.has(id)) fail(vs, `real ${id} is listed twice`);
    seen.add(id);
  }
  if (p.fallback) {
    const f = p.fallback;
    if (isIP(f.address) !== 4) fail(vs, `fallback ${JSON.stringify(f.address)} is not an IPv4 address`);
    if (!Number.isInteger(f.port) || f.port < 0 || f.port > 65535) fail(vs, `fallback: invalid port ${f.port}`);
    // IPVS serves a local fallback itself whatever the forwarding method (ldirectord's classic
    // `fallback=127.0.0.1:80 gate`), so only a remote fallback must be masq.
    if (f.forwarding !== "masq" && !isLoopback4(f.address)) fail(vs, `fallback forwarding "${f.forwarding}" is not supported by the nftables driver, only masq`);
  }
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** `dnat to` for a packet of this service; a port needs a preceding l4proto match (nft 1.0.6). */
function dnatExpr(p: PoolSpec, address: string, port: number): string {
  // Port 0 keeps the packet's destination port (IPVS: real without port; fwmark services).
  if (p.protocol === "fwm" || port === 0) return `counter dnat to ${address}`;
  return `meta l4proto ${p.protocol} counter dnat to ${address}:${port}`;
}

function chainWithHash(chain: Chain, body: { expr: string; label: string }[]): DesiredChain {
  const hash = createHash("sha256").update(chain.name + "\n" + body.map((b) => `${b.expr} ${b.label}`).join("\n")).digest("hex").slice(0, 12);
  const rules: Rule[] = body.map((b) => ({ kind: "rule", chain: chain.name, expr: b.expr, comment: checkComment(`${b.label} #${hash}`.trim()) }));
  return { chain, rules, hash };
}

/** What the consistent hash keys on: the client network (persistence, sh, mh) or the whole flow. */
function hashKey(p: PoolSpec, prefix: number): string | null {
  const byClient = !!p.persistence || p.scheduler === "sh" || p.scheduler === "mh";
  if (!byClient) return p.protocol === "fwm" ? "ip saddr" : `ip saddr . ${p.protocol} sport`;
  // nft 1.0.6 cannot hash `ip saddr & mask`; a byte-aligned prefix of the source address can be
  // hashed as raw payload. A mask like /20 hashes the /16: clients of one /20 still share a real.
  const bytes = Math.floor(prefix / 8);
  return bytes === 4 ? "ip saddr" : bytes === 0 ? null : `@nh,96,${bytes * 8}`;
}

function servicePieces(p: PoolSpec, opts: RenderOptions = {}): { chains: DesiredChain[]; sets: NftSet[] } {
  const svc = svcChainName(p.vs);
  const reals = [...p.reals].sort((a, b) => realKey(a).localeCompare(realKey(b)));
  const prefix = p.persistence ? netmaskPrefix(p.persistence.netmask) : 32;
  const key = prefix === 32 ? "ip saddr" : `ip saddr & ${prefixToMask(prefix)}`;
  const chains: DesiredChain[] = [];
  const sets: NftSet[] = [];
  const svcBody: { expr: string; label: string }[] = [];

  for (const r of reals) {
    const rid = realKey(r);
    const ep = epChainName(p.vs, rid);
    const epBody: { expr: string; label: string }[] = [];
    if (p.persistence) {
      const aff = affSetName(p.vs, rid);
      sets.push({ kind: "set", name: aff, type: "ipv4_addr", flags: ["dynamic", "timeout"], timeoutS: p.persistence.timeout, comment: `${p.vs} ${rid}` });
      // A draining real (operator drain) takes no new connections at all: its affinity is not
      // looked up, so persistent clients are scheduled afresh; its set stays for a cancelled drain.
      if (!r.draining) svcBody.push({ expr: `${key} @${aff} goto ${ep}`, label: "" });
      // A separate rule: if the set is full the update breaks only this rule, the dnat still runs.
      epBody.push({ expr: `update @${aff} { ${key} }`, label: "" });
    }
    epBody.push({ expr: dnatExpr(p, r.address, r.port), label: rid });
    chains.push(chainWithHash({ kind: "chain", name: ep, comment: `${p.vs} ${rid}` }, epBody));
  }

  const active = reals.filter((r) => r.weight > 0);
  const { selector } = selectorFor(p.scheduler);
  if (active.length && selector === "fo") {
    const best = active.reduce((a, b) => (b.weight > a.weight ? b : a));
    svcBody.push({ expr: `goto ${epChainName(p.vs, realKey(best))}`, label: "" });
  } else if (active.length && opts.selection === "consistent") {
    const table = maglevTable(active.map((r) => ({ key: realKey(r), weight: r.weight })));
    const k = hashKey(p, prefix);
    if (k === null) {
      svcBody.push({ expr: `goto ${epChainName(p.vs, realKey(active[table[0]!]!))}`, label: "persistence /0: one real" });
    } else {
      const elems = tableRanges(table).map((x) => `${x.from === x.to ? x.from : `${x.from}-${x.to}`} : goto ${epChainName(p.vs, realKey(active[x.backend]!))}`);
      const seed = `0x${((opts.seed ?? 0x5eed) >>> 0).toString(16)}`;
      svcBody.push({ expr: `jhash ${k} mod ${MAGLEV_SIZE} seed ${seed} vmap { ${elems.join(", ")} }`, label: "maglev" });
    }
  } else if (active.length) {
    // Weights become ranges of `mod SUM`; dividing by the gcd keeps the numbers small.
    const g = active.reduce((a, r) => gcd(a, r.weight), 0);
    let lo = 0;
    const elems = active.map((r) => {
      const w = r.weight / g, range = w === 1 ? `${lo}` : `${lo}-${lo + w - 1}`;
      lo += w;
      return `${range} : goto ${epChainName(p.vs, realKey(r))}`;
    });
    svcBody.push({ expr: `${selector} mod ${lo} vmap { ${elems.join(", ")} }`, label: "" });
  }
  if (p.fallback) {
    svcBody.push({ expr: dnatExpr(p, p.fallback.address, p.fallback.port), label: "fallback" });
  } else if (!active.length) {
    if (p.protocol !== "udp") svcBody.push({ expr: "meta l4proto tcp reject with tcp reset", label: "empty pool" });
    if (p.protocol !== "tcp") svcBody.push({ expr: "reject", label: "empty pool" });
  }
  chains.unshift(chainWithHash({ kind: "chain", name: svc, comment: p.vs }, svcBody));
  return { chains, sets };
}

function dispatchExpr(p: PoolSpec): string {
  const svc = svcChainName(p.vs);
  return p.protocol === "fwm" ? `meta mark ${p.fwmark} goto ${svc}` : `ip daddr ${p.address} ${p.protocol} dport ${p.port} goto ${svc}`;
}

/**
 * Reply-first pickup (consistent selection only): a real's packet that opens a conntrack entry on
 * this node belongs to a flow another node set up; SNAT it back to the VIP so the client's next
 * packet matches the entry's reply tuple. Skipped for a real:port that serves several VIPs
 * (ambiguous), for port 0 and fwmark services, and for loopback fallbacks.
 */
function pickupRules(pools: PoolSpec[]): { expr: string; label: string }[] {
  const owners = new Map<string, PoolSpec[]>();
  for (const p of pools) {
    if (p.protocol === "fwm" || p.address === null || p.port === 0) continue;
    for (const r of p.reals) {
      if (r.port === 0 || isLoopback4(r.address)) continue;
      const k = `${p.protocol} ${r.address} ${r.port}`;
      owners.set(k, [...(owners.get(k) ?? []), p]);
    }
  }
  return [...owners].filter(([, ps]) => ps.length === 1).sort(([a], [b]) => a.localeCompare(b)).map(([k, [p]]) => {
    const [proto, addr, port] = k.split(" ");
    return { expr: `ip saddr ${addr} ${proto} sport ${port} counter snat to ${p!.address}:${p!.port}`, label: `pickup ${p!.vs}` };
  });
}

/** The complete desired content of table ip lvsflow. Throws NftValidationError on bad input. */
export function renderDesired(pools: PoolSpec[], opts: RenderOptions = {}): Desired {
  const sorted = [...pools].sort((a, b) => svcChainName(a.vs).localeCompare(svcChainName(b.vs)));
  const names = new Map<string, string>();
  const keys = new Map<string, string>();
  const chains: DesiredChain[] = [];
  const sets: NftSet[] = [];
  for (const p of sorted) {
    validatePool(p);
    const svc = svcChainName(p.vs);
    if (names.has(svc)) throw new NftValidationError(`virtual services ${names.get(svc)} and ${p.vs} map to the same chain ${svc}`);
    names.set(svc, p.vs);
    const k = p.protocol === "fwm" ? `fwm:${p.fwmark}` : `${p.protocol}:${p.address}:${p.port}`;
    if (keys.has(k)) throw new NftValidationError(`virtual services ${keys.get(k)} and ${p.vs} both claim ${k}`);
    keys.set(k, p.vs);
    const s = servicePieces(p, opts);
    chains.push(...s.chains);
    sets.push(...s.sets);
  }
  const dispatch = sorted.map((p) => ({ expr: dispatchExpr(p), label: p.vs }));
  const base = (hook: "prerouting" | "output", priority: string): DesiredChain =>
    chainWithHash({ kind: "chain", name: hook, base: { type: "nat", hook, priority } }, dispatch);
  const fallbacks = sorted.filter((p) => p.fallback).length;
  const reals = sorted.reduce((n, p) => n + p.reals.length, 0);
  return {
    // nft 1.0.6: `priority dstnat` is invalid on the output hook, -100 is its value.
    chains: [base("prerouting", "dstnat"), base("output", "-100"),
      ...(opts.selection === "consistent" ? [chainWithHash({ kind: "chain", name: "postrouting", base: { type: "nat", hook: "postrouting", priority: "srcnat" } }, pickupRules(sorted))] : []),
      ...chains],
    sets,
    summary: { services: sorted.length, reals, fallbacks },
  };
}
