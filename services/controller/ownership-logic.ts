// Pure ownership logic for one floating address group, as seen from one voter.
//
// VRRP mode (fewer than 3 voters): the highest-priority live node owns the group; every change
// of owner carries a larger term; a node that sees a newer term held by another node releases at
// once; preempt and preempt delay as in VRRP. A partition of the bus between two nodes means both
// may own the group until it heals (exactly VRRP's behaviour).
//
// Quorum mode (LB nodes + witnesses >= 3 voters): every voter (each LB node's controller and each
// witness) votes, per group, for one LB node and publishes its votes with whom it hears and how
// long ago. A node owns the group only while a majority of votes for it is valid, and takes it
// only with such a majority and no live holder. A vote stays valid at the candidate only as long
// as the voter cannot have moved it: a voter moves its vote at once only away from a node it has
// not heard for the dead time (the candidate stops counting that vote `guardMs` before the
// voter's silence counter can get there), otherwise it first withdraws it for `holdMs`. So no
// vote counts for two nodes at one instant, two majorities cannot exist, and a partitioned
// minority lets go before the majority takes over. Preempt is a handover, never an overlap.
export interface PeerView {
  priority: number;
  /** Time of the last heartbeat heard from this node's executor. */
  lastSeen: number;
  /** Term under which the node says it holds this group, or null. */
  holds: number | null;
  faults: string[];
  /** Since when the node has reported faults continuously (null: none now). */
  faultedSince?: number | null;
}

/** What a voter (LB controller or witness) last told us. */
export interface VoterView {
  /** When we received it. */
  at: number;
  /** Voter → ms since that voter last heard it, at send time (only voters heard within its dead time). */
  hears: Record<string, number>;
  /** The sender (an LB node) could own some group: its own checks pass. */
  canOwn: boolean;
  /** Group → the sender's own checks pass for it (LB nodes only). */
  eligible?: Record<string, boolean>;
  /** Group → the LB node the sender votes for. */
  votes?: Record<string, string | null>;
  /** Group → the term under which the sender holds it or may still hold it (null: released). */
  owns?: Record<string, number | null>;
  /** Voter → send time (that voter's clock) of the latest view of it the sender had taken in. */
  acks?: Record<string, number>;
}

export interface OwnershipState {
  self: string;
  group: string;
  preempt: boolean;
  preemptDelayMs: number;
  deadMs: number;
  role: "owner" | "backup";
  term: number;
  peers: Record<string, PeerView>;
  /** Bus connection: while it is down this node keeps its role (it cannot tell a dead peer from a dead bus). */
  busUp: boolean;
  startedAt: number;
  /** VRRP mode: since when this node is the preferred candidate over a live owner (preempt delay).
   *  Quorum mode: since when the voter has seen a better candidate than the one it votes for. */
  preferredSince: number | null;
  /** Every voter: LB nodes and witnesses. Quorum mode when there are 3 or more. */
  voters: string[];
  views: Record<string, VoterView>;
  /** A vote stops counting this long before the voter could have moved it (transit and apply time). */
  guardMs: number;
  /** A voter withdraws its vote from a node it still hears for this long before voting again. */
  holdMs: number;
  /** When the role last changed. */
  roleSince: number;
  /** Step down while this node sees no healthy real of the group but a live peer sees some. */
  stepDownWithoutReals: boolean;
  /** Healthy reals of this group's virtual services as each node's prober sees them. */
  realsUp: Record<string, number>;
  /** The highest term ever seen held (terms only grow, also after the holder let go). */
  maxSeen?: number;
  /** Quorum mode: this voter's vote for the group, and since when it has been withdrawn. */
  vote?: string | null;
  withdrawnFrom?: string | null;
  withdrawnAt?: number;
  /** Since when this node's own checks pass (null: they fail now). */
  eligibleSince?: number | null;
}

export interface OwnershipDecision { role: "owner" | "backup"; term: number; owner: string | null; why: string }

export function alive(p: PeerView | undefined, now: number, deadMs: number): boolean {
  return !!p && now - p.lastSeen <= deadMs && p.faults.length === 0;
}

