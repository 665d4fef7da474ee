// Pure pool-membership logic for one virtual service: per-prober rise/fall (ldirectord's
// failurecount, plus a rise threshold), the vantage policy across probers, quiescent vs removal,
// and the fallback server. No I/O, no clock: time arrives in the inputs.
import type { VirtualService } from "../../shared/schemas/config.ts";
import { realId } from "../../shared/schemas/config.ts";
import type { PoolSpec } from "../../shared/schemas/events.ts";

export type RealState = "unknown" | "up" | "down";
export type VantagePolicy = "any" | "all" | "majority";

export interface ProberView { ok: boolean; streak: number; at: number; state: RealState; error: string | null; check: string }
export interface RealRecord { state: RealState; probers: Record<string, ProberView>; why: string }

export interface PoolState {
  reals: Record<string, RealRecord>;
  fallbackActive: boolean;
}

export interface HealthInput { real: string; prober: string; ok: boolean; streak: number; at: number; error: string | null; check: string }
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

/** Combine fresh probers' verdicts under the vantage policy; stale probers don't vote. */
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
    return v.ok ? `${p}: ${v.streak} consecutive success(es)` : `${p}: ${v.streak} consecutive failure(s) (${v.check}: ${v.error ?? "failed"})`;
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
    const prev = rec.probers[input.prober]?.state ?? rec.state;
    const pstate = proberState(prev, input.ok, input.streak, vs);
    reals[input.real] = { ...rec, probers: { ...rec.probers, [input.prober]: { ok: input.ok, streak: input.streak, at: input.at, state: pstate, error: input.error, check: input.check } } };
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
  const anyUp = Object.values(reals).some((r) => r.state === "up");
  return { state: { reals, fallbackActive: !anyUp && vs.fallback !== null }, transitions };
}

/** All reals have a verdict: the controller may publish without guessing. */
export function allKnown(state: PoolState): boolean {
  return Object.values(state.reals).every((r) => r.state !== "unknown");
}

/** The desired kernel state for this virtual service. */
export function desiredPool(vs: VirtualService, state: PoolState): PoolSpec {
  const reals: PoolSpec["reals"] = [];
  for (const r of vs.reals) {
    const st = state.reals[realId(r)]?.state ?? "unknown";
    if (st === "up") reals.push({ address: r.address, port: r.port, forwarding: r.forwarding, weight: r.weight, lowerThreshold: r.lowerThreshold, upperThreshold: r.upperThreshold });
    else if (st === "down" && vs.quiescent) reals.push({ address: r.address, port: r.port, forwarding: r.forwarding, weight: 0, lowerThreshold: r.lowerThreshold, upperThreshold: r.upperThreshold });
  }
  return {
    vs: vs.id, protocol: vs.protocol, family: vs.family, address: vs.address, port: vs.port, fwmark: vs.fwmark,
    scheduler: vs.scheduler, persistence: vs.persistence, reals,
    fallback: state.fallbackActive && vs.fallback ? { ...vs.fallback } : null,
  };
}
