// `lvsflow why <vip[:port]|real> [--at TIME]`: the causal chain behind the last change of a real
// server or a VIP — probe evidence (or a peer's silence, an operator command, a configuration
// version) → the controllers' decisions with the thresholds that fired → the kernel operations
// each node's executor applied, with their read-back — with the time of every step and the
// latency from the step before. Built from the audit history (and, for heartbeats, which are not
// audited, from the controllers' input journals).
import type { Redis } from "ioredis";
import type { Event, EventOf } from "../../shared/schemas/events.ts";
import { keys } from "../../shared/redis.ts";
import { parseCommon } from "./options.ts";
import { describe } from "./describe.ts";
import { connectRedis, parseTime, readHistory, redisFor } from "./audit.ts";
import { decodeEntries } from "../controller/journal.ts";
import { vantageKey } from "../controller/pool-logic.ts";

type Decision = EventOf<"decision.pool"> | EventOf<"decision.owner">;

export interface Step {
  kind: "evidence" | "cause" | "config" | "decision" | "kernel";
  time: string;
  node: string;
  text: string;
  /** Milliseconds since the step this one follows from. */
  afterMs: number | null;
  event: Event | null;
  /** Kernel operations (executor.applied), one per line. */
  ops?: string[];
  /** A cause that could not be found (the chain is then incomplete). */
  missing?: boolean;
}

export interface Chain {
  title: string;
  steps: Step[];
  /** Evidence (or cause), decision and kernel change all found. */
  complete: boolean;
  latency: { detectionMs: number | null; decideMs: number | null; applyMs: number | null; kernelMs: number | null; totalMs: number | null };
}

export interface WhyResult { target: string; kind: "real" | "vip"; at: string; chains: Chain[] }

/** Last heartbeat of `peer` heard by `observer` before `before`, from the observer's input journal. */
export type HeartbeatLookup = (observer: string, peer: string, before: number) => number | null;

/** A machine input found in a controller's journal (causes that are telemetry: heartbeats, summaries). */
export interface JournalInput { t: number; machine: string; e: { type: string; [k: string]: unknown } }

/** What `why` may read from the controllers' input journals. */
export interface JournalLookup { heartbeat: HeartbeatLookup; input(node: string, eventId: string, before: number): JournalInput | null }

function describeInput(node: string, i: JournalInput): string {
  const e = i.e;
  if (e.type === "HEARTBEAT") return `heartbeat of ${e.node} heard by ${node} (priority ${e.priority}, holds ${e.holds === null ? "nothing" : `term ${e.holds}`}${Array.isArray(e.faults) && e.faults.length ? `, faults: ${e.faults.join(", ")}` : ""}) — from its input journal`;
  if (e.type === "HEALTH") return `${e.check === "summary" ? "health summary" : "health result"} of prober ${e.prober}${e.group ? ` (group ${e.group})` : ""}: ${e.real} ${e.ok ? "ok" : "FAIL"} x${e.streak} — from ${node}'s input journal`;
  return `${e.type} to ${i.machine} on ${node} — from its input journal`;
}

const ms = (e: { time: string }) => Date.parse(e.time);
const addrOf = (real: string) => real.replace(/:\d+$/, "");

function realMatches(real: string, target: string): boolean {
  return real === target || addrOf(real) === target;
}

/** A VIP target: "198.51.100.50", "198.51.100.50:80" or a virtual service id "tcp:198.51.100.50:80". */
function vsMatches(vs: string, target: string): boolean {
  return vs === target || vs.endsWith(":" + target) || vs.split(":").slice(-2, -1)[0] === target;
}

function ownerMatches(d: EventOf<"decision.owner">["data"], target: string): boolean {
  const addr = target.replace(/^[a-z]+:/, "").replace(/:\d+$/, "");
  return d.group === target || d.addresses.some((a) => a.address === addr);
}

function appliedFor(d: Decision, evs: Event[]): EventOf<"executor.applied"> | null {
  const direct = evs.find((e): e is EventOf<"executor.applied"> => e.type === "executor.applied" && e.causationId === d.id);
  if (direct) return direct;
  // The executor coalesces decisions that arrive during one apply: the next apply of that node covers it.
  const kind = d.type === "decision.pool" ? "pool" : "owner";
  return evs.find((e): e is EventOf<"executor.applied"> => e.type === "executor.applied" && e.data.node === d.data.node && e.data.kind === kind && e.data.generation >= d.data.generation && ms(e) >= ms(d)) ?? null;
}

function step(kind: Step["kind"], ev: Event, prev: number | null, text = describe(ev)): Step {
  return { kind, time: ev.time, node: ev.source.node, text, afterMs: prev === null ? null : ms(ev) - prev, event: ev };
}

