// One line per event, for people: what happened, in the domain's words.
import type { Event } from "../../shared/schemas/events.ts";

export function describe(ev: Event): string {
  switch (ev.type) {
    case "health.result": {
      const d = ev.data;
      return `${d.vs} real ${d.real}: ${d.ok ? "ok" : "FAIL"} x${d.streak} by ${d.prober} (${d.check}, ${d.latencyMs.toFixed(1)} ms${d.error ? `, ${d.error}` : ""}${d.httpStatus ? `, HTTP ${d.httpStatus}` : ""})`;
    }
    case "health.summary":
      return `${ev.data.prober}: ${ev.data.results.filter((r) => r.ok).length}/${ev.data.results.length} reals ok`;
    case "decision.pool": {
      const d = ev.data;
      const reals = d.pool.reals.map((r) => `${r.address}:${r.port}${r.weight === 0 ? "(quiescent)" : `/w${r.weight}`}`).join(" ") || "none";
      const ch = d.changes.map((c) => `${c.real} ${c.from}->${c.to}: ${c.why}`).join("; ");
      return `${d.pool.vs} for ${d.node} gen ${d.generation}: reals ${reals}${d.fallbackActive && d.pool.fallback ? `, FALLBACK ${d.pool.fallback.address}:${d.pool.fallback.port}` : ""}${ch ? ` | ${ch}` : ""}`;
    }
    case "decision.owner":
      return `group ${ev.data.group}: ${ev.data.node} becomes ${ev.data.role.toUpperCase()} term ${ev.data.term}: ${ev.data.why}`;
    case "node.heartbeat":
      return `${ev.data.node} heartbeat #${ev.data.seq} holds ${ev.data.owned.map((o) => `${o.group}@${o.term}`).join(",") || "nothing"}${ev.data.faults.length ? ` faults: ${ev.data.faults.join(", ")}` : ""}`;
    case "peer.state":
      return `${ev.data.observer} sees ${ev.data.peer} ${ev.data.alive ? "alive" : `DEAD (silent ${ev.data.lastSeenMsAgo} ms)`}`;
    case "executor.applied":
      return `${ev.data.node} applied ${ev.data.kind} gen ${ev.data.generation}: ${ev.data.ok ? "ok" : `FAILED ${ev.data.error}`} (${ev.data.ops.length} ops, ${ev.data.durationMs.toFixed(1)} ms)${ev.data.readback ? ` -> ${ev.data.readback}` : ""}`;
    case "executor.drift":
      return `${ev.data.node} found drift: ${ev.data.found.join("; ")}${ev.data.repaired ? " (repaired)" : ""}`;
    case "bus.rejected":
      return `${ev.data.service} rejected a message on ${ev.data.subject}: ${ev.data.reason}`;
  }
}