/**
 * When a message counts as heard: when it arrived, but never later than its sender's own time
 * plus `skewMs`. A bus link that stalls and recovers delivers old messages in a burst; dated by
 * their arrival they would pass for fresh votes. min() only ever shortens a vote's validity, so a
 * wrong clock costs availability, never safety (quorum mode wants clocks within ~skewMs, NTP).
 */
export function heardAt(receivedAt: number, sentAt: number, skewMs = 50): number {
  return Number.isFinite(sentAt) ? Math.min(receivedAt, sentAt + skewMs) : receivedAt;
}

/** Highest priority wins; ties go to the lexically smaller name, so every node agrees. */
export function better(a: [string, number], b: [string, number]): boolean {
  return a[1] > b[1] || (a[1] === b[1] && a[0] < b[0]);
}

export function quorumMode(voters: readonly string[]): boolean {
  return voters.length >= 3;
}

export function majority(voters: readonly string[]): number {
  return Math.floor(voters.length / 2) + 1;
}

/** Last time we heard anything from a node: its executor's heartbeat or its voter view. */
export function lastHeard(s: Pick<OwnershipState, "peers" | "views">, node: string): number {
  return Math.max(s.peers[node]?.lastSeen ?? -Infinity, s.views[node]?.at ?? -Infinity);
}

function heard(s: OwnershipState, node: string, now: number): boolean {
  return node === s.self ? s.busUp : now - lastHeard(s, node) <= s.deadMs;
}

/** "no healthy real seen from lb1 while lb2 sees 2", or null. */
function realsFault(s: OwnershipState, node: string, now: number): string | null {
  if (!s.stepDownWithoutReals || s.realsUp[node] !== 0) return null;
  const peer = Object.entries(s.realsUp).find(([n, k]) => n !== node && k > 0 && alive(s.peers[n], now, s.deadMs));
  return peer ? `no healthy real server seen from ${node} while ${peer[0]} sees ${peer[1]}` : null;
}

/** This node's own checks for the group: executor alive without faults, reals. */
export function selfEligible(s: OwnershipState, now: number): boolean {
  return alive(s.peers[s.self], now, s.deadMs) && !realsFault(s, s.self, now);
}

/** Could this node own the group now? Quorum mode also needs its own fresh word (its view). */
function eligible(s: OwnershipState, node: string, now: number): boolean {
  if (node === s.self) return selfEligible(s, now);
  if (!alive(s.peers[node], now, s.deadMs) || realsFault(s, node, now)) return false;
  if (!quorumMode(s.voters)) return true;
  const v = s.views[node];
  return !!v && now - v.at <= s.deadMs && (v.eligible?.[s.group] ?? v.canOwn);
}

export interface Votes { count: number; until: number; from: string[] }

/**
 * Valid votes for `node` now, and until when a majority of them stays valid if nothing new
 * arrives. Voter v's vote (in a view received at `at`, saying it heard `node` `ago` ms before)
 * counts until at + holdMs - guard (v waits holdMs before re-voting elsewhere) and until
 * at - ago + deadMs - guard (v may re-vote at once when it has not heard node for deadMs).
 */
export function votesFor(s: OwnershipState, node: string, now: number, sinceRecv = -Infinity): Votes {
  const expiries: number[] = [];
  const from: string[] = [];
  for (const v of s.voters) {
    let until: number;
    if (v === s.self) {
      if (s.vote !== node) continue;
      until = Infinity;
    } else {
      const view = s.views[v];
      if (!view || view.at < sinceRecv || view.votes?.[s.group] !== node) continue;
      const ago = v === node ? 0 : view.hears[node];
      if (ago === undefined) continue;
      until = Math.min(view.at + s.holdMs - s.guardMs, view.at - ago + s.deadMs - s.guardMs);
    }
    if (until >= now) { expiries.push(until); from.push(v); }
  }
  const need = majority(s.voters);
  expiries.sort((a, b) => b - a);
  return { count: from.length, until: expiries.length >= need ? expiries[need - 1]! : -Infinity, from };
}

