// Operator overrides: a replicated last-writer-wins map (key → value, with the command's time and
// id), how a command becomes entries of it, and what the entries mean for one virtual service's
// pool. Pure: no I/O, no clock.
//
// Why a LWW map and not a central store: every controller must keep applying the overrides while
// Redis or any other node is away (fail static). Each controller keeps the map on its own disk and
// re-sends it on the bus; maps merge by (time, command id), so nodes converge whatever the order
// in which they heard the commands, and a cleared entry (value null) still beats an older set.
import type { Model, VirtualService } from "../../shared/schemas/config.ts";
import { realId } from "../../shared/schemas/config.ts";
import type { DataOf, OverrideEntry, PoolSpec } from "../../shared/schemas/events.ts";
import { resolveReals, resolveVs } from "./resolve.ts";

export type OperatorOverride = NonNullable<DataOf<"decision.pool">["operator"]>[number];
export type OverrideMap = Map<string, OverrideEntry>;

/** Default drain timeout when the command gives none. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 300_000;

export const newer = (a: OverrideEntry, b: OverrideEntry) => a.at > b.at || (a.at === b.at && a.commandId > b.commandId);

/** Merges entries into the map (in place). Returns the keys that changed. */
export function mergeEntries(map: OverrideMap, entries: readonly OverrideEntry[]): string[] {
  const changed: string[] = [];
  for (const e of entries) {
    const cur = map.get(e.key);
    if (!cur || newer(e, cur)) { map.set(e.key, e); changed.push(e.key); }
  }
  return changed;
}

/** True when `other` lacks an entry of `map` or holds an older one: it needs our copy. */
export function behind(map: OverrideMap, other: readonly OverrideEntry[]): boolean {
  const o = new Map(other.map((e) => [e.key, e]));
  for (const [k, e] of map) { const x = o.get(k); if (!x || newer(e, x)) return true; }
  return false;
}

export interface CommandInput { id: string; at: number; data: DataOf<"command.request"> }

/**
 * Turns a command into override entries, or a reason to refuse it. Every controller runs this on
 * the same configuration, so they all agree.
 */
export function entriesFor(model: Model, cmd: CommandInput): OverrideEntry[] | string {
  const d = cmd.data;
  const base = { at: cmd.at, commandId: cmd.id, by: d.issuedBy };
  const entry = (kind: OverrideEntry["kind"], vs: string | null, real: string | null, group: string | null, value: OverrideEntry["value"]): OverrideEntry =>
    ({ key: [kind, group ?? vs ?? "", real ?? ""].join("|"), kind, vs, real, group, value, ...base });
  const vsOf = () => {
    if (!d.vs) return "this command needs a virtual service (VIP:PORT)";
    return resolveVs(model, d.vs);
  };
  switch (d.action) {
    case "disable": case "enable": case "maintenance": {
      if (!d.real) return `${d.action} needs a real server`;
      if (d.action === "maintenance" && d.on === null) return "maintenance needs on or off";
      const t = resolveReals(model, d.real, null);
      if (typeof t === "string") return t;
      const reals = [...new Set(t.map((x) => x.real))];
      if (d.action === "maintenance") return reals.map((r) => entry("maintenance", null, r, null, d.on ? true : null));
      const out = reals.map((r) => entry("disabled", null, r, null, d.action === "disable" ? true : null));
      // enable also ends drains of the real: it is back in service everywhere.
      if (d.action === "enable") for (const x of t) out.push(entry("drain", x.vs, x.real, null, null));
      return out;
    }
    case "drain": case "weight": {
      const vs = vsOf();
      if (typeof vs === "string") return vs;
      if (!d.real) return `${d.action} needs a real server`;
      const t = resolveReals(model, d.real, vs);
      if (typeof t === "string") return t;
      const real = t[0]!.real;
      if (d.action === "drain") return [entry("drain", vs.id, real, null, d.timeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS)];
      // A new weight puts a drained real back in service.
      return [entry("weight", vs.id, real, null, d.weight), entry("drain", vs.id, real, null, null)];
    }
    case "failover": {
      if (!d.group) return "failover needs a floating group";
      if (!model.groups.some((g) => g.name === d.group)) return `no floating group ${d.group} (configured: ${model.groups.map((g) => g.name).join(", ") || "none"})`;
      if (d.to !== null && !model.nodes.some((n) => n.name === d.to)) return `${d.to} is not a configured node (${model.nodes.map((n) => n.name).join(", ")})`;
      return [entry("pin", null, null, d.group, d.to)];
    }
  }
}

