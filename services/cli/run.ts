// `lvsflow run <service>`: loads the configuration, connects to the bus and starts services.
import { createLogger } from "../../shared/logger.ts";
import { Bus } from "../../shared/bus.ts";
import { serveHealth } from "../../shared/metrics.ts";
import { resolve as resolvePath } from "node:path";
import type { Redis } from "ioredis";
import { loadConfig, type LoadedConfig } from "../../shared/config/load.ts";
import { Reloader } from "../../shared/config/reload.ts";
import { loadStored, sitesWithVersions, VersionStore } from "../../shared/config/versions.ts";
import { createRedis } from "../../shared/redis.ts";
import { loadTimeSupport } from "./config.ts";
import { ConfigError, formatDiagnostic } from "../../shared/config/diagnostics.ts";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { startProber } from "../prober/main.ts";
import { probeGroupName } from "../prober/sharing.ts";
import { startController } from "../controller/main.ts";
import { startExecutor } from "../executor/main.ts";
import { startRecorder } from "../recorder/main.ts";
import { startDashboard } from "../dashboard/main.ts";
import { startWitness } from "../witness/main.ts";
import { parseCommon, ENV_HELP } from "./options.ts";
import { natsAuthFromEnv, redactUrl, registerModelSecrets } from "../../shared/secrets.ts";

const SERVICES = {
  prober: [startProber],
  controller: [startController],
  executor: [startExecutor],
  recorder: [startRecorder],
  // The operators' web page (LVSFLOW_DASHBOARD_LISTEN, LVSFLOW_DASHBOARD_PASSWORD_FILE).
  dashboard: [startDashboard],
  // A voter without a data plane (quorum mode's third voter).
  witness: [startWitness],
  // Everything one LB node runs, in one process.
  node: [startExecutor, startController, startProber],
} as const;
type ServiceName = keyof typeof SERVICES;

const RUN_HELP = `Prober options (lvsflow run prober | node):
  --probe-group NAME   LVSFLOW_PROBE_GROUP  none: share the checks with the other probers of this group,
                       which count as one vantage point (lowercase letters, digits, - and _)`;

export async function runCommand(args: string[]): Promise<number> {
  const { opts, positionals, values } = parseCommon(args, { "probe-group": { type: "string" } });
  const name = positionals[0] as ServiceName | undefined;
  if (values.help || !name || !(name in SERVICES)) {
    process.stderr.write(`usage: lvsflow run <${Object.keys(SERVICES).join("|")}> [options]\n${ENV_HELP}\n${RUN_HELP}\n`);
    return values.help ? 0 : 2;
  }
  // The flag wins over LVSFLOW_PROBE_GROUP (--probe-group "" = none); a bad name is refused
  // before anything starts. undefined: the prober reads the environment variable itself.
  let probeGroup: string | null | undefined;
  try {
    const flag = values["probe-group"] as string | undefined;
    const probes = name === "prober" || name === "node";
    if (flag !== undefined && !probes) throw new Error(`--probe-group applies to lvsflow run prober and lvsflow run node, not ${name}`);
    if (flag !== undefined) probeGroup = probeGroupName(flag, "--probe-group");
    else if (probes) probeGroupName(process.env.LVSFLOW_PROBE_GROUP, "LVSFLOW_PROBE_GROUP");
  } catch (e) {
    process.stderr.write(`lvsflow run: ${(e as Error).message}\n`);
    return 2;
  }
  const log = createLogger(name, { node: opts.node });
  // Absolute paths: stored versions resolve their includes the same way wherever they are loaded.
  const files = opts.config.map((f) => resolvePath(f));
  let loaded: LoadedConfig;
  let redis: Redis | null = null;
  try {
    if (files.length) loaded = loadConfig(files, { supports: loadTimeSupport });
    else {
      // No file: the newest configuration version stored in Redis (lvsflow config push).
      redis = createRedis(opts.redis, log, `lvsflow-${name}-${opts.node}`);
      const stored = await newestStored(redis, opts.site, log);
      if (typeof stored === "string") { log.error({ redis: redactUrl(opts.redis) }, stored); redis.disconnect(); return 2; }
      log.info({ version: stored.version }, "no --config: starting from the newest stored configuration version");
      loaded = loadStored(stored, { supports: loadTimeSupport });
    }
  } catch (e) {
    if (e instanceof ConfigError) { for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n"); redis?.disconnect(); return 1; }
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
  for (const start of SERVICES[name]) running.push(await (start === startProber ? startProber(ctx, { group: probeGroup }) : start(ctx)));
  // Live reload: SIGHUP, autoreload (a watched file) and `lvsflow config push`, one path.
  redis ??= createRedis(opts.redis, log, `lvsflow-${name}-${opts.node}`);
  const reloader = new Reloader({
    site, node: opts.node, service: name, log, bus, store: new VersionStore(redis, site), current: loaded, files,
    targets: [{ updateModel: (m) => registerModelSecrets(m) }, ...running], loadOptions: { supports: loadTimeSupport },
  });
  reloader.start();
  if (files.length) reloader.remember("startup", `${opts.node}/${name}`);
  serveHealth(opts.httpPort, opts.httpHost, () => {
    const parts = running.map((r) => r.health());
    return { ok: parts.every((p) => p.ok), service: name, node: opts.node, parts };
  });
  log.info("running");
  await new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
  });
  log.info("stopping (the kernel keeps its state)");
  reloader.stop();
  redis.disconnect();
  for (const r of running.reverse()) await r.stop();
  await bus.close();
  return 0;
}

/** The newest stored version of the site (--site, or the only site with versions), or why there is none. */
async function newestStored(redis: Redis, site: string | null, log: import("pino").Logger) {
  const until = Date.now() + 30_000;
  while (redis.status !== "ready") {
    if (Date.now() > until) return "no --config given and Redis is not reachable to read the newest configuration version";
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!site) {
    const sites = await sitesWithVersions(redis);
    if (sites.length !== 1) return sites.length ? `no --config given and Redis holds versions of several sites (${sites.join(", ")}): give --site` : "no --config given and no configuration version is stored in Redis (lvsflow config push FILE)";
    site = sites[0]!;
  }
  const store = new VersionStore(redis, site);
  const newest = await store.newest();
  const v = newest && (await store.get(newest.version));
  if (!v) return `no --config given and no configuration version of site ${site} is stored in Redis (lvsflow config push FILE)`;
  log.debug({ site, version: v.version }, "newest stored version");
  return v;
}
