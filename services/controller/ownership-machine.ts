// One XState machine per floating address group on each LB node: heartbeats, voter views, the
// probers' view of the reals and the bus state in; ownership decisions (owner/backup with a
// term) out. Time comes from the events, so every transition is a pure function of its inputs.
import { setup, assign, enqueueActions } from "xstate";
import { decide, type OwnershipState, type OwnershipDecision } from "./ownership-logic.ts";
import type { DataOf } from "../../shared/schemas/events.ts";

export type OwnershipEvent =
  | { type: "HEARTBEAT"; now: number; node: string; priority: number; holds: number | null; faults: string[]; eventId: string; at?: number }
  | { type: "VIEW"; now: number; voter: string; hears: Record<string, number>; canOwn: boolean; eligible?: Record<string, boolean>; votes?: Record<string, string | null>; owns?: Record<string, number | null>; acks?: Record<string, number>; eventId?: string; at?: number }
  | { type: "REALS"; now: number; realsUp: Record<string, number> }
  | { type: "TICK"; now: number; eventId?: string }
  | { type: "BUS"; now: number; up: boolean };

/** A voter's view from the bus as the machine's VIEW input (shared by controllers and witnesses). */
export function viewInput(v: DataOf<"voter.view">, now: number, at: number): OwnershipEvent {
  return { type: "VIEW", now, at, voter: v.voter, hears: v.hears, canOwn: v.canOwn, eligible: v.eligible, votes: v.votes, owns: v.owns, acks: v.acks };
}

export interface OwnershipEmitted extends OwnershipDecision { type: "decision"; causationId: string | null }

export interface OwnershipInput {
  self: string; group: string; priority: number; preempt: boolean; preemptDelayMs: number; deadMs: number; now: number;
  /** LB nodes + witnesses; quorum mode with 3 or more. Default: none (VRRP mode). */
  voters?: string[];
  /** Default: a third of the dead time. */
  guardMs?: number;
  /** Default: twice the dead time (only the voluntary preempt handover waits it; a longer hold
   *  keeps late views of a voter from costing the owner that voter's vote). */
  holdMs?: number;
  stepDownWithoutReals?: boolean;
}

interface Ctx { s: OwnershipState; decision: OwnershipDecision | null; cause: string | null }

function absorb(c: Ctx, e: OwnershipEvent): Ctx {
  let s = c.s;
  let cause = c.cause;
  if (e.type === "HEARTBEAT") {
    const prev = s.peers[e.node];
    const faultedSince = e.faults.length ? (prev?.faultedSince ?? e.now) : null;
    // `at`: when the message was sent at the latest (a message delivered late is not fresh news).
    s = { ...s, peers: { ...s.peers, [e.node]: { priority: e.priority, lastSeen: Math.max(prev?.lastSeen ?? -Infinity, e.at ?? e.now), holds: e.holds, faults: e.faults, faultedSince } }, maxSeen: Math.max(s.maxSeen ?? 0, e.holds ?? 0) };
    // Fail static across a controller restart: adopt what our own executor holds in the kernel.
    if (e.node === s.self && e.holds !== null && s.role === "backup" && s.term < e.holds && e.now - s.startedAt < s.deadMs) {
      s = { ...s, role: "owner", term: e.holds, roleSince: e.now };
    }
    cause = e.eventId;
  } else if (e.type === "VIEW") {
    s = { ...s, views: { ...s.views, [e.voter]: { at: e.at ?? e.now, hears: e.hears, canOwn: e.canOwn, eligible: e.eligible, votes: e.votes, owns: e.owns, ...(e.acks ? { acks: e.acks } : {}) } }, maxSeen: Math.max(s.maxSeen ?? 0, e.owns?.[s.group] ?? 0) };
    if (e.eventId) cause = e.eventId;
  } else if (e.type === "REALS") {
    s = { ...s, realsUp: e.realsUp };
  } else if (e.type === "TICK" && e.eventId) {
    cause = e.eventId;
  } else if (e.type === "BUS") {
    // After a reconnect, give every peer a fresh dead time: silence while we were away proves
    // nothing. Views are not refreshed: support must be earned again by new views (quorum).
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
      voters: input.voters ?? [], views: {}, guardMs: input.guardMs ?? Math.round(input.deadMs / 3), holdMs: input.holdMs ?? 2 * input.deadMs, roleSince: input.now,
      stepDownWithoutReals: input.stepDownWithoutReals ?? false, realsUp: {},
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
