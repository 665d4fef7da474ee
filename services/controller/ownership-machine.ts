// One XState machine per floating address group on each LB node: heartbeats and bus state in,
// ownership decisions (owner/backup with a term) out. Time comes from the events.
import { setup, assign, enqueueActions } from "xstate";
import { decide, type OwnershipState, type OwnershipDecision } from "./ownership-logic.ts";

export type OwnershipEvent =
  | { type: "HEARTBEAT"; now: number; node: string; priority: number; holds: number | null; faults: string[]; eventId: string }
  | { type: "TICK"; now: number; eventId?: string }
  | { type: "BUS"; now: number; up: boolean };

export interface OwnershipEmitted extends OwnershipDecision { type: "decision"; causationId: string | null }

export interface OwnershipInput { self: string; group: string; priority: number; preempt: boolean; preemptDelayMs: number; deadMs: number; now: number }

interface Ctx { s: OwnershipState; decision: OwnershipDecision | null; cause: string | null }

function absorb(c: Ctx, e: OwnershipEvent): Ctx {
  let s = c.s;
  let cause = c.cause;
  if (e.type === "HEARTBEAT") {
    s = { ...s, peers: { ...s.peers, [e.node]: { priority: e.priority, lastSeen: e.now, holds: e.holds, faults: e.faults } } };
    // Fail static across a controller restart: adopt what our own executor holds in the kernel.
    if (e.node === s.self && e.holds !== null && s.role === "backup" && s.term < e.holds && e.now - s.startedAt < s.deadMs) {
      s = { ...s, role: "owner", term: e.holds };
    }
    cause = e.eventId;
  } else if (e.type === "TICK" && e.eventId) {
    cause = e.eventId;
  } else if (e.type === "BUS") {
    // After a reconnect, give every peer a fresh dead time: silence while we were away proves nothing.
    const peers = e.up && !s.busUp ? Object.fromEntries(Object.entries(s.peers).map(([n, p]) => [n, { ...p, lastSeen: e.now }])) : s.peers;
    s = { ...s, busUp: e.up, peers };
  }
  const r = decide(s, e.now);
  return { s: r.state, decision: r.decision, cause };
}

export const ownershipMachine = setup({
  types: {} as { context: Ctx; events: OwnershipEvent; input: OwnershipInput; emitted: OwnershipEmitted },
  actions: {
    absorb: assign(({ context, event }) => absorb(context, event)),
    emitDecision: enqueueActions(({ context, enqueue }) => {
      if (context.decision) enqueue.emit({ type: "decision", ...context.decision, causationId: context.cause });
    }),
  },
}).createMachine({
  id: "ownership",
  context: ({ input }) => ({
    s: {
      self: input.self, group: input.group, preempt: input.preempt, preemptDelayMs: input.preemptDelayMs, deadMs: input.deadMs,
      role: "backup", term: 0, peers: {}, busUp: true, startedAt: input.now, preferredSince: null,
    },
    decision: null,
    cause: null,
  }),
  initial: "backup",
  on: { "*": { actions: ["absorb", "emitDecision"], target: ".deciding" } },
  states: {
    deciding: {
      always: [
        { guard: ({ context }) => !context.s.busUp, target: "frozen" },
        { guard: ({ context }) => context.s.role === "owner", target: "owner" },
        { target: "backup" },
      ],
    },
    /** This node holds the group's addresses. */
    owner: {},
    /** Another node (or nobody yet) holds them. */
    backup: {},
    /** No bus: keep the current role and addresses, decide nothing. */
    frozen: {},
  },
});
