// The operator's picture of a site, built from what flows on the bus: heartbeats (who is alive,
// who holds which floating group), decisions (each node's pools and roles), health results (last
// check of each real), connection counts, and the controllers' replies to a status query (each
// real's state, why, operator overrides). Used by `lvsflow status` and by the dashboard. Pure
// apart from the clock passed in.
import type { Model } from "../../shared/schemas/config.ts";
import { realId } from "../../shared/schemas/config.ts";
import type { Event, DataOf } from "../../shared/schemas/events.ts";

type Override = NonNullable<DataOf<"decision.pool">["operator"]>[number];

export interface CheckView { prober: string; /** The prober's probe group (the vantage point it checks for), if any. */ group?: string | null; ok: boolean; streak: number; at: number; error: string | null; latencyMs: number | null; check: string; httpStatus: number | null }
export interface RealNodeView { inPool: boolean | null; weight: number | null; draining: boolean; state: "unknown" | "up" | "down" | null; why: string | null; admin: Override | null }
export interface RealView { real: string; nodes: Record<string, RealNodeView>; checks: Record<string, CheckView>; connections: Record<string, { active: number; at: number }> }
export interface ServiceView { vs: string; fallbackServer: string | null; fallback: Record<string, boolean>; poolState: Record<string, string>; generation: Record<string, number>; reals: Record<string, RealView> }
export interface NodeView { node: string; priority: number | null; owned: { group: string; term: number }[]; faults: string[]; lastSeen: number | null; appliedGeneration: number; driver: string | null; peerLostBy: string[] }
export interface GroupNodeView { role: "owner" | "backup"; term: number; why: string; pinned: string | null; at: number }
export interface GroupView { group: string; addresses: string[]; views: Record<string, GroupNodeView>; pinned: string | null }

export interface ClusterState { site: string; deadMs: number; nodes: Record<string, NodeView>; groups: Record<string, GroupView>; services: Record<string, ServiceView> }

/** The JSON of `lvsflow status --json` and of the dashboard's topology. Ages in ms at `at`. */
export interface ClusterSnapshot {
  site: string;
  at: string;
  nodes: { node: string; alive: boolean; priority: number | null; holds: { group: string; term: number }[]; faults: string[]; heartbeatAgeMs: number | null; appliedGeneration: number; driver: string | null }[];
  groups: { group: string; addresses: string[]; owner: string | null; holders: string[]; term: number; pinned: string | null; splitBrain: boolean; views: Record<string, GroupNodeView & { ageMs: number }> }[];
  services: {
    vs: string; fallbackServer: string | null; fallback: Record<string, boolean>; poolState: Record<string, string>;
    reals: {
      real: string;
      /** "up" / "down" / "unknown" as the controllers see it (worst first when they disagree). */
      health: string;
      admin: Override | null;
      nodes: Record<string, RealNodeView>;
      lastCheck: (CheckView & { ageMs: number }) | null;
      checks: (CheckView & { ageMs: number })[];
      connections: Record<string, number>;
    }[];
  }[];
}

export function emptyState(site: string, model?: Model | null): ClusterState {
  const st: ClusterState = { site, deadMs: model?.timers.deadMs ?? 300, nodes: {}, groups: {}, services: {} };
  for (const n of model?.nodes ?? []) st.nodes[n.name] = { node: n.name, priority: n.priority, owned: [], faults: [], lastSeen: null, appliedGeneration: 0, driver: null, peerLostBy: [] };
  for (const g of model?.groups ?? []) st.groups[g.name] = { group: g.name, addresses: g.addresses.map((a) => `${a.address}/${a.prefix}@${a.interface}`), views: {}, pinned: null };
  for (const vs of model?.virtualServices ?? []) {
    st.services[vs.id] = { vs: vs.id, fallbackServer: vs.fallback ? `${vs.fallback.address}:${vs.fallback.port}` : null, fallback: {}, poolState: {}, generation: {}, reals: {} };
    for (const r of vs.reals) st.services[vs.id]!.reals[realId(r)] = { real: realId(r), nodes: {}, checks: {}, connections: {} };
  }
  return st;
}

