// One line per event, for people: what happened, in the domain's words.
import type { Event } from "../../shared/schemas/events.ts";

export function describe(ev: Event): string {
  switch (ev.type) {
    case "health.result": {
      const d = ev.data;
      return `${d.vs} real ${d.real}: ${d.ok ? "ok" : "FAIL"} x${d.streak} by ${d.prober}${d.group ? ` of group ${d.group}` : ""} (${d.check}, ${d.latencyMs.toFixed(1)} ms${d.error ? `, ${d.error}` : ""}${d.httpStatus ? `, HTTP ${d.httpStatus}` : ""})`;
    }
    case "health.summary":
      return `${ev.data.prober}${ev.data.group ? ` (group ${ev.data.group})` : ""}: ${ev.data.results.filter((r) => r.ok).length}/${ev.data.results.length} reals ok`;
    case "decision.pool": {
      const d = ev.data;
      const reals = d.pool.reals.map((r) => `${r.address}:${r.port}${r.weight === 0 ? "(quiescent)" : `/w${r.weight}`}`).join(" ") || "none";
      const ch = d.changes.map((c) => `${c.real} ${c.from}->${c.to}: ${c.why}`).join("; ");
      const op = (d.operator ?? []).map((o) => `${o.real} ${o.state}: ${o.why}`).join("; ");
      return `${d.pool.vs} for ${d.node} gen ${d.generation}: reals ${reals}${d.fallbackActive && d.pool.fallback ? `, FALLBACK ${d.pool.fallback.address}:${d.pool.fallback.port}` : ""}${ch ? ` | ${ch}` : ""}${op ? ` | operator: ${op}` : ""}`;
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
    case "command.request": {
      const d = ev.data;
      const what = d.action === "failover" ? `group ${d.group} to ${d.to ?? "priorities (pin cleared)"}`
        : d.action === "maintenance" ? `${d.real} ${d.on ? "on" : "off"}`
        : d.action === "weight" ? `${d.vs} ${d.real} ${d.weight ?? "configured weight"}`
        : d.action === "drain" ? `${d.vs} ${d.real}${d.timeoutMs !== null ? ` (timeout ${d.timeoutMs / 1000} s)` : ""}`
        : `${d.real}`;
      return `${d.issuedBy} ordered ${d.action} ${what}${d.reason ? ` (${d.reason})` : ""}`;
    }
    case "command.ack":
      return `${ev.data.node} ${ev.data.status} command ${ev.data.commandId}: ${ev.data.detail}`;
    case "command.state":
      return `${ev.data.node} holds ${ev.data.entries.filter((e) => e.value !== null).length} operator override(s)`;
    case "executor.connections":
      return `${ev.data.node} connections (${ev.data.source}): ${ev.data.counts.map((c) => `${c.vs} ${c.real}=${c.active}`).join(", ") || "none"}`;
    case "controller.view":
      return `${ev.data.node} view: ${ev.data.pools.length} virtual service(s), ${ev.data.groups.length} group(s)`;
    case "voter.view":
      return `${ev.data.voter}${ev.data.witness ? " (witness)" : ""} hears ${Object.keys(ev.data.hears).join(", ") || "nobody"}${ev.data.canOwn ? "" : "; no quorum"}`;
    case "owner.lease":
      return `${ev.data.node} may hold ${ev.data.group} (term ${ev.data.term}) for ${ev.data.leaseMs} ms`;
    case "config.pushed":
      return `${ev.data.by} pushed configuration ${ev.data.version} (${ev.data.files.join(", ")})`;
    case "config.applied": {
      const c = ev.data.changes;
      const parts = [
        c.virtualServicesAdded.length ? `+${c.virtualServicesAdded.join(" +")}` : "", c.virtualServicesRemoved.length ? `-${c.virtualServicesRemoved.join(" -")}` : "",
        c.virtualServicesChanged.length ? `~${c.virtualServicesChanged.join(" ~")}` : "", c.groupsAdded.length + c.groupsRemoved.length + c.groupsChanged.length ? "groups changed" : "",
      ].filter(Boolean).join(" ");
      return `${ev.data.node} ${ev.data.service} applied configuration ${ev.data.version} (${ev.data.trigger}, was ${ev.data.previous ?? "none"})${parts ? `: ${parts}` : ": no change"}`;
    }
    case "config.rejected":
      return `${ev.data.node} ${ev.data.service} REJECTED configuration ${ev.data.version ?? "(unreadable)"} (${ev.data.trigger}); keeps ${ev.data.running}: ${ev.data.errors[0]}${ev.data.errors.length > 1 ? ` (+${ev.data.errors.length - 1} more)` : ""}`;
    case "prober.heartbeat":
      return `prober ${ev.data.prober} in group ${ev.data.group}: ${ev.data.leaving ? "leaving" : `alive, ${ev.data.targets} check(s)`}`;
    case "controller.inputs":
      return `${ev.data.node} journal ${ev.data.boot.slice(0, 8)} #${ev.data.seq}: ${ev.data.count} input(s) over ${Math.round(ev.data.to - ev.data.from)} ms${ev.data.start ? " (starting point)" : ""}`;
  }
}
