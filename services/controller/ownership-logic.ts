// Pure ownership logic for one floating address group, as seen from one LB node (VRRP-like):
// the highest-priority live node owns the group; every change of owner carries a larger term;
// a node that sees a newer term held by another node releases at once.
export interface PeerView {
  priority: number;
  /** Time of the last heartbeat heard from this node's executor. */
  lastSeen: number;
  /** Term under which the node says it holds this group, or null. */
  holds: number | null;
  faults: string[];
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
  /** When this node first became the preferred candidate over a live owner (for preempt delay). */
  preferredSince: number | null;
}

export interface OwnershipDecision { role: "owner" | "backup"; term: number; owner: string | null; why: string }

export function alive(p: PeerView | undefined, now: number, deadMs: number): boolean {
  return !!p && now - p.lastSeen <= deadMs && p.faults.length === 0;
}

/** Highest priority wins; ties go to the lexically smaller name, so every node agrees. */
export function better(a: [string, number], b: [string, number]): boolean {
  return a[1] > b[1] || (a[1] === b[1] && a[0] < b[0]);
}

/** Decide this node's role now. Returns null when nothing changes. */
export function decide(s: OwnershipState, now: number): { state: OwnershipState; decision: OwnershipDecision | null } {
  if (!s.busUp) return { state: s, decision: null };
  // Learn of peers' terms before acting: wait one dead time after start.
  if (now - s.startedAt < s.deadMs) return { state: s, decision: null };
  const live = Object.entries(s.peers).filter(([, p]) => alive(p, now, s.deadMs));
  const maxTerm = Math.max(s.term, ...Object.values(s.peers).map((p) => p.holds ?? 0));
  const others = live.filter(([n]) => n !== s.self);
  const holder = others.filter(([, p]) => p.holds !== null).sort((a, b) => (b[1].holds! - a[1].holds!))[0];
  const selfLive = alive(s.peers[s.self], now, s.deadMs);

  if (s.role === "owner") {
    if (holder && holder[1].holds! > s.term) {
      return change(s, { role: "backup", term: holder[1].holds!, owner: holder[0], why: `${holder[0]} holds ${s.group} under newer term ${holder[1].holds} (mine ${s.term})` });
    }
    if (!selfLive) {
      const f = s.peers[s.self];
      const why = f && f.faults.length ? `own faults: ${f.faults.join(", ")}` : "own executor's heartbeat lost";
      return change(s, { role: "backup", term: s.term, owner: null, why });
    }
    return { state: s, decision: null };
  }

  // Backup: may this node take the group?
  if (!selfLive) return { state: { ...s, preferredSince: null }, decision: null };
  const me: [string, number] = [s.self, s.peers[s.self]!.priority];
  const preferred = others.every(([n, p]) => better(me, [n, p.priority]));
  if (!holder) {
    if (!preferred) return { state: { ...s, preferredSince: null }, decision: null };
    const dead = Object.entries(s.peers).filter(([n, p]) => n !== s.self && p.holds !== null && !alive(p, now, s.deadMs));
    const why = dead.length
      ? `owner ${dead.map(([n, p]) => `${n} silent for ${now - p.lastSeen} ms`).join(", ")} (dead time ${s.deadMs} ms); highest-priority live node`
      : `no live owner; highest-priority live node (priority ${me[1]})`;
    return change(s, { role: "owner", term: maxTerm + 1, owner: s.self, why });
  }
  if (s.preempt && better(me, [holder[0], holder[1].priority]) && preferred) {
    const since = s.preferredSince ?? now;
    if (now - since >= s.preemptDelayMs) {
      return change({ ...s, preferredSince: null }, { role: "owner", term: maxTerm + 1, owner: s.self, why: `preempt: priority ${me[1]} > ${holder[0]}'s ${holder[1].priority}` });
    }
    return { state: { ...s, preferredSince: since }, decision: null };
  }
  return { state: { ...s, preferredSince: null }, decision: null };
}

function change(s: OwnershipState, d: OwnershipDecision): { state: OwnershipState; decision: OwnershipDecision } {
  return { state: { ...s, role: d.role, term: d.term }, decision: d };
}