/** Quorum mode: this voter's vote for the group now (withdraw, hold, re-vote). */
export function nextVote(s: OwnershipState, now: number): OwnershipState {
  if (!quorumMode(s.voters)) return s;
  const cur = s.vote ?? null;
  // Right after start we may have voted before a restart: say nothing for one dead time.
  if (now - s.startedAt < s.deadMs || !s.busUp) return s;
  const cands = Object.entries(s.peers).filter(([n]) => eligible(s, n, now)).sort((a, b) => (better([a[0], a[1].priority], [b[0], b[1].priority]) ? -1 : 1));
  const best = cands[0]?.[0] ?? null;
  const prio = (n: string) => s.peers[n]?.priority ?? 0;
  const holder = Object.entries(s.peers).filter(([n, p]) => p.holds !== null && heard(s, n, now) && eligible(s, n, now)).sort((a, b) => b[1].holds! - a[1].holds!)[0]?.[0] ?? null;
  // While withdrawn, keep judging from the node we withdrew from (so the preference persists).
  const base = cur ?? s.withdrawnFrom ?? null;
  let target: string | null;
  let preferredSince = s.preferredSince;
  if (base && eligible(s, base, now)) {
    target = base;
    if (s.preempt && best && best !== base && better([best, prio(best)], [base, prio(base)])) {
      preferredSince ??= now;
      if (now - preferredSince >= s.preemptDelayMs) target = best;
    } else preferredSince = null;
  } else {
    target = holder ?? best;
    preferredSince = null;
  }
  if (target === cur) return preferredSince === s.preferredSince ? s : { ...s, preferredSince };
  if (cur !== null) {
    // Away from a node that cannot use our vote any more (silent for the dead time: its count of
    // our vote has lapsed; or failing its own checks: it will not own), at once. Else withdraw first.
    // Never at once away from ourselves or a node that holds the group: it may still count on us.
    const holding = cur === s.self ? s.role === "owner" : s.peers[cur]?.holds != null || s.views[cur]?.owns?.[s.group] != null;
    if (!heard(s, cur, now) || (!eligible(s, cur, now) && !holding)) return { ...s, vote: target, withdrawnFrom: null, preferredSince };
    return { ...s, vote: null, withdrawnFrom: cur, withdrawnAt: now, preferredSince };
  }
  const w = s.withdrawnFrom;
  const wHolding = w === s.self ? s.role === "owner" : !!w && (s.peers[w]?.holds != null || s.views[w]?.owns?.[s.group] != null);
  if (w && target !== w && heard(s, w, now) && (eligible(s, w, now) || wHolding) && now - (s.withdrawnAt ?? 0) < s.holdMs && !letGo(s, w)) return preferredSince === s.preferredSince ? s : { ...s, preferredSince };
  return { ...s, vote: target, withdrawnFrom: null, preferredSince };
}

/**
 * Ends a withdrawal's hold early: node `w` has taken our withdrawal in (its view acknowledges a
 * view of ours sent after it) and says it does not hold the group, nor may its executor still hold
 * it, and its executor's heartbeat agrees. From then on `w` cannot count our vote, so moving it
 * cannot make two majorities; waiting out holdMs would only leave the group without an owner.
 * Our own withdrawal (w = self) keeps the timed hold: the view of ourselves is not on the bus.
 */
export function letGo(s: OwnershipState, w: string): boolean {
  if (w === s.self || s.withdrawnAt === undefined) return false;
  const v = s.views[w];
  return !!v && (v.acks?.[s.self] ?? -Infinity) > s.withdrawnAt && v.owns?.[s.group] == null && s.peers[w]?.holds == null;
}

export interface OwnExecutorView {
  /** When its last heartbeat was heard. */
  at: number;
  /** Term under which it says it holds (or is adding) the group's addresses, or null. */
  holds: number | null;
  /** Generation of the latest ownership decision for the group it has taken in; undefined: it does not say. */
  generation: number | undefined;
}

/** The last "owner" decision this controller sent for a group, and the last release after it. */
export interface OwnDecisions {
  owner: { generation: number; term: number } | null;
  release: { generation: number; at: number } | null;
}