export interface DrainStatus { done: boolean; why: string }
/** Drain progress of one entry, decided by the caller from connection counts and time. */
export type DrainLookup = (e: OverrideEntry) => DrainStatus;

const short = (id: string) => id.slice(0, 8);
const by = (e: OverrideEntry) => `${e.by} (command ${short(e.commandId)})`;

/** The operator override in force for each real of a virtual service (the strongest one wins). */
export function overridesFor(vs: VirtualService, map: OverrideMap, drain: DrainLookup): Record<string, OperatorOverride> {
  const out: Record<string, OperatorOverride> = {};
  for (const r of vs.reals) {
    const id = realId(r);
    const get = (k: string) => { const e = map.get(k); return e && e.value !== null ? e : undefined; };
    const dis = get(`disabled||${id}`), mnt = get(`maintenance||${id}`), drn = get(`drain|${vs.id}|${id}`), wgt = get(`weight|${vs.id}|${id}`);
    const st = drn ? drain(drn) : null;
    if (dis) out[id] = { real: id, state: "disabled", weight: null, why: `disabled by ${by(dis)}`, commandId: dis.commandId };
    else if (drn && st!.done) out[id] = { real: id, state: "drained", weight: null, why: `drained on order of ${by(drn)}: ${st!.why}`, commandId: drn.commandId };
    else if (drn) out[id] = { real: id, state: "draining", weight: 0, why: `draining on order of ${by(drn)}: ${st!.why}`, commandId: drn.commandId };
    else if (mnt) out[id] = { real: id, state: "maintenance", weight: 0, why: `maintenance by ${by(mnt)}`, commandId: mnt.commandId };
    else if (wgt) out[id] = { real: id, state: "weight", weight: Number(wgt.value), why: `weight ${wgt.value} set by ${by(wgt)}`, commandId: wgt.commandId };
  }
  return out;
}

/** The floating group's pinned owner, if an operator moved it. */
export function pinFor(group: string, map: OverrideMap): { node: string; why: string; commandId: string } | null {
  const e = map.get(`pin|${group}|`);
  if (!e || typeof e.value !== "string") return null;
  return { node: e.value, why: `operator failover of ${group} to ${e.value} by ${by(e)}`, commandId: e.commandId };
}

/**
 * The desired pool with the operator's overrides applied: disabled and drained reals leave it,
 * draining ones get weight 0 and no new connections (not even persistent clients), maintenance
 * gives weight 0 (quiescent), a weight override applies while the real is up. When the overrides
 * leave no real with a weight, the fallback server takes over, as when every real is down.
 */
export function applyOverrides(pool: PoolSpec, ov: Record<string, OperatorOverride> | undefined, vs: VirtualService, isUp: (real: string) => boolean): PoolSpec {
  // undefined: a machine restored from a snapshot taken before overrides existed.
  if (!ov || !Object.keys(ov).length) return pool;
  const reals: PoolSpec["reals"] = [];
  for (const r of pool.reals) {
    const id = realId(r);
    const o = ov[id];
    if (!o) reals.push(r);
    else if (o.state === "disabled" || o.state === "drained") continue;
    else if (o.state === "draining") reals.push({ ...r, weight: 0, draining: true });
    else if (o.state === "maintenance") reals.push({ ...r, weight: 0 });
    else reals.push({ ...r, weight: isUp(id) ? o.weight ?? r.weight : r.weight });
  }
  const hadActive = pool.reals.some((r) => r.weight > 0);
  const active = reals.some((r) => r.weight > 0);
  const fallback = pool.fallback ?? (hadActive && !active && vs.fallback ? { ...vs.fallback } : null);
  return { ...pool, reals, fallback: active ? null : fallback };
}
