// What a voter (an LB node's controller or a witness) has heard of the others: when it last heard
// each (its `hears`, and their silence) and which of their views it has taken in (its `acks`).
// Shared by controllers and witnesses so both publish the same thing the same way.
import type { EventOf } from "../../shared/schemas/events.ts";
import { heardAt, hearsOf } from "./ownership-logic.ts";
import { viewInput, type OwnershipEvent } from "./ownership-machine.ts";

export class Hearing {
  private readonly lastHeardAt = new Map<string, number>();
  private readonly viewSentAt = new Map<string, number>();

  constructor(readonly self: string) {}

  /** Notes a message from `node` sent at `sentIso`; returns when it counts as heard (heardAt). */
  heard(node: string, now: number, sentIso: string): number {
    const at = heardAt(now, Date.parse(sentIso));
    this.lastHeardAt.set(node, Math.max(this.lastHeardAt.get(node) ?? -Infinity, at));
    return at;
  }

  /** Another voter's view: noted, and turned into the machines' VIEW input (null for our own). */
  view(ev: EventOf<"voter.view">, now: number): OwnershipEvent | null {
    if (ev.data.voter === this.self) return null;
    const at = this.heard(ev.data.voter, now, ev.time);
    this.viewSentAt.set(ev.data.voter, Date.parse(ev.time));
    return viewInput(ev.data, now, at);
  }

  /** Voters heard within the dead time, with ms since (voter.view `hears`). */
  hears(now: number, deadMs: number): Record<string, number> {
    return hearsOf(this.lastHeardAt, this.self, now, deadMs);
  }

  /** Send time of the latest view taken in from each voter heard within the dead time (voter.view `acks`). */
  acks(now: number, deadMs: number): Record<string, number> {
    return Object.fromEntries([...this.viewSentAt].filter(([v]) => now - (this.lastHeardAt.get(v) ?? -Infinity) <= deadMs));
  }
}