/** The run of results of each vantage point (a probe group, else a prober) that a decision on `real` rests on: its last equal results. */
function streakRuns(d: EventOf<"decision.pool">, real: string, wantOk: boolean, evs: Event[]): EventOf<"health.result">[] {
  const results = evs.filter((e): e is EventOf<"health.result"> => e.type === "health.result" && e.data.vs === d.data.pool.vs && e.data.real === real && ms(e) <= ms(d));
  const byVantage = new Map<string, EventOf<"health.result">[]>();
  for (const r of results) {
    const k = vantageKey(r.data.prober, r.data.group);
    (byVantage.get(k) ?? byVantage.set(k, []).get(k)!).push(r);
  }
  const out: EventOf<"health.result">[] = [];
  for (const list of byVantage.values()) {
    const run: EventOf<"health.result">[] = [];
    for (let i = list.length - 1; i >= 0 && list[i]!.data.ok === wantOk; i--) {
      run.unshift(list[i]!);
      // A group's run goes on across a handover: the member before may have begun it.
      const before = list[i - 1];
      if (list[i]!.data.streak === 1 && !(before && before.data.prober !== list[i]!.data.prober)) break;
    }
    out.push(...run.slice(-10));
  }
  return out.sort((a, b) => ms(a) - ms(b));
}

/** Why one decision was taken: its evidence or cause, the decision, the kernel change. */
export function chainOf(d: Decision, evs: Event[], prevOf: Map<string, Decision | null>, journal: JournalLookup | null, real: string | null): Chain {
  const steps: Step[] = [];
  const byId = new Map(evs.map((e) => [e.id, e]));
  const cause = d.causationId ? byId.get(d.causationId) ?? null : null;
  let firstEvidence: number | null = null;
  let lastEvidence: number | null = null;
  const evidence = (s: Step) => { steps.push(s); const t = Date.parse(s.time); firstEvidence ??= t; lastEvidence = t; };

  if (d.type === "decision.pool") {
    const changes = real ? d.data.changes.filter((c) => realMatches(c.real, real)) : d.data.changes;
    for (const c of changes) {
      let prev: number | null = null;
      for (const r of streakRuns(d, c.real, c.to === "up", evs)) {
        evidence({ ...step("evidence", r, prev, `${describe(r)}${r.id === d.causationId ? "   <- tipped the decision" : ""}`), kind: "evidence" });
        prev = ms(r);
      }
    }
  }
  if (cause && cause.type !== "health.result") {
    if (cause.type === "peer.state") {
      const heard = journal?.heartbeat(cause.data.observer, cause.data.peer, ms(cause)) ?? null;
      if (heard !== null) evidence({ kind: "evidence", time: new Date(heard).toISOString(), node: cause.data.observer, text: `last heartbeat of ${cause.data.peer} heard by ${cause.data.observer} (from its input journal)`, afterMs: null, event: null });
      evidence(step("cause", cause, heard));
    } else {
      evidence(step("cause", cause, null));
    }
  }
  // A decision under a new configuration version: the configuration is (part of) the cause.
  const prev = prevOf.get(d.id) ?? null;
  if (d.configVersion && prev && prev.configVersion !== d.configVersion) {
    const pushed = evs.find((e) => e.type === "config.pushed" && e.data.version === d.configVersion && ms(e) <= ms(d));
    if (pushed) evidence(step("config", pushed, null));
    // The controller's own report first: it is the service that took the decision.
    const reports = evs.filter((e): e is EventOf<"config.applied"> => e.type === "config.applied" && e.data.version === d.configVersion && e.data.node === d.data.node);
    const applied = reports.find((e) => e.data.service === "controller" || e.data.service === "node") ?? reports[0];
    if (applied) steps.push(step("config", applied, pushed ? ms(pushed) : null, `${describe(applied)}   (announced once every service took it)`));
    if (!pushed && !applied) evidence({ kind: "config", time: d.time, node: d.data.node, text: `configuration ${d.configVersion} in force (was ${prev.configVersion})`, afterMs: null, event: null });
  }
  if (!cause && d.causationId && !steps.some((s) => s.kind === "evidence" && s.text.includes("tipped"))) {
    // Telemetry (a heartbeat, a health summary) is not audited, but the controller journaled it.
    const input = journal?.input(d.data.node, d.causationId, ms(d)) ?? null;
    if (input) evidence({ kind: "cause", time: new Date(input.t).toISOString(), node: d.data.node, text: describeInput(d.data.node, input), afterMs: null, event: null });
    else if (!steps.length) steps.push({ kind: "cause", time: d.time, node: d.data.node, text: `cause ${d.causationId} is not in the audit history (a health summary or a heartbeat: telemetry)`, afterMs: null, event: null, missing: true });
  }
  steps.push(step("decision", d, lastEvidence));
  const applied = appliedFor(d, evs);
  if (applied) steps.push({ ...step("kernel", applied, ms(d)), ops: applied.data.ops });
  const what = d.type === "decision.pool"
    ? (real ? d.data.changes.filter((c) => realMatches(c.real, real)).map((c) => `real ${c.real} of ${d.data.pool.vs} went ${c.to.toUpperCase()}`).join(", ") : "")
      || (d.data.changes.length ? `${d.data.pool.vs}: ${d.data.changes.map((c) => `${c.real} ${c.to.toUpperCase()}`).join(", ")}` : "")
      || `${d.data.pool.vs} changed${steps.some((s) => s.kind === "config") ? ` with configuration ${d.configVersion}` : ""}`
    : `group ${d.data.group}: ${d.data.node} became ${d.data.role.toUpperCase()} (term ${d.data.term})`;
  return {
    title: `${what} — decided by ${d.data.node}`,
    steps,
    complete: steps.some((s) => s.kind !== "decision" && s.kind !== "kernel" && !s.missing) && !!applied,
    latency: {
      detectionMs: firstEvidence !== null ? ms(d) - firstEvidence : null,
      decideMs: lastEvidence !== null ? ms(d) - lastEvidence : null,
      applyMs: applied ? ms(applied) - ms(d) : null,
      kernelMs: applied ? applied.data.durationMs : null,
      totalMs: applied && firstEvidence !== null ? ms(applied) - firstEvidence : null,
    },
  };
}

