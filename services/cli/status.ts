// `lvsflow status [--json] [--watch]`: per floating address group the owner, term and each node's
// view; per virtual service each real's state, weight on each node, last check and its age,
// active connections, operator overrides and the fallback state. It listens to the bus for a
// moment (decisions are re-sent every second) and asks every controller for its view.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadConfig } from "../../shared/config/load.ts";
import { ConfigError, formatDiagnostic } from "../../shared/config/diagnostics.ts";
import type { Model } from "../../shared/schemas/config.ts";
import { parseCommon } from "./options.ts";
import { natsAuthFromEnv, natsConnectOptions, type NatsAuth } from "../../shared/secrets.ts";
import { LiveCluster } from "../dashboard/live.ts";
import { snapshot, renderStatus, type ClusterSnapshot } from "../dashboard/cluster-view.ts";

export { renderStatus };
export type { ClusterSnapshot };

/** Listens for `listenMs` and returns the site's picture. */
export async function collectStatus(servers: string[], site: string, listenMs: number, auth: NatsAuth = natsAuthFromEnv(), model: Model | null = null): Promise<ClusterSnapshot> {
  const nc = await connect({ servers, name: "lvsflow-status", timeout: 3000, ...natsConnectOptions(auth) });
  try {
    const live = new LiveCluster(nc, site, model).start();
    await new Promise((r) => setTimeout(r, listenMs));
    live.stop();
    return snapshot(live.state, Date.now());
  } finally {
    await nc.close();
  }
}

export async function statusCommand(args: string[]): Promise<number> {
  const { opts, values } = parseCommon(args, { watch: { type: "boolean" }, interval: { type: "string" } });
  if (values.help) { process.stdout.write("usage: lvsflow status [--json] [--watch [--interval 1s]] [--config FILE] [--site S] [--nats URL]\n"); return 0; }
  let model: Model | null = null;
  if (opts.config.length) {
    try { model = loadConfig(opts.config).model; }
    catch (e) { if (e instanceof ConfigError) { for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n"); return 1; } throw e; }
  }
  const site = opts.site ?? model?.site ?? "default";
  const print = (v: ClusterSnapshot) => process.stdout.write(values.json ? JSON.stringify(v) + "\n" : (values.watch ? "\x1b[2J\x1b[H" : "") + renderStatus(v));
  if (!values.watch) {
    try { print(await collectStatus(opts.nats, site, 1200, natsAuthFromEnv(), model)); return 0; }
    catch (e) { process.stderr.write(`lvsflow status: cannot reach NATS at ${opts.nats.join(",")}: ${e instanceof Error ? e.message : String(e)}\n`); return 1; }
  }
  // --watch: one connection, one live picture, printed every interval (NDJSON with --json).
  const every = values.interval ? Math.max(200, parseFloat(String(values.interval)) * (String(values.interval).endsWith("ms") ? 1 : 1000)) : 1000;
  let nc: NatsConnection;
  try { nc = await connect({ servers: opts.nats, name: "lvsflow-status", timeout: 3000, maxReconnectAttempts: -1, ...natsConnectOptions(natsAuthFromEnv()) }); }
  catch (e) { process.stderr.write(`lvsflow status: cannot reach NATS at ${opts.nats.join(",")}: ${e instanceof Error ? e.message : String(e)}\n`); return 1; }
  const live = new LiveCluster(nc, site, model, { queryEveryMs: every }).start();
  await new Promise<void>((resolve) => {
    const t = setInterval(() => print(snapshot(live.state, Date.now())), every);
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => { clearInterval(t); resolve(); });
  });
  live.stop();
  await nc.close();
  return 0;
}
