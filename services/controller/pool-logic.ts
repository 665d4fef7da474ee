// Pure pool-membership logic for one virtual service: per-vantage-point rise/fall (ldirectord's
// failurecount, plus a rise threshold), the vantage policy across vantage points, quiescent vs
// removal, and the fallback server. No I/O, no clock: time arrives in the inputs.
//
// A vantage point is a probe group when the result names one, else the prober: the members of a
// group share the checks (each real has one checker at a time) and stand in the same place, so
// they vote once. A member that dies is replaced by another member's newer result instead of
// voting on with its stale word until it ages out.
import type { VirtualService } from "../../shared/schemas/config.ts";
import { realId } from "../../shared/schemas/config.ts";
import type { PoolSpec } from "../../shared/schemas/events.ts";

export type RealState = "unknown" | "up" | "down";
export type VantagePolicy = "any" | "all" | "majority";

export interface ProberView {
  ok: boolean;
  /** The vantage point's consecutive equal results (a group's counts across a handover, see vantageStreak). */
  streak: number;
  at: number; state: RealState; error: string | null; check: string;
  /** Who sent the last result; absent in records from before probe groups (then it is the key). */
  prober?: string;
  group?: string | null;
  /** Part of `streak` counted by earlier members of the group, before the current member's run. */
  carried?: number;
}
/** Per vantage point (vantageKey), its last word on the real. */
export interface RealRecord { state: RealState; probers: Record<string, ProberView>; why: string }

export interface PoolState {
  reals: Record<string, RealRecord>;
  fallbackActive: boolean;
}

export interface HealthInput { real: string; prober: string; group?: string | null; ok: boolean; streak: number; at: number; error: string | null; check: string }

/** The vantage point of a result: its probe group, else its prober. Groups get a prefix so a group never shares a key with a prober of the same name. */
export function vantageKey(prober: string, group?: string | null): string {
  return group ? `group:${group}` : prober;
}

/** How a vantage point is named in the why text: "lb1", or "group g1 (via prober lb2)". */
export function vantageLabel(key: string, v: ProberView): string {
  if (!v.group) return key;
  const carried = v.carried ? `, ${v.carried} of them seen by another member before the handover` : "";
  return `group ${v.group} (via prober ${v.prober ?? "?"}${carried})`;
}
export interface Transition { real: string; from: RealState; to: "up" | "down"; why: string }

export function initialPool(vs: VirtualService, previous?: PoolState): PoolState {
  const reals: Record<string, RealRecord> = {};
  for (const r of vs.reals) {
    const id = realId(r);
    // A reload keeps the health state of reals that did not change.
    reals[id] = previous?.reals[id] ?? { state: "unknown", probers: {}, why: "not checked yet" };
  }
  return { reals, fallbackActive: previous?.fallbackActive ?? false };
}

/** How long a prober's last word counts: three intervals plus a timeout. */
export function freshnessMs(vs: VirtualService): number {
  return (3 * vs.check.interval + vs.check.timeout) * 1000;
}

/** One prober's verdict after a result: ldirectord's failurecount, and riseCount to come back. */
export function proberState(prev: RealState, ok: boolean, streak: number, vs: VirtualService): RealState {
  if (ok) return streak >= vs.check.riseCount || prev === "up" ? "up" : prev;
  // Nothing to protect on an unknown real: a first failure marks it down.
  if (prev === "unknown") return "down";
  return streak >= vs.check.failureCount ? "down" : prev;
}

/**
 * The vantage point's streak for a new result. Without a group it is the prober's own streak. In
 * a group, a handover (another member now checks the real; its own streak starts at 1) continues
 * the group's run when the results agree and the held one is fresh: the group is one vantage
 * point and failurecount/rise count its consecutive results, whoever ran them; restarting at 1
 * would add up to failurecount-1 intervals to a removal whenever a member dies. A member whose
 * own run is already longer (two members checked the real for a moment around a membership
 * change) does not add its results to the other's: the longer run counts, never the sum. A run
 * that broke (a different result, or silence longer than freshness) starts from the member's streak.
 */
export function vantageStreak(held: ProberView | undefined, key: string, input: HealthInput, vs: VirtualService): { streak: number; carried: number } {
  if (!input.group || !held || held.ok !== input.ok || input.at - held.at > freshnessMs(vs)) return { streak: input.streak, carried: 0 };
  const carried = held.carried ?? 0;
  // The same member going on with its run (a repeated summary included).
  if ((held.prober ?? key) === input.prober && input.streak >= held.streak - carried) return { streak: carried + input.streak, carried };
  // Another member, or the same one starting again (it lost the real and got it back).
  if (input.streak === 1) return { streak: held.streak + 1, carried: held.streak };
  const streak = Math.max(input.streak, held.streak);
  return { streak, carried: streak - input.streak };
}

/** Combine fresh vantage points' verdicts under the vantage policy; stale ones don't vote. */
export function aggregate(rec: RealRecord, now: number, vs: VirtualService, policy: VantagePolicy): { state: RealState; voters: string[] } {
  const fresh = Object.entries(rec.probers).filter(([, v]) => now - v.at <= freshnessMs(vs) && v.state !== "unknown");
  if (fresh.length === 0) return { state: rec.state, voters: [] }; // fail static: keep what we had
  const down = fresh.filter(([, v]) => v.state === "down").length;
  const n = fresh.length;
  const isDown = policy === "any" ? down >= 1 : policy === "all" ? down === n : down > n / 2;
  return { state: isDown ? "down" : "up", voters: fresh.map(([p]) => p) };
}

