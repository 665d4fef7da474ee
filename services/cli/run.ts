// `lvsflow run <service>`: loads the configuration, connects to the bus and starts services.
import { createLogger } from "../../shared/logger.ts";
import { Bus } from "../../shared/bus.ts";
import { serveHealth } from "../../shared/metrics.ts";
import { loadConfig } from "../../shared/config/load.ts";
import { ConfigError, formatDiagnostic } from "../../shared/config/diagnostics.ts";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { startProber } from "../prober/main.ts";
import { startController } from "../controller/main.ts";
import { startExecutor } from "../executor/main.ts";
import { startRecorder } from "../recorder/main.ts";
import { startWitness } from "../witness/main.ts";
import { parseCommon, ENV_HELP } from "./options.ts";
import { natsAuthFromEnv, redactUrl, registerModelSecrets } from "../../shared/secrets.ts";

const SERVICES = {
  prober: [startProber],
  controller: [startController],
  executor: [startExecutor],
  recorder: [startRecorder],
  // A voter without a data plane (quorum mode's third voter).
  witness: [startWitness],
  // Everything one LB node runs, in one process.
  node: [startExecutor, startController, startProber],
} as const;
type ServiceName = keyof typeof SERVICES;

export async function runCommand(args: string[]): Promise<number> {
  const { opts, positionals, values } = parseCommon(args);
  const name = positionals[0] as ServiceName | undefined;
  if (values.help || !name || !(name in SERVICES)) {
    process.stderr.write(`usage: lvsflow run <${Object.keys(SERVICES).join("|")}> [options]\n${ENV_HELP}\n`);
    return values.help ? 0 : 2;
  }
  const log = createLogger(name, { node: opts.node });
  if (!opts.config.length) { log.error("no configuration: give --config FILE or LVSFLOW_CONFIG"); return 2; }
  let loaded;
  try {
    loaded = loadConfig(opts.config);
  } catch (e) {
    if (e instanceof ConfigError) { for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n"); return 1; }
    throw e;
  }
  registerModelSecrets(loaded.model); // probe passwords and RADIUS secrets: scrubbed from every log line and event
  for (const w of loaded.warnings) log.warn({ where: `${w.file}:${w.line}`, directive: w.directive }, w.message);
  const site = opts.site ?? loaded.model.site;
  const auth = natsAuthFromEnv();
  const bus = new Bus({ servers: opts.nats, name: `lvsflow-${name}-${opts.node}`, site, node: opts.node, service: name === "node" ? "executor" : name, log, user: opts.natsUser, pass: opts.natsPass, auth });
  log.info({ site, config: opts.config, version: loaded.version, nats: opts.nats.map(redactUrl), natsAuth: auth.describe }, "starting");
  await bus.connect();
  const ctx: ServiceContext = { site, node: opts.node, model: loaded.model, configVersion: loaded.version, bus, log, redisUrl: opts.redis, httpPort: opts.httpPort, stateDir: opts.stateDir };
  const running: RunningService[] = [];
  for (const start of SERVICES[name]) running.push(await start(ctx));
  serveHealth(opts.httpPort, opts.httpHost, () => {
    const parts = running.map((r) => r.health());
    return { ok: parts.every((p) => p.ok), service: name, node: opts.node, parts };
  });
  log.info("running");
  await new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
  });
  log.info("stopping (the kernel keeps its state)");
  for (const r of running.reverse()) await r.stop();
  await bus.close();
  return 0;
}
