// Issuing an operator command and waiting for every node's answer: used by the `lvsflow` CLI and
// by the dashboard. The command is one command.request event; each node's controller answers with
// command.ack once its own executor has applied the change (a drain answers again when done).
import type { NatsConnection } from "@nats-io/transport-node";
import { Event, makeEvent, type DataOf, type EventOf } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";

export type Ack = DataOf<"command.ack">;
export type Request = DataOf<"command.request">;

export interface NodeOutcome { applied?: Ack; done?: Ack; refused?: Ack; failed?: Ack }
export interface IssueResult {
  commandId: string;
  request: Request;
  /** The nodes whose answers were awaited. */
  nodes: string[];
  outcomes: Record<string, NodeOutcome>;
  /** Nodes that did not answer (in time). */
  missing: string[];
  ok: boolean;
}

export interface HeardNode { priority: number; owned: { group: string; term: number }[]; faults: string[]; at: number }

export interface IssueOptions {
  nc: NatsConnection;
  site: string;
  source: { service: "cli" | "dashboard"; node: string };
  /** Nodes that must answer; null = every node heard on the bus within `discoverMs`. */
  expectedNodes: string[] | null;
  discoverMs?: number;
  /** How long to wait for every node to apply. */
  waitMs?: number;
  /** Drain: also wait until every node reports the real gone (bounded by the drain timeout + margin). */
  waitDone?: boolean;
  onAck?: (a: Ack) => void;
  onConnections?: (counts: Record<string, number>) => void;
}

const dec = new TextDecoder();
const enc = new TextEncoder();

function parse(data: Uint8Array): EventOf<"command.ack" | "node.heartbeat" | "executor.connections"> | null {
  try {
    const p = Event.safeParse(JSON.parse(dec.decode(data)));
    if (!p.success) return null;
    return p.data.type === "command.ack" || p.data.type === "node.heartbeat" || p.data.type === "executor.connections" ? p.data : null;
  } catch { return null; }
}

/** Listens to heartbeats for `ms`: which LB nodes are alive, their priority and what they hold. */
export async function heardNodes(nc: NatsConnection, site: string, ms: number): Promise<Map<string, HeardNode>> {
  const out = new Map<string, HeardNode>();
  const sub = nc.subscribe(subjects.heartbeatAll(site));
  const t = setTimeout(() => sub.unsubscribe(), ms);
  for await (const m of sub) {
    const ev = parse(m.data);
    if (ev?.type === "node.heartbeat") out.set(ev.data.node, { priority: ev.data.priority, owned: ev.data.owned, faults: ev.data.faults, at: Date.now() });
  }
  clearTimeout(t);
  return out;
}

/** The node a group should move to when the operator names none: the best live node not holding it. */
export function failoverTarget(group: string, heard: Map<string, HeardNode>): string | string[] {
  const holders = [...heard].filter(([, h]) => h.owned.some((o) => o.group === group)).map(([n]) => n);
  const candidates = [...heard].filter(([n, h]) => !holders.includes(n) && h.faults.length === 0)
    .sort(([a, x], [b, y]) => y.priority - x.priority || (a < b ? -1 : 1));
  return candidates.length ? candidates[0]![0] : holders;
}

export async function issueCommand(req: Request, o: IssueOptions): Promise<IssueResult> {
  const { nc, site } = o;
  const waitMs = o.waitMs ?? 15_000;
  const acks: Ack[] = [];
  const heard = new Set<string>();
  let wake: (() => void) | null = null;
  const poke = () => { const w = wake; wake = null; w?.(); };
  const conns: Record<string, number> = {};
  let lastConns = "";

  const subs = [nc.subscribe(subjects.commandAckAll(site)), nc.subscribe(subjects.heartbeatAll(site))];
  if (req.action === "drain") subs.push(nc.subscribe(subjects.connectionsAll(site)));
  const ev = makeEvent("command.request", req, { source: o.source });
  for (const sub of subs) {
    void (async () => {
      for await (const m of sub) {
        const e = parse(m.data);
        if (!e) continue;
        if (e.type === "node.heartbeat") heard.add(e.data.node);
        else if (e.type === "command.ack" && e.data.commandId === ev.id) { acks.push(e.data); o.onAck?.(e.data); poke(); }
        else if (e.type === "executor.connections" && req.vs && req.real) {
          conns[e.data.node] = e.data.counts.filter((c) => c.real === req.real || c.real.startsWith(req.real + ":")).reduce((a, c) => a + c.active, 0);
          const s = JSON.stringify(conns);
          if (s !== lastConns) { lastConns = s; o.onConnections?.({ ...conns }); }
        }
      }
    })();
  }
  try {
    await nc.flush();
    if (o.expectedNodes === null) await new Promise((r) => setTimeout(r, o.discoverMs ?? 600));
    const nodes = o.expectedNodes ?? [...heard].sort();
    nc.publish(subjects.commandRequest(site, req.action), enc.encode(JSON.stringify(ev)));
    await nc.flush();

    const outcome = (): Record<string, NodeOutcome> => {
      const r: Record<string, NodeOutcome> = {};
      for (const a of acks) (r[a.node] ??= {})[a.status] = a;
      return r;
    };
    const answered = (n: string, phase: "applied" | "done") => {
      const x = outcome()[n];
      return !!x && !!(x.refused || x.failed || (phase === "applied" ? x.applied || x.done : x.done));
    };
    const waitUntil = async (phase: "applied" | "done", until: number) => {
      while (Date.now() < until && !nodes.every((n) => answered(n, phase))) {
        await new Promise<void>((r) => { wake = r; setTimeout(r, Math.min(250, Math.max(0, until - Date.now()))); });
      }
    };
    await waitUntil("applied", Date.now() + waitMs);
    if (o.waitDone && req.action === "drain") {
      const applied = nodes.filter((n) => outcome()[n]?.applied);
      if (applied.length) await waitUntil("done", Date.now() + (req.timeoutMs ?? 300_000) + waitMs);
    }
    const out = outcome();
    const phase = o.waitDone && req.action === "drain" ? "done" : "applied";
    const missing = nodes.filter((n) => !answered(n, phase));
    const ok = nodes.length > 0 && missing.length === 0 && nodes.every((n) => !out[n]?.refused && !out[n]?.failed);
    return { commandId: ev.id, request: req, nodes, outcomes: out, missing, ok };
  } finally {
    for (const s of subs) s.unsubscribe();
  }
}
