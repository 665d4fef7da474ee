// `lvsflow drain|enable|disable|maintenance|weight|failover`: operator commands from a terminal.
// Each one is sent once on the bus, recorded in the audit history with who issued it, applied by
// every node's controller and executor, and answered per node; the command returns when every
// node applied it, or says which did not (exit 1).
import { hostname, userInfo } from "node:os";
import { connect } from "@nats-io/transport-node";
import { loadConfig } from "../../shared/config/load.ts";
import { ConfigError, formatDiagnostic } from "../../shared/config/diagnostics.ts";
import type { Model } from "../../shared/schemas/config.ts";
import { CommandRequest } from "../../shared/schemas/events.ts";
import { parseCommon } from "../cli/options.ts";
import { natsAuthFromEnv, natsConnectOptions } from "../../shared/secrets.ts";
import { entriesFor } from "./overrides.ts";
import { issueCommand, heardNodes, failoverTarget, type Request, type IssueResult } from "./client.ts";

export const COMMANDS = ["drain", "enable", "disable", "maintenance", "weight", "failover"] as const;

const USAGE = `usage:
  lvsflow drain <vip:port> <real> [--timeout 5m] [--no-wait]   weight 0 now, out of the pool when its connections end
  lvsflow disable <real> | enable <real>                        take a real out of every virtual service / put it back
  lvsflow maintenance <real> on|off                             weight 0 until turned off (survives reloads and restarts)
  lvsflow weight <vip:port> <real> <N|config>                   set a real's weight (config: back to the configured one)
  lvsflow failover <group> [--to NODE | --auto]                 move a floating group (--auto: back to priorities)
options: --nats URL --site NAME [--config FILE] [--reason TEXT] [--as NAME] [--wait 15s] [--json]
  <real> is ADDRESS:PORT, or ADDRESS for every port of it. With --config the command is checked
  before it is sent and every configured node must answer; without, the nodes heard on the bus.
`;

/** "30s", "5m", "1h", "1500ms" or a number of seconds → ms. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`cannot read duration "${s}" (use 30s, 5m, 1h or 1500ms)`);
  const n = Number(m[1]);
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"]);
}

export function operatorName(as?: string): string {
  const user = as ?? process.env.LVSFLOW_OPERATOR ?? process.env.SUDO_USER ?? (() => { try { return userInfo().username; } catch { return "unknown"; } })();
  return `${user}@${hostname().split(".")[0]}`;
}

/** Builds the request from the command line; throws with a usage message on bad input. */
export function buildRequest(action: (typeof COMMANDS)[number], pos: string[], v: Record<string, unknown>): Omit<Request, "issuedBy"> {
  const base = { vs: null, real: null, group: null, to: null, on: null, weight: null, timeoutMs: null, reason: (v.reason as string | undefined) ?? null };
  const need = (n: number) => { if (pos.length !== n) throw new Error(`${action} takes ${n} argument(s), got ${pos.length}`); };
  switch (action) {
    case "drain": need(2); return { ...base, action, vs: pos[0]!, real: pos[1]!, timeoutMs: v.timeout ? parseDuration(String(v.timeout)) : null };
    case "enable": case "disable": need(1); return { ...base, action, real: pos[0]! };
    case "maintenance": {
      need(2);
      if (pos[1] !== "on" && pos[1] !== "off") throw new Error(`maintenance takes on or off, not "${pos[1]}"`);
      return { ...base, action, real: pos[0]!, on: pos[1] === "on" };
    }
    case "weight": {
      need(3);
      const w = pos[2] === "config" ? null : Number(pos[2]);
      if (w !== null && (!Number.isInteger(w) || w < 0 || w > 65535)) throw new Error(`weight must be 0…65535 or "config", not "${pos[2]}"`);
      return { ...base, action, vs: pos[0]!, real: pos[1]!, weight: w };
    }
    case "failover":
      need(1);
      if (v.to && v.auto) throw new Error("give --to NODE or --auto, not both");
      return { ...base, action, group: pos[0]!, to: (v.to as string | undefined) ?? null };
  }
}

