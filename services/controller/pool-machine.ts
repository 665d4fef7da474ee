// One XState machine per virtual service: turns health results into pool decisions.
// Time comes from the events (TICK/HEALTH carry `now`), never from a timer inside the machine,
// so a restored snapshot needs no re-armed delays and a replay reproduces every decision.
import { setup, assign, enqueueActions } from "xstate";
import type { VirtualService } from "../../shared/schemas/config.ts";
import type { PoolSpec } from "../../shared/schemas/events.ts";
import { initialPool, step, allKnown, desiredPool, type PoolState, type HealthInput, type Transition, type VantagePolicy } from "./pool-logic.ts";
import { applyOverrides, type OperatorOverride } from "../commands/overrides.ts";

export interface PoolContext {
  vs: VirtualService;
  policy: VantagePolicy;
  pool: PoolState;
  startedAt: number;
  /** Before publishing the first decision, wait this long for every real to be checked. */
  holdoffMs: number;
  now: number;
  /** Transitions caused by the last event, and what caused it. */
  transitions: Transition[];
  cause: string | null;
  /** JSON of the last desired pool emitted, to emit only on change. */
  lastDesired: string | null;
  /** Operator overrides in force, per real (lvsflow drain/disable/maintenance/weight). */
  overrides: Record<string, OperatorOverride>;
}

export type PoolEvent =
  | ({ type: "HEALTH"; now: number; eventId: string } & HealthInput)
  | { type: "TICK"; now: number }
  | { type: "CONFIG"; now: number; vs: VirtualService; eventId: string | null }
  /** The operator overrides now in force for this virtual service; eventId = the command behind the change. */
  | { type: "OVERRIDE"; now: number; overrides: Record<string, OperatorOverride>; eventId: string | null };

export interface PoolDecisionEmitted { type: "decision"; pool: PoolSpec; changes: Transition[]; fallbackActive: boolean; causationId: string | null; operator?: OperatorOverride[] }

export interface PoolInput { vs: VirtualService; policy: VantagePolicy; now: number; holdoffMs?: number }

const ready = (c: PoolContext) => c.lastDesired !== null || allKnown(c.pool) || c.now - c.startedAt >= c.holdoffMs;

export const poolMachine = setup({
  types: {} as { context: PoolContext; events: PoolEvent; input: PoolInput; emitted: PoolDecisionEmitted },
  actions: {
    absorb: assign(({ context, event }) => {
      if (event.type === "CONFIG") {
        const r = step(initialPool(event.vs, context.pool), event.vs, context.policy, event.now, null);
        return { vs: event.vs, pool: r.state, now: event.now, transitions: r.transitions, cause: event.eventId };
      }
      if (event.type === "OVERRIDE") {
        const r = step(context.pool, context.vs, context.policy, event.now, null);
        return { pool: r.state, now: event.now, transitions: r.transitions, cause: event.eventId ?? context.cause, overrides: event.overrides };
      }
      const r = step(context.pool, context.vs, context.policy, event.now, event.type === "HEALTH" ? event : null);
      // A TICK's transitions (e.g. holdoff over) have no single cause; keep the last one.
      return { pool: r.state, now: event.now, transitions: r.transitions, cause: event.type === "HEALTH" ? event.eventId : context.cause };
    }),
    decide: enqueueActions(({ context, enqueue }) => {
      const desired = applyOverrides(desiredPool(context.vs, context.pool), context.overrides, context.vs, (id) => context.pool.reals[id]?.state === "up");
      const key = JSON.stringify(desired);
      if (key === context.lastDesired) return;
      const first = context.lastDesired === null;
      // The first decision explains every real's state; later ones only what changed.
      const changes = first
        ? Object.entries(context.pool.reals).filter(([, r]) => r.state !== "unknown").map(([real, r]) => ({ real, from: "unknown" as const, to: r.state as "up" | "down", why: r.why }))
        : context.transitions;
      enqueue.assign({ lastDesired: key });
      const operator = Object.values(context.overrides ?? {});
      enqueue.emit({ type: "decision", pool: desired, fallbackActive: desired.fallback !== null, changes, causationId: context.cause, ...(operator.length ? { operator } : {}) });
    }),
  },
}).createMachine({
  id: "pool",
  context: ({ input }) => ({
    vs: input.vs, policy: input.policy, pool: initialPool(input.vs), startedAt: input.now, now: input.now,
    holdoffMs: input.holdoffMs ?? (input.vs.check.interval + input.vs.check.timeout) * 1000 + 1000,
    transitions: [], cause: null, lastDesired: null, overrides: {},
  }),
  initial: "waiting",
  on: { "*": { actions: "absorb", target: ".deciding" } },
  states: {
    deciding: {
      always: [
        { guard: ({ context }) => !ready(context), target: "waiting" },
        { guard: ({ context }) => context.pool.fallbackActive, target: "fallback", actions: "decide" },
        { target: "serving", actions: "decide" },
      ],
    },
    /** Just started: not every real has been checked yet. */
    waiting: {},
    /** At least one real is up. */
    serving: {},
    /** No real is up: the fallback server (if configured) takes the traffic. */
    fallback: {},
  },
});