const svc = (st: ClusterState, vs: string) => (st.services[vs] ??= { vs, fallbackServer: null, fallback: {}, poolState: {}, generation: {}, reals: {} });
const real = (s: ServiceView, id: string) => (s.reals[id] ??= { real: id, nodes: {}, checks: {}, connections: {} });
const rnode = (r: RealView, node: string) => (r.nodes[node] ??= { inPool: null, weight: null, draining: false, state: null, why: null, admin: null });
const nodeOf = (st: ClusterState, n: string) => (st.nodes[n] ??= { node: n, priority: null, owned: [], faults: [], lastSeen: null, appliedGeneration: 0, driver: null, peerLostBy: [] });

/**
 * Folds one event into the state. Returns whether something an operator would see changed
 * (a heartbeat that only says "still here" does not), so live views can push at once.
 */
export function applyEvent(st: ClusterState, ev: Event, now: number): boolean {
  switch (ev.type) {
    case "node.heartbeat": {
      const h = ev.data;
      const n = nodeOf(st, h.node);
      const before = JSON.stringify([n.owned, n.faults, n.priority, n.lastSeen === null || now - n.lastSeen > st.deadMs]);
      Object.assign(n, { priority: h.priority, owned: h.owned, faults: h.faults, lastSeen: now, appliedGeneration: h.appliedGeneration, driver: h.driver, peerLostBy: [] });
      return before !== JSON.stringify([n.owned, n.faults, n.priority, false]);
    }
    case "peer.state": {
      const n = nodeOf(st, ev.data.peer);
      n.peerLostBy = ev.data.alive ? n.peerLostBy.filter((o) => o !== ev.data.observer) : [...new Set([...n.peerLostBy, ev.data.observer])];
      return true;
    }
    case "decision.pool": {
      const d = ev.data;
      const s = svc(st, d.pool.vs);
      // Decisions are re-sent every second: an older or the same generation changes nothing.
      if ((s.generation[d.node] ?? 0) >= d.generation) return false;
      s.generation[d.node] = d.generation;
      s.fallback[d.node] = d.fallbackActive;
      if (d.pool.fallback) s.fallbackServer = `${d.pool.fallback.address}:${d.pool.fallback.port}`;
      const inPool = new Map(d.pool.reals.map((r) => [realId(r), r]));
      for (const id of new Set([...Object.keys(s.reals), ...inPool.keys()])) {
        const rn = rnode(real(s, id), d.node);
        const r = inPool.get(id);
        rn.inPool = !!r;
        rn.weight = r ? r.weight : null;
        rn.draining = !!r?.draining;
        rn.admin = d.operator?.find((o) => o.real === id) ?? null;
      }
      for (const c of d.changes) { const rn = rnode(real(s, c.real), d.node); rn.state = c.to; rn.why = c.why; }
      return true;
    }
    case "decision.owner": {
      const d = ev.data;
      const g = (st.groups[d.group] ??= { group: d.group, addresses: d.addresses.map((a) => `${a.address}/${a.prefix}@${a.interface}`), views: {}, pinned: null });
      if (!g.addresses.length) g.addresses = d.addresses.map((a) => `${a.address}/${a.prefix}@${a.interface}`);
      const prev = g.views[d.node];
      g.views[d.node] = { role: d.role, term: d.term, why: d.why, pinned: prev?.pinned ?? g.pinned, at: Date.parse(ev.time) };
      return !prev || prev.role !== d.role || prev.term !== d.term;
    }
    case "health.result": {
      const d = ev.data;
      const r = real(svc(st, d.vs), d.real);
      r.checks[d.prober] = { prober: d.prober, ...(d.group ? { group: d.group } : {}), ok: d.ok, streak: d.streak, at: Date.parse(ev.time), error: d.error, latencyMs: d.latencyMs, check: d.check, httpStatus: d.httpStatus };
      return true;
    }
    case "health.summary": {
      let changed = false;
      const at = Date.parse(ev.time);
      for (const x of ev.data.results) {
        const r = real(svc(st, x.vs), x.real);
        const cur = r.checks[ev.data.prober];
        const t = at - x.ageMs;
        if (cur && cur.at >= t) continue;
        changed ||= !cur || cur.ok !== x.ok;
        r.checks[ev.data.prober] = { prober: ev.data.prober, ...(ev.data.group ? { group: ev.data.group } : {}), ok: x.ok, streak: x.streak, at: t, error: cur && cur.ok === x.ok ? cur.error : null, latencyMs: cur?.latencyMs ?? null, check: cur?.check ?? "summary", httpStatus: cur?.httpStatus ?? null };
      }
      return changed;
    }
    case "executor.connections": {
      let changed = false;
      const counts = new Map(ev.data.counts.map((c) => [`${c.vs}|${c.real}`, c.active]));
      for (const s of Object.values(st.services)) for (const r of Object.values(s.reals)) {
        const k = counts.get(`${s.vs}|${r.real}`) ?? 0;
        changed ||= (r.connections[ev.data.node]?.active ?? 0) !== k;
        r.connections[ev.data.node] = { active: k, at: now };
      }
      return changed;
    }
    case "controller.view": {
      const v = ev.data;
      for (const p of v.pools) {
        const s = svc(st, p.vs);
        s.poolState[v.node] = p.state;
        for (const x of p.reals) {
          const r = real(s, x.real);
          const rn = rnode(r, v.node);
          rn.state = x.state; rn.why = x.why; rn.admin = x.admin;
          const at = Date.parse(ev.time);
          for (const c of x.checks) {
            const t = at - c.ageMs, cur = r.checks[c.prober];
            if (!cur || cur.at < t - 50) r.checks[c.prober] = { prober: c.prober, ...(c.group ? { group: c.group } : {}), ok: c.ok, streak: c.streak, at: t, error: c.error, latencyMs: cur?.latencyMs ?? null, check: c.check, httpStatus: cur?.httpStatus ?? null };
          }
        }
      }
      for (const g of v.groups) {
        const gv = (st.groups[g.group] ??= { group: g.group, addresses: [], views: {}, pinned: null });
        gv.pinned = g.pinned;
        const cur = gv.views[v.node];
        gv.views[v.node] = { role: g.role, term: g.term, why: cur?.why ?? "", pinned: g.pinned, at: cur?.at ?? Date.parse(ev.time) };
      }
      return true;
    }
    default:
      return false;
  }
}