/** Decisions in time order with the previous decision of the same node and machine. */
function previousDecisions(evs: Event[]): Map<string, Decision | null> {
  const last = new Map<string, Decision>();
  const out = new Map<string, Decision | null>();
  for (const e of evs) {
    if (e.type !== "decision.pool" && e.type !== "decision.owner") continue;
    const key = `${e.data.node}|${e.type === "decision.pool" ? e.data.pool.vs : e.data.group}`;
    out.set(e.id, last.get(key) ?? null);
    last.set(key, e);
  }
  return out;
}

/** Builds the chains of the last `count` changes of the target at or before `at`. */
export function why(target: string, at: number, evs: Event[], journal: JournalLookup | null = null, count = 1): WhyResult {
  const isReal = evs.some((e) => (e.type === "health.result" && realMatches(e.data.real, target)) || (e.type === "decision.pool" && e.data.changes.some((c) => realMatches(c.real, target))));
  const prevOf = previousDecisions(evs);
  const decisions = evs.filter((e): e is Decision => (e.type === "decision.pool" || e.type === "decision.owner") && ms(e) <= at);
  const relevant = decisions.filter((d) => {
    if (d.type === "decision.pool") {
      if (isReal) return d.data.changes.some((c) => realMatches(c.real, target));
      if (!vsMatches(d.data.pool.vs, target)) return false;
      const prev = prevOf.get(d.id);
      return d.data.changes.length > 0 || (prev !== undefined && prev !== null && prev.configVersion !== d.configVersion) || (prev?.type === "decision.pool" && JSON.stringify(prev.data.operator ?? []) !== JSON.stringify(d.data.operator ?? []));
    }
    return !isReal && ownerMatches(d.data, target);
  });
  // One incident: the decisions of every node about the same change (same cause or incident, or close in time).
  const incidents: Decision[][] = [];
  for (let i = relevant.length - 1; i >= 0 && incidents.length < count; i--) {
    const d = relevant[i]!;
    if (incidents.some((inc) => inc.includes(d))) continue;
    const same = relevant.filter((o) => o.type === d.type && o.data.node !== d.data.node && Math.abs(ms(o) - ms(d)) <= 3000 &&
      (o.correlationId === d.correlationId || o.causationId === d.causationId || o.type === "decision.owner" || o.configVersion !== prevOf.get(o.id)?.configVersion));
    const nodes = new Set([d.data.node]);
    const inc = [d];
    for (const o of same.reverse()) if (!nodes.has(o.data.node)) { nodes.add(o.data.node); inc.push(o); }
    incidents.push(inc.sort((a, b) => ms(a) - ms(b)));
  }
  const chains = incidents.flatMap((inc) => inc.map((d) => chainOf(d, evs, prevOf, journal, isReal ? target : null)));
  return { target, kind: isReal ? "real" : "vip", at: new Date(at).toISOString(), chains };
}