/**
 * A controller's `owns` for its view: the term while it may hold the group. Besides "I own it",
 * its executor may still hold the addresses: it says so (heartbeat), or it has not yet taken in
 * the release that followed our last "owner" decision (an older take may still be applied). That
 * wait ends after holdMs at the latest, the hold voters fell back on before acknowledgements. A
 * node that never sent "owner" holds nothing, and a silent executor says nothing (null): as
 * before, its heartbeats decide. The term given is the one it may hold, never a newer one it only
 * learnt of (a backup adopts the holder's term: claiming it would look like a rival holder).
 */
export function ownsForView(s: Pick<OwnershipState, "role" | "term" | "deadMs" | "holdMs">, now: number, exec: OwnExecutorView | null, d: OwnDecisions): number | null {
  if (s.role === "owner") return s.term;
  if (!exec || now - exec.at > s.deadMs) return null;
  if (exec.holds !== null) return exec.holds;
  const { owner, release } = d;
  if (!owner || !release || release.generation < owner.generation) return null;
  const pending = (exec.generation === undefined || exec.generation < release.generation) && now - release.at < s.holdMs;
  return pending ? owner.term : null;
}

/** Decide this node's role now. Returns null when nothing changes. */
export function decide(s0: OwnershipState, now: number): { state: OwnershipState; decision: OwnershipDecision | null } {
  // No bus: keep the role (fail static). In quorum mode the executor's lease still runs out.
  if (!s0.busUp) return { state: s0, decision: null };
  const ok = selfEligible(s0, now);
  const s = nextVote(ok === (s0.eligibleSince != null) ? s0 : { ...s0, eligibleSince: ok ? now : null }, now);
  // Learn of peers' terms before acting: wait one dead time after start.
  if (now - s.startedAt < s.deadMs) return { state: s, decision: null };
  const Q = quorumMode(s.voters);
  const me: [string, number] = [s.self, s.peers[s.self]?.priority ?? 0];
  const maxTerm = Math.max(s.term, s.maxSeen ?? 0, ...Object.values(s.peers).map((p) => p.holds ?? 0));

  // The other node holding the group under the newest term, if it still counts as holding.
  // VRRP: while it is alive. Quorum: while heard (even faulted, for one dead time, so that it can
  // release first); a silent holder has lost its votes, which the majority we need proves.
  // A view may say "I own it" before the heartbeat that shows the addresses: believe either.
  const holdsOf = (n: string, p: PeerView) => p.holds ?? (Q && s.views[n]?.owns?.[s.group] != null && now - s.views[n]!.at <= s.deadMs ? s.views[n]!.owns![s.group]! : null);
  const holder = Object.entries(s.peers)
    .map(([n, p]) => [n, { ...p, holds: holdsOf(n, p) }] as [string, PeerView])
    .filter(([n, p]) => n !== s.self && p.holds !== null)
    .filter(([n, p]) => Q
      ? heard(s, n, now) && !(p.faults.length && p.faultedSince != null && now - p.faultedSince > s.deadMs)
      : alive(p, now, s.deadMs))
    .sort((a, b) => b[1].holds! - a[1].holds! || (better([a[0], a[1].priority], [b[0], b[1].priority]) ? -1 : 1))[0];

  if (s.role === "owner") {
    if (holder && (holder[1].holds! > s.term || (holder[1].holds === s.term && better([holder[0], holder[1].priority], me)))) {
      return change(s, now, { role: "backup", term: Math.max(s.term, holder[1].holds!), owner: holder[0], why: `${holder[0]} holds ${s.group} under ${holder[1].holds! > s.term ? "newer" : "the same"} term ${holder[1].holds} (mine ${s.term})` });
    }
    const own = s.peers[s.self];
    if (!alive(own, now, s.deadMs)) {
      const why = own && own.faults.length ? `own faults: ${own.faults.join(", ")}` : "own executor's heartbeat lost";
      return change(s, now, { role: "backup", term: s.term, owner: null, why });
    }
    const rf = realsFault(s, s.self, now);
    if (rf) return change(s, now, { role: "backup", term: s.term, owner: null, why: rf });
    if (Q) {
      const v = votesFor(s, s.self, now);
      if (v.count < majority(s.voters)) {
        const to = s.vote !== s.self ? Object.entries(s.peers).find(([n]) => n !== s.self && eligible(s, n, now) && better([n, s.peers[n]!.priority], me))?.[0] : undefined;
        const why = to && s.preempt
          ? `preempt: yield to ${to} (priority ${s.peers[to]!.priority} > ${me[1]}${s.preemptDelayMs > 0 ? `; preempt delay ${s.preemptDelayMs} ms` : ""})`
          : `lost quorum: valid votes from ${v.from.join(", ") || "nobody"} (${v.count} of ${s.voters.length} voters, majority ${majority(s.voters)})`;
        return change(s, now, { role: "backup", term: s.term, owner: to ?? null, why });
      }
      // The executor let the addresses go (its lease ran out while we could not renew it).
      if (own!.holds === null && now - s.roleSince > s.deadMs) {
        return change(s, now, { role: "backup", term: s.term, owner: null, why: "own executor released the addresses (lease expired)" });
      }
    }
    return { state: s, decision: null };
  }

  // Backup: may this node take the group?
  if (!selfEligible(s, now)) return { state: Q ? s : { ...s, preferredSince: null }, decision: null };
  const others = Object.entries(s.peers).filter(([n]) => n !== s.self && eligible(s, n, now));
  const preferred = others.every(([n, p]) => better(me, [n, p.priority]));
  const takeWhy = () => {
    const gone = Object.entries(s.peers).filter(([n, p]) => n !== s.self && p.holds !== null);
    const q = Q ? `; votes from ${votesFor(s, s.self, now).from.join(", ")}` : "";
    return gone.length
      ? `owner ${gone.map(([n, p]) => p.faults.length && now - p.lastSeen <= s.deadMs ? `${n} faulted (${p.faults.join(", ")})` : now - lastHeard(s, n) > s.deadMs ? `${n} silent for ${Math.round(now - lastHeard(s, n))} ms` : `${n} released`).join(", ")} (dead time ${s.deadMs} ms)${q}`
      : `no live owner; highest-priority live node (priority ${me[1]})${q}`;
  };
  if (Q) {
    // Count only votes cast after our own checks passed again: a vote for us from before a fault
    // may already have moved to another node (that view was in flight for less than guardMs).
    if (holder || votesFor(s, s.self, now, (s.eligibleSince ?? now) + s.guardMs).count < majority(s.voters)) return { state: s, decision: null };
    return change(s, now, { role: "owner", term: maxTerm + 1, owner: s.self, why: takeWhy() });
  }
  if (!holder) {
    if (!preferred) return { state: { ...s, preferredSince: null }, decision: null };
    return change(s, now, { role: "owner", term: maxTerm + 1, owner: s.self, why: takeWhy() });
  }
  if (s.preempt && better(me, [holder[0], holder[1].priority]) && preferred) {
    const since = s.preferredSince ?? now;
    if (now - since >= s.preemptDelayMs) {
      return change({ ...s, preferredSince: null }, now, { role: "owner", term: maxTerm + 1, owner: s.self, why: `preempt: priority ${me[1]} > ${holder[0]}'s ${holder[1].priority}${s.preemptDelayMs > 0 ? ` (preferred for ${Math.round(now - since)} ms, preempt delay ${s.preemptDelayMs} ms)` : ""}` });
    }
    return { state: { ...s, preferredSince: since }, decision: null };
  }
  return { state: s.preferredSince === null ? s : { ...s, preferredSince: null }, decision: null };
}

function change(s: OwnershipState, now: number, d: OwnershipDecision): { state: OwnershipState; decision: OwnershipDecision } {
  return { state: { ...s, role: d.role, term: d.term, roleSince: now }, decision: d };
}

/** Quorum mode: how long the executor may hold the group without hearing from us again. */
export function leaseFor(s: OwnershipState, now: number): number | null {
  if (!quorumMode(s.voters) || s.role !== "owner") return null;
  const v = votesFor(s, s.self, now);
  return Math.max(0, Math.floor(Math.min(v.until, now + s.deadMs) - now));
}

/** A voter's view to publish: every voter heard within the dead time, with ms since then. */
export function hearsOf(lastHeardAt: ReadonlyMap<string, number>, self: string, now: number, deadMs: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [v, at] of lastHeardAt) if (v !== self && now - at <= deadMs) out[v] = Math.max(0, Math.round(now - at));
  return out;
}