const worst = (xs: (string | null)[]) => (xs.includes("down") ? "down" : xs.includes("up") ? "up" : "unknown");

export function snapshot(st: ClusterState, now: number): ClusterSnapshot {
  const alive = (n: NodeView) => n.lastSeen !== null && now - n.lastSeen <= st.deadMs && !n.peerLostBy.length;
  const nodes = Object.values(st.nodes).sort((a, b) => a.node.localeCompare(b.node)).map((n) => ({
    node: n.node, alive: alive(n), priority: n.priority, holds: alive(n) ? n.owned : [], faults: n.faults,
    heartbeatAgeMs: n.lastSeen === null ? null : now - n.lastSeen, appliedGeneration: n.appliedGeneration, driver: n.driver,
  }));
  const groups = Object.values(st.groups).map((g) => {
    const holders = nodes.filter((n) => n.holds.some((o) => o.group === g.group)).map((n) => n.node);
    const terms = [...nodes.flatMap((n) => n.holds.filter((o) => o.group === g.group).map((o) => o.term)), ...Object.values(g.views).map((v) => v.term)];
    return {
      group: g.group, addresses: g.addresses, owner: holders.length === 1 ? holders[0]! : null, holders,
      term: terms.length ? Math.max(...terms) : 0, pinned: g.pinned, splitBrain: holders.length > 1,
      views: Object.fromEntries(Object.entries(g.views).sort().map(([n, v]) => [n, { ...v, ageMs: now - v.at }])),
    };
  });
  const services = Object.values(st.services).map((s) => ({
    vs: s.vs, fallbackServer: s.fallbackServer, fallback: s.fallback, poolState: s.poolState,
    reals: Object.values(s.reals).map((r) => {
      const checks = Object.values(r.checks).sort((a, b) => b.at - a.at).map((c) => ({ ...c, ageMs: Math.max(0, now - c.at) }));
      return {
        real: r.real,
        health: worst(Object.values(r.nodes).map((x) => x.state)),
        admin: Object.values(r.nodes).map((x) => x.admin).find((a) => a) ?? null,
        nodes: r.nodes,
        lastCheck: checks[0] ?? null,
        checks,
        connections: Object.fromEntries(Object.entries(r.connections).filter(([, c]) => now - c.at <= 5000).map(([n, c]) => [n, c.active])),
      };
    }),
  }));
  return { site: st.site, at: new Date(now).toISOString(), nodes, groups, services };
}

