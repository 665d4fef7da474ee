// When is a drained real done? When every node that counts connections has reported, since the
// drain began, that the real has none left — or when the drain's timeout has passed. Pure.
//
// Connection counts come from each node's executor (nftables driver: conntrack, ESTABLISHED
// entries whose original destination is the virtual service and whose reply source is the real).
// A report lists only reals with connections; a real missing from a fresh report has none.
import type { OverrideEntry } from "../../shared/schemas/events.ts";
import type { DrainStatus } from "./overrides.ts";

export interface ConnReport { node: string; at: number; source: string; counts: Map<string, number> }

/** A node's report counts while younger than this; older ones are a node that stopped counting. */
export const REPORT_FRESH_MS = 3500;

export const connKey = (vs: string, real: string) => `${vs}|${real}`;

export function drainStatus(e: OverrideEntry, reports: Iterable<ConnReport>, now: number, freshMs = REPORT_FRESH_MS): DrainStatus & { left: Record<string, number> | null } {
  const timeoutMs = typeof e.value === "number" ? e.value : 0;
  const recent = [...reports].filter((r) => now - r.at <= freshMs);
  const left: Record<string, number> = {};
  for (const r of [...recent].sort((a, b) => a.node.localeCompare(b.node))) left[r.node] = r.counts.get(connKey(e.vs ?? "", e.real ?? "")) ?? 0;
  const total = Object.values(left).reduce((a, b) => a + b, 0);
  const list = () => Object.entries(left).map(([n, c]) => `${n} ${c}`).join(", ");
  const elapsed = ((now - e.at) / 1000).toFixed(1);
  if (now - e.at >= timeoutMs) {
    return { done: true, why: `timeout ${timeoutMs / 1000} s passed${recent.length ? ` with ${total} connection(s) left (${list()})` : " (no node counts connections)"}`, left: recent.length ? left : null };
  }
  if (!recent.length) return { done: false, why: `no node reports connection counts; removal at the ${timeoutMs / 1000} s timeout`, left: null };
  // Every counting node must have counted after the drain began.
  const waiting = recent.filter((r) => r.at < e.at).map((r) => r.node);
  if (waiting.length) return { done: false, why: `waiting for a count from ${waiting.join(", ")}`, left };
  if (total === 0) return { done: true, why: `no connections left (${list()}) after ${elapsed} s`, left };
  // No elapsed time here: the text travels in the pool's overrides, which should change only with the counts.
  return { done: false, why: `${total} connection(s) left (${list()})`, left };
}
