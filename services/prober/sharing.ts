// Probers of one probe group share the checks: each target belongs to the live member with the
// highest rendezvous hash (HRW) of (member, target). Adding a member moves only ~1/n of the
// targets to it; removing one moves only its own targets, spread over the others. Pure: the
// service feeds heartbeats and the clock in, and asks who owns what.
import { Name } from "../../shared/schemas/config.ts";

/** FNV-1a over the string, then a murmur3 finalizer so nearby keys spread well. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The member that owns `key`; ties (astronomically rare) go to the smaller name. */
export function ownerOf(key: string, members: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1;
  for (const m of members) {
    const score = hash32(`${m}\u0000${key}`);
    if (score > bestScore || (score === bestScore && best !== null && m < best)) {
      best = m;
      bestScore = score;
    }
  }
  return best;
}

export interface MemberView { lastSeen: number; periodMs: number; leaving: boolean }

/** A member is gone after missing this many heartbeats. */
export const MISSED_HEARTBEATS = 2.5;

/** Heartbeat period for a model whose smallest check interval is `minIntervalMs`: a quarter of it, 100 ms to 1 s. */
export function heartbeatPeriodMs(minIntervalMs: number): number {
  return Math.min(1000, Math.max(100, Math.floor(minIntervalMs / 4)));
}

export class Membership {
  private readonly members = new Map<string, MemberView>();

  constructor(readonly self: string) {}

  /** Records a heartbeat; returns true when this changed who is alive. */
  heard(prober: string, now: number, periodMs: number, leaving: boolean): boolean {
    if (prober === this.self) return false;
    const before = this.alive(now).join(",");
    if (leaving) this.members.delete(prober);
    else this.members.set(prober, { lastSeen: now, periodMs, leaving });
    return this.alive(now).join(",") !== before;
  }

  /** Live members, this prober included, sorted. */
  alive(now: number): string[] {
    const out = [this.self];
    for (const [name, v] of this.members) {
      if (now - v.lastSeen <= v.periodMs * MISSED_HEARTBEATS) out.push(name);
    }
    return out.sort();
  }

  /** Forgets members long dead; returns true if the live set changed since `previous`. */
  expire(now: number, previous: readonly string[]): boolean {
    for (const [name, v] of this.members) if (now - v.lastSeen > v.periodMs * MISSED_HEARTBEATS * 4) this.members.delete(name);
    return this.alive(now).join(",") !== previous.join(",");
  }
}

/**
 * A probe group name from a flag or the environment: null when unset or empty, the name when
 * valid (a configuration name: lowercase letters, digits, - and _, so it is one plain token of
 * the subject probers.<group>.<prober>), else an Error naming where the value came from.
 */
export function probeGroupName(value: string | undefined | null, from: string): string | null {
  if (value === undefined || value === null || value === "") return null;
  if (!Name.safeParse(value).success) throw new Error(`${from}: invalid probe group name ${JSON.stringify(value)}: use lowercase letters, digits, - and _ (1-63 characters, starting with a letter or digit)`);
  return value;
}