const ago = (ms: number | null) => (ms === null ? "never" : ms < 1000 ? `${Math.round(ms)} ms ago` : `${(ms / 1000).toFixed(1)} s ago`);

/** The human form of `lvsflow status`. */
export function renderStatus(v: ClusterSnapshot): string {
  const out: string[] = [`site ${v.site} at ${v.at}`];
  out.push("LB nodes:");
  for (const n of v.nodes) {
    out.push(`  ${n.node.padEnd(8)} ${n.alive ? "alive" : "DEAD "} priority ${n.priority ?? "?"}  heartbeat ${ago(n.heartbeatAgeMs)}  holds ${n.holds.map((o) => `${o.group}@term${o.term}`).join(", ") || "-"}${n.faults.length ? `  FAULTS: ${n.faults.join(", ")}` : ""}`);
  }
  out.push("Floating groups:");
  for (const g of v.groups) {
    out.push(`  ${g.group} (${g.addresses.join(", ")}): owner ${g.holders.join(" + ") || "NONE"}, term ${g.term}${g.pinned ? `, pinned to ${g.pinned} by an operator` : ""}${g.splitBrain ? "  ** MORE THAN ONE HOLDER **" : ""}`);
    for (const [n, o] of Object.entries(g.views)) out.push(`    ${n}: ${o.role} term ${o.term}${o.why ? ` — ${o.why}` : ""}`);
  }
  out.push("Virtual services:");
  for (const s of v.services) {
    const fb = Object.entries(s.fallback).filter(([, a]) => a).map(([n]) => n);
    out.push(`  ${s.vs}  fallback${s.fallbackServer ? ` ${s.fallbackServer}` : ""}: ${fb.length ? `ACTIVE on ${fb.join(", ")}` : "standby"}`);
    for (const r of s.reals) {
      const nodes = Object.entries(r.nodes).sort().map(([n, x]) => `${n} ${x.inPool === null ? "?" : x.inPool ? (x.draining ? "w0 draining" : `w${x.weight}`) : "out"}`).join(", ");
      const lc = r.lastCheck ? `${r.lastCheck.ok ? "ok" : "FAIL"} x${r.lastCheck.streak} by ${r.lastCheck.prober}${r.lastCheck.group ? ` (group ${r.lastCheck.group})` : ""} ${ago(r.lastCheck.ageMs)}${r.lastCheck.error ? ` (${r.lastCheck.error})` : ""}` : "no check yet";
      const conns = Object.entries(r.connections).map(([n, c]) => `${n} ${c}`).join(", ");
      out.push(`    ${r.real.padEnd(21)} ${r.health.toUpperCase().padEnd(7)} ${nodes}  | last check ${lc}${conns ? `  | connections ${conns}` : ""}${r.admin ? `  | ${r.admin.state.toUpperCase()}: ${r.admin.why}` : ""}`);
    }
  }
  return out.join("\n") + "\n";
}