export function renderWhy(r: WhyResult): string {
  const lines = [`why ${r.target} (${r.kind === "real" ? "real server" : "virtual service / VIP"}) — last change at or before ${r.at}`];
  if (!r.chains.length) return lines.concat("  no recorded change: nothing in the history moved it (widen --window?)").join("\n") + "\n";
  for (const c of r.chains) {
    lines.push("", `${c.title}${c.complete ? "" : "   (chain incomplete)"}`);
    for (const s of c.steps) {
      lines.push(`  ${s.kind.padEnd(9)} ${s.time.slice(11, 23)}  ${s.text}${s.afterMs !== null ? `   [+${s.afterMs} ms]` : ""}`);
      for (const op of s.ops ?? []) lines.push(`  ${"".padEnd(9)} ${"".padEnd(12)}    ${op}`);
    }
    const l = c.latency;
    const part = (label: string, v: number | null) => (v === null ? null : `${label} ${Math.round(v)} ms`);
    lines.push(`  latency   ${[part("first evidence → decision", l.detectionMs), part("last evidence → decision", l.decideMs), part("decision → kernel done", l.applyMs), part("kernel ops", l.kernelMs), part("total", l.totalMs)].filter(Boolean).join(" · ")}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * Journal evidence for causes that are telemetry: the last heartbeat an observer heard from a
 * silent peer, and the heartbeat or health summary a decision names as its cause. Reads only the
 * deciding node's journal in the seconds before each decision.
 */
export async function journalLookup(redis: Redis, site: string, asks: { node: string; before: number }[], lookbackMs = 10_000): Promise<JournalLookup> {
  const inputs = new Map<string, JournalInput[]>(); // node → inputs near the asked times
  const seen = new Set<string>();
  for (const a of asks) {
    const rows = await redis.xrange(keys.inputs(site), String(a.before - lookbackMs), String(a.before + 60_000));
    for (const [id, fields] of rows) {
      const i = fields.indexOf("json");
      const n = fields.indexOf("node");
      if (i < 0 || (n >= 0 && fields[n + 1] !== a.node) || seen.has(id)) continue;
      seen.add(id);
      try {
        const ev = JSON.parse(fields[i + 1]!) as EventOf<"controller.inputs">;
        const list = inputs.get(ev.data.node) ?? inputs.set(ev.data.node, []).get(ev.data.node)!;
        for (const en of decodeEntries(ev.data.entries)) if (en.k === "in") list.push({ t: en.t, machine: en.m, e: en.e });
      } catch { /* an unreadable batch: no evidence from it */ }
    }
  }
  return {
    heartbeat(observer, peer, before) {
      let best: number | null = null;
      for (const x of inputs.get(observer) ?? []) if (x.e.type === "HEARTBEAT" && x.e.node === peer && x.t <= before && (best === null || x.t > best)) best = x.t;
      return best;
    },
    input(node, eventId, before) {
      let best: JournalInput | null = null;
      for (const x of inputs.get(node) ?? []) if (x.e.eventId === eventId && x.t <= before && (!best || x.t > best.t)) best = x;
      return best;
    },
  };
}

export async function whyCommand(args: string[]): Promise<number> {
  const { opts, values, positionals } = parseCommon(args, { at: { type: "string" }, window: { type: "string" }, last: { type: "string" } });
  const target = positionals[0];
  if (values.help || !target) {
    process.stdout.write(`usage: lvsflow why <vip[:port]|vs-id|real[:port]> [--at TIME] [--last N] [--window 1h] [--json] [--site S] [--redis URL]
  The causal chain of the last change (or last N) at or before TIME: probe evidence, peer silence,
  operator command or configuration version → each node's decision → the kernel operations applied,
  with the time of each step and the latency from the one before.\n`);
    return values.help ? 0 : 2;
  }
  const site = opts.site ?? "default";
  const redis = redisFor(opts.redis);
  try {
    const at = values.at ? parseTime(String(values.at)) : Date.now();
    const windowMs = values.window ? Date.now() - parseTime(String(values.window), Date.now()) : 3_600_000;
    const count = values.last ? Number(values.last) : 1;
    await connectRedis(redis, opts.redis);
    // Kernel changes come after their decision: read a little past --at.
    const evs = await readHistory(redis, site, { since: at - windowMs, until: at + 30_000 });
    let r = why(target, at, evs, null, count);
    // Causes that are telemetry (a peer's last heartbeat, a heartbeat or summary named as cause):
    // from the deciding controllers' input journals.
    const asks = r.chains.flatMap((c) => c.steps.filter((s) => s.kind === "decision" || s.event?.type === "peer.state").map((s) => ({ node: s.event?.type === "peer.state" ? s.event.data.observer : s.node, before: Date.parse(s.time) })));
    if (asks.length) r = why(target, at, evs, await journalLookup(redis, site, asks), count);
    process.stdout.write(values.json ? JSON.stringify(r, null, 2) + "\n" : renderWhy(r));
    return r.chains.length ? 0 : 1;
  } catch (e) {
    process.stderr.write(`lvsflow why: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}