function explain(to: RealState, rec: RealRecord, voters: string[], vs: VirtualService, policy: VantagePolicy): string {
  const parts = voters.map((p) => {
    const v = rec.probers[p]!;
    const who = vantageLabel(p, v);
    return v.ok ? `${who}: ${v.streak} consecutive success(es)` : `${who}: ${v.streak} consecutive failure(s) (${v.check}: ${v.error ?? "failed"})`;
  });
  const rule = to === "down" ? `failurecount ${vs.check.failureCount}` : `rise ${vs.check.riseCount}`;
  return `${rule} reached; vantage policy ${policy}; ${parts.join("; ")}`;
}

/** Apply one health result (or a TICK when `input` is null) and return the transitions it caused. */
export function step(state: PoolState, vs: VirtualService, policy: VantagePolicy, now: number, input: HealthInput | null): { state: PoolState; transitions: Transition[] } {
  const reals = { ...state.reals };
  if (input) {
    const rec = reals[input.real];
    if (!rec) return { state, transitions: [] }; // a real not (or no longer) in this virtual service
    const key = vantageKey(input.prober, input.group);
    const held = rec.probers[key];
    // Within one vantage point a result older than the one held (a dead member's last summary
    // arriving after its successor's result) never overwrites it; time still moves on below.
    if (!held || input.at >= held.at) {
      const { streak, carried } = vantageStreak(held, key, input, vs);
      const pstate = proberState(held?.state ?? rec.state, input.ok, streak, vs);
      const view: ProberView = { ok: input.ok, streak, at: input.at, state: pstate, error: input.error, check: input.check };
      // Ungrouped records stay as they always were (the key is the prober).
      if (input.group) Object.assign(view, { prober: input.prober, group: input.group, carried });
      const probers = { ...rec.probers, [key]: view };
      // A prober now reporting for a group no longer votes on its own (restarted into a group).
      if (key !== input.prober) delete probers[input.prober];
      reals[input.real] = { ...rec, probers };
    }
  }
  const transitions: Transition[] = [];
  for (const [id, rec] of Object.entries(reals)) {
    const { state: agg, voters } = aggregate(rec, now, vs, policy);
    if (agg !== rec.state && agg !== "unknown") {
      const why = explain(agg, rec, voters, vs, policy);
      transitions.push({ real: id, from: rec.state, to: agg, why });
      reals[id] = { ...rec, state: agg, why };
    }
  }
  const q = poolQuorum(vs, reals, state.fallbackActive);
  const fallbackActive = vs.fallback !== null && !q.has;
  // A quorum that changed is part of the why of the transitions that changed it.
  if (fallbackActive !== state.fallbackActive && q.rule && transitions.length) {
    const note = fallbackActive ? `; quorum lost (${q.rule}): the fallback replaces every real` : `; quorum regained (${q.rule})`;
    for (const t of transitions) { t.why += note; reals[t.real] = { ...reals[t.real]!, why: t.why }; }
  }
  return { state: { reals, fallbackActive }, transitions };
}

/**
 * Does the pool serve from its reals? ldirectord's rule unless the virtual service sets keepalived's
 * quorum/hysteresis: any real up. With them: the up reals' total configured weight, kept while
 * ≥ quorum − hysteresis, regained at ≥ quorum + hysteresis (`lost`: the fallback serves now).
 */
export function poolQuorum(vs: VirtualService, reals: Record<string, RealRecord>, lost: boolean): { has: boolean; rule: string | null } {
  const q = vs.quorum ?? 1, h = vs.hysteresis ?? 0;
  if (q === 1 && h === 0) return { has: Object.values(reals).some((r) => r.state === "up"), rule: null };
  const live = vs.reals.filter((r) => reals[realId(r)]?.state === "up").reduce((n, r) => n + r.weight, 0);
  const need = lost ? q + h : Math.max(0, q - h);
  const has = live >= need;
  return { has, rule: `live weight ${live} ${has ? "≥" : "<"} ${need} = quorum ${q} ${lost ? "+" : "−"} hysteresis ${h}` };
}

/** All reals have a verdict: the controller may publish without guessing. */
export function allKnown(state: PoolState): boolean {
  return Object.values(state.reals).every((r) => r.state !== "unknown");
}

/** The desired kernel state for this virtual service. */
export function desiredPool(vs: VirtualService, state: PoolState): PoolSpec {
  const reals: PoolSpec["reals"] = [];
  // Quorum lost with reals still up (keepalived's quorum): they are treated as down meanwhile.
  const lost = state.fallbackActive && vs.fallback !== null;
  for (const r of vs.reals) {
    const known = state.reals[realId(r)]?.state ?? "unknown";
    const st = lost && known === "up" ? "down" : known;
    if (st === "up") reals.push({ address: r.address, port: r.port, forwarding: r.forwarding, weight: r.weight, lowerThreshold: r.lowerThreshold, upperThreshold: r.upperThreshold });
    else if (st === "down" && vs.quiescent) reals.push({ address: r.address, port: r.port, forwarding: r.forwarding, weight: 0, lowerThreshold: r.lowerThreshold, upperThreshold: r.upperThreshold });
  }
  return {
    vs: vs.id, protocol: vs.protocol, family: vs.family, address: vs.address, port: vs.port, fwmark: vs.fwmark,
    scheduler: vs.scheduler, persistence: vs.persistence, reals,
    fallback: state.fallbackActive && vs.fallback ? { ...vs.fallback } : null,
  };
}