/** The outcome per node (`all`: also the nodes whose answers were already printed as they came). */
export function renderResult(r: IssueResult, all = true): string {
  const lines: string[] = [];
  for (const n of r.nodes) {
    if (!all && r.outcomes[n] && !r.missing.includes(n)) continue;
    const o = r.outcomes[n] ?? {};
    const last = o.refused ?? o.failed ?? o.done ?? o.applied;
    lines.push(`  ${n}: ${last ? `${last.status.toUpperCase()} ${last.detail}` : "NO ANSWER (controller not running, or not on the bus)"}`);
  }
  const bad = r.nodes.filter((n) => r.missing.includes(n) || r.outcomes[n]?.refused || r.outcomes[n]?.failed);
  lines.push(r.ok ? `applied on every node (${r.nodes.join(", ")})` : `NOT applied on: ${bad.join(", ") || "any node (none heard)"}`);
  return lines.join("\n") + "\n";
}

export async function operatorCommand(action: (typeof COMMANDS)[number], args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommon(args, { timeout: { type: "string" }, to: { type: "string" }, auto: { type: "boolean" }, reason: { type: "string" }, as: { type: "string" }, wait: { type: "string" }, "no-wait": { type: "boolean" } });
  } catch (e) { process.stderr.write(`lvsflow ${action}: ${(e as Error).message}\n${USAGE}`); return 2; }
  const { opts, values, positionals } = parsed;
  if (values.help) { process.stdout.write(USAGE); return 0; }
  let model: Model | null = null;
  if (opts.config.length) {
    try { model = loadConfig(opts.config).model; }
    catch (e) { if (e instanceof ConfigError) { for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n"); return 1; } throw e; }
  }
  const site = opts.site ?? model?.site ?? "default";
  let partial: Omit<Request, "issuedBy">;
  try { partial = buildRequest(action, positionals, values); }
  catch (e) { process.stderr.write(`lvsflow ${action}: ${(e as Error).message}\n${USAGE}`); return 2; }
  let nc;
  try { nc = await connect({ servers: opts.nats, name: `lvsflow-${action}`, timeout: 3000, ...natsConnectOptions(natsAuthFromEnv()) }); }
  catch (e) { process.stderr.write(`lvsflow ${action}: cannot reach NATS at ${opts.nats.join(",")}: ${(e as Error).message}\n`); return 1; }
  try {
    // `failover <group>` with no target: the best live node that does not hold the group now.
    if (action === "failover" && !values.to && !values.auto) {
      const t = failoverTarget(partial.group!, await heardNodes(nc, site, 600));
      if (typeof t !== "string") { process.stderr.write(`lvsflow failover: no other live node to move ${partial.group} to (holders: ${t.join(", ") || "none"})\n`); return 1; }
      partial = { ...partial, to: t };
    }
    const req = CommandRequest.parse({ ...partial, issuedBy: operatorName(values.as as string | undefined) });
    if (model) {
      const check = entriesFor(model, { id: "check", at: Date.now(), data: req });
      if (typeof check === "string") { process.stderr.write(`lvsflow ${action}: ${check}\n`); return 1; }
    }
    const json = !!values.json;
    const say = (s: string) => { if (!json) process.stdout.write(s); };
    say(`${action} ${[req.vs, req.real, req.group, req.to && `to ${req.to}`].filter(Boolean).join(" ")} by ${req.issuedBy}\n`);
    const r = await issueCommand(req, {
      nc, site, source: { service: "cli", node: hostname().split(".")[0]! },
      expectedNodes: model ? model.nodes.map((n) => n.name) : null,
      waitMs: values.wait ? parseDuration(String(values.wait)) : 15_000,
      waitDone: action === "drain" && !values["no-wait"],
      onAck: (a) => say(`  ${a.node}: ${a.status} — ${a.detail}\n`),
      onConnections: (c) => say(`  connections: ${Object.entries(c).sort().map(([n, k]) => `${n} ${k}`).join(", ")}\n`),
    });
    process.stdout.write(json ? JSON.stringify(r) + "\n" : renderResult(r, false));
    return r.ok ? 0 : 1;
  } finally {
    await nc.close();
  }
}
