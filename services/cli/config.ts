// `lvsflow config …`: validate configuration files and print the normalized model, convert them
// to the native YAML, print the JSON Schema, and manage configuration versions in Redis (history,
// diff, show, push). Invalid input gives FILE:LINE:COL diagnostics and exit 1, never a stack trace.
import { resolve as resolvePath } from "node:path";
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { Redis } from "ioredis";
import { connect } from "@nats-io/transport-node";
import { userInfo, hostname } from "node:os";
import { Model, type VirtualService } from "../../shared/schemas/config.ts";
import { ConfigError, formatDiagnostic, type Diagnostic } from "../../shared/config/diagnostics.ts";
import { configToYaml, FORMATS, loadConfig, type ConfigFormat, type LoadedConfig } from "../../shared/config/load.ts";
import { NativeFile } from "../../shared/config/native.ts";
import { describeDiff, diffModels } from "../../shared/config/diff.ts";
import { loadStored, VersionStore } from "../../shared/config/versions.ts";
import { Event, makeEvent } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";
import { natsAuthFromEnv, natsConnectOptions, redactSecrets, redisAuthFromEnv, registerModelSecrets, scrubKnownSecrets } from "../../shared/secrets.ts";
import { unsupportedReason } from "../prober/checks.ts";
import { describe } from "./describe.ts";

const USAGE = `usage:
  lvsflow config check FILE [FILE…] [--format ldirectord|keepalived|yaml] [--strict] [--json]
      validate ldirectord.cf, keepalived.conf and/or native YAML files; print the normalized model
      (--json: the public JSON contract, secrets redacted); warnings on stderr as FILE:LINE: warning: …,
      errors as FILE:LINE:COL: error: … (exit 1)
      --strict: ldirectord's exact grammar (indentation, comments); unknown keepalived keywords are errors
  lvsflow config convert FILE [FILE…] --to yaml [--format F] [--strict]
      print the same configuration in the native YAML form (loading it again gives the same model)
  lvsflow config schema [--model]
      JSON Schema of the native YAML file (--model: of the normalized model)
  lvsflow config history [--site S] [--limit N] [--json]
      configuration versions stored in Redis, newest first
  lvsflow config diff A B [--site S]
      what changes from A to B; each is a version (hash, prefix, latest, latest~N) or a file
  lvsflow config show VERSION [--site S]
      the source texts of a stored version (known secrets scrubbed)
  lvsflow config push FILE [FILE…] [--site S] [--by NAME] [--wait SECONDS]
      validate, store as a version in Redis and tell every service to load it; waits for each
      service's config.applied or config.rejected (default 5 s) and exits 1 if any refused it
  Redis and NATS: --redis URL / LVSFLOW_REDIS, --nats URL / LVSFLOW_NATS (credentials as for lvsflow run)
`;

interface Out { out: (s: string) => void; err: (s: string) => void }
const stdio: Out = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) };

/** What the probers cannot run is an error when a configuration is loaded. Plugin probes are
 *  registered by the prober process itself (LVSFLOW_PROBE_MODULES), which reports a missing one. */
export function loadTimeSupport(vs: VirtualService): string | null {
  return vs.check.type === "plugin" ? null : unsupportedReason(vs);
}

const FLAGS = {
  json: { type: "boolean" }, strict: { type: "boolean" }, format: { type: "string" }, to: { type: "string" }, model: { type: "boolean" },
  site: { type: "string" }, limit: { type: "string" }, by: { type: "string" }, wait: { type: "string" }, redis: { type: "string" }, nats: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export async function configCommand(args: string[], io: Out = stdio): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === "help" || sub === "--help" || sub === "-h") { (sub ? io.out : io.err)(USAGE); return sub ? 0 : 2; }
  let values: Record<string, string | boolean | undefined>, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, options: FLAGS, allowPositionals: true, strict: true }) as { values: Record<string, string | boolean | undefined>; positionals: string[] });
  } catch (e) {
    io.err(`lvsflow config ${sub}: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) { io.out(USAGE); return 0; }
  const format = values.format as string | undefined;
  if (format !== undefined && !(FORMATS as readonly string[]).includes(format)) { io.err(`lvsflow config: --format must be ${FORMATS.join(", ")}\n`); return 2; }
  const load = { strict: !!values.strict, format: format as ConfigFormat | undefined, supports: loadTimeSupport };

  switch (sub) {
    case "schema": {
      const schema = values.model ? Model : NativeFile;
      io.out(JSON.stringify(z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }), null, 2) + "\n");
      return 0;
    }
    case "check": case "convert": {
      if (sub === "convert" && (values.to ?? "yaml") !== "yaml") { io.err("lvsflow config convert: --to yaml is the only target\n"); return 2; }
      if (!positionals.length) { io.err(`lvsflow config ${sub}: no file given\n${USAGE}`); return 2; }
      const loaded = loadOrReport(positionals, load, io);
      if (!loaded) return 1;
      if (sub === "convert") io.out(configToYaml(loaded.model));
      else io.out(values.json ? JSON.stringify(redactSecrets(loaded.model), null, 2) + "\n" : summary(loaded, loaded.warnings));
      return 0;
    }
    case "history": case "diff": case "show": case "push":
      return versionsCommand(sub, positionals, values, load, io);
    default:
      io.err(`lvsflow config: unknown subcommand "${sub}"\n${USAGE}`);
      return 2;
  }
}

function loadOrReport(files: string[], load: Parameters<typeof loadConfig>[1], io: Out, quiet = false): LoadedConfig | null {
  try {
    const loaded = loadConfig(files, load);
    if (!quiet) for (const w of loaded.warnings) io.err(formatDiagnostic(w) + "\n");
    return loaded;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const d of e.diagnostics) io.err(formatDiagnostic(d) + "\n");
    return null;
  }
}

function redisClient(url: string): Redis {
  const auth = redisAuthFromEnv();
  return url.startsWith("unix://") ? new Redis({ path: url.slice(7), lazyConnect: true, maxRetriesPerRequest: 1, ...auth }) : new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, ...auth });
}

async function versionsCommand(sub: "history" | "diff" | "show" | "push", positionals: string[], values: Record<string, string | boolean | undefined>, load: Parameters<typeof loadConfig>[1], io: Out): Promise<number> {
  const redisUrl = (values.redis as string | undefined) ?? process.env.LVSFLOW_REDIS ?? "redis://127.0.0.1:6379";
  // push: the files decide the site unless --site says otherwise; the others need a site.
  let pushed: LoadedConfig | null = null;
  const files = positionals.map((f) => resolvePath(f));
  if (sub === "push") {
    if (!files.length) { io.err(`lvsflow config push: no file given\n${USAGE}`); return 2; }
    pushed = loadOrReport(files, load, io);
    if (!pushed) { io.err("lvsflow config push: not pushed: the configuration is invalid\n"); return 1; }
  }
  // Two files need no Redis.
  if (sub === "diff" && positionals.length === 2 && positionals.every((f) => existsSync(f))) {
    const [a, b] = positionals.map((f) => loadOrReport([f], load, io, true));
    if (!a || !b) { io.err("lvsflow config diff: a file is not a valid configuration (lvsflow config check FILE shows why)\n"); return 1; }
    const lines = describeDiff(diffModels(a.model, b.model));
    io.out(`--- ${positionals[0]} (${a.version})\n+++ ${positionals[1]} (${b.version})\n${lines.length ? lines.join("\n") + "\n" : "(no difference in the model)\n"}`);
    return 0;
  }
  const site = (values.site as string | undefined) ?? process.env.LVSFLOW_SITE ?? pushed?.model.site ?? "default";
  if (pushed && pushed.model.site !== site) {
    io.err(`lvsflow config push: not pushed: the configuration is for site "${pushed.model.site}" but --site is "${site}"; the services of ${site} would refuse it (set site: ${site} in a native file that includes it)\n`);
    return 1;
  }
  const redis = redisClient(redisUrl);
  try {
    await redis.connect();
    const store = new VersionStore(redis, site);
    if (sub === "history") {
      const h = await store.history(Number(values.limit ?? 50));
      if (values.json) for (const e of h) io.out(JSON.stringify(e) + "\n");
      else {
        for (const e of h) io.out(`${e.version}  ${e.at}  ${e.trigger.padEnd(10)} ${e.by}  ${e.files.join(", ")}\n`);
        io.err(`${h.length} version(s) of site ${site}\n`);
      }
      return 0;
    }
    if (sub === "show") {
      const ref = positionals[0];
      if (!ref) { io.err("lvsflow config show: which version?\n"); return 2; }
      const v = await store.resolve(ref);
      const stored = v ? await store.get(v) : null;
      if (!stored) { io.err(`lvsflow config show: no version ${ref} for site ${site}\n`); return 1; }
      try { registerModelSecrets(loadStored(stored).model); } catch { /* shown anyway, as stored */ }
      for (const s of stored.sources) io.out(`# ${s.path}\n${scrubKnownSecrets(s.text)}${s.text.endsWith("\n") ? "" : "\n"}`);
      return 0;
    }
    if (sub === "diff") {
      if (positionals.length !== 2) { io.err("lvsflow config diff: give two versions (or files)\n"); return 2; }
      const side = async (ref: string): Promise<{ name: string; model: Model } | string> => {
        const v = await store.resolve(ref).catch((e: Error) => e.message);
        if (v && !/ambiguous/.test(v)) {
          const stored = await store.get(v);
          if (stored) return { name: v, model: loadStored(stored).model };
        }
        if (typeof v === "string" && /ambiguous/.test(v)) return v;
        const l = loadOrReport([ref], load, io, true);
        return l ? { name: ref, model: l.model } : `${ref} is neither a stored version of site ${site} nor a valid configuration file`;
      };
      const a = await side(positionals[0]!), b = await side(positionals[1]!);
      if (typeof a === "string" || typeof b === "string") { io.err(`lvsflow config diff: ${typeof a === "string" ? a : b}\n`); return 1; }
      const lines = describeDiff(diffModels(a.model, b.model));
      io.out(`--- ${a.name}\n+++ ${b.name}\n${lines.length ? lines.join("\n") + "\n" : "(no difference in the model)\n"}`);
      return 0;
    }
    // push
    const by = (values.by as string | undefined) ?? `${safeUser()}@${hostname()}`;
    const appended = await store.store(pushed!, { files, by, trigger: "push" });
    io.out(`configuration ${pushed!.version} ${appended ? "stored" : "is already the newest stored version"} (site ${site})\n`);
    return await announce(site, pushed!.version, files, by, Number(values.wait ?? 5), values.nats as string | undefined, io);
  } catch (e) {
    io.err(`lvsflow config ${sub}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}

/** Publishes config.pushed and reports what the services answer within `waitS` seconds. */
async function announce(site: string, version: string, files: string[], by: string, waitS: number, natsFlag: string | undefined, io: Out): Promise<number> {
  const servers = (natsFlag ?? process.env.LVSFLOW_NATS ?? "nats://127.0.0.1:4222").split(",").filter(Boolean);
  const nc = await connect({ servers, name: "lvsflow-config-push", timeout: 3000, ...natsConnectOptions(natsAuthFromEnv()) });
  let refused = 0, applied = 0;
  try {
    const sub = nc.subscribe(`lvsflow.${site}.config.*.*`);
    const done = (async () => {
      for await (const m of sub) {
        const p = Event.safeParse(m.json());
        if (!p.success || (p.data.type !== "config.applied" && p.data.type !== "config.rejected")) continue;
        if (p.data.type === "config.applied" && p.data.data.version !== version) continue;
        if (p.data.type === "config.rejected" && p.data.data.version !== version && p.data.data.trigger !== "push") continue;
        if (p.data.type === "config.applied") applied++; else refused++;
        io.out(`  ${describe(p.data)}\n`);
      }
    })();
    await nc.flush();
    nc.publish(subjects.configPush(site), JSON.stringify(makeEvent("config.pushed", { version, files: files.slice(0, 64), by: by.slice(0, 200) }, { source: { service: "cli", node: hostname().slice(0, 64) || "cli" } })));
    await new Promise((r) => setTimeout(r, Math.max(0, waitS) * 1000));
    sub.unsubscribe();
    await done;
  } finally {
    await nc.close();
  }
  io.out(`${applied} service(s) applied it, ${refused} refused it\n`);
  return refused ? 1 : 0;
}

function safeUser(): string {
  try { return userInfo().username; } catch { return "unknown"; }
}

/** A short human description of the normalized model. */
export function summary({ model: m, version, sources }: LoadedConfig, warnings: Diagnostic[]): string {
  const lines = [`site ${m.site}: configuration ${version} from ${sources.map((s) => s.path).join(", ")}`];
  lines.push(`nodes: ${m.nodes.length ? m.nodes.map((n) => `${n.name} (priority ${n.priority}${Object.keys(n.interfaces).length ? `, ${Object.entries(n.interfaces).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""})`).join(", ") : "none"}`);
  lines.push(`groups: ${m.groups.length ? "" : "none"}`);
  for (const g of m.groups) {
    lines.push(`  ${g.name}: ${g.addresses.map((a) => `${a.address}/${a.prefix} on ${a.interface}`).join(", ")}${g.preempt ? `, preempt${g.preemptDelayMs ? ` after ${g.preemptDelayMs} ms` : ""}` : ", no preempt"}`);
  }
  lines.push(`virtual services: ${m.virtualServices.length || "none"}`);
  for (const vs of m.virtualServices) lines.push(...describeVs(vs));
  if (warnings.length) lines.push(`${warnings.length} warning${warnings.length === 1 ? "" : "s"} (on stderr)`);
  return lines.join("\n") + "\n";
}

function describeVs(vs: VirtualService): string[] {
  const c = vs.check;
  const persist = vs.persistence ? `, persistent ${vs.persistence.timeout} s (netmask ${vs.persistence.netmask})` : "";
  const retry = c.retry ? `, ${c.retry} retr${c.retry === 1 ? "y" : "ies"} ${c.delayBeforeRetry} s apart` : "";
  const check = c.type === "on" || c.type === "off"
    ? `check ${c.type}`
    : `check ${c.type}${c.type === "combined" ? ` (${c.combinedConnects} connects per negotiate)` : ""}${c.type === "negotiate" || c.type === "combined" ? ` ${c.service} ${c.request}${c.receive ? ` expecting "${c.receive}"` : ""}${c.statusCodes ? ` status ${c.statusCodes.join(",")}` : ""}` : ""}` +
      `${c.type === "external" && c.command ? ` ${c.command}` : ""}${c.port !== null ? ` on port ${c.port}` : ""}, every ${c.interval} s, timeout ${c.timeout} s${retry}, down after ${c.failureCount} failure${c.failureCount === 1 ? "" : "s"}`;
  const out = [
    `  ${vs.id}: scheduler ${vs.scheduler}${vs.schedFlags ? ` (${vs.schedFlags})` : ""}${persist}, quiescent ${vs.quiescent ? "yes" : "no"}`,
    `    ${check}`,
    `    fallback ${vs.fallback ? `${vs.fallback.address}:${vs.fallback.port} ${vs.fallback.forwarding}` : "none"}`,
  ];
  for (const r of vs.reals) {
    const extra = [r.lowerThreshold !== null ? `l:${r.lowerThreshold}` : "", r.upperThreshold !== null ? `u:${r.upperThreshold}` : "", r.request !== null ? `request ${r.request}` : ""].filter(Boolean);
    out.push(`    real ${r.address.includes(":") ? `[${r.address}]` : r.address}:${r.port} ${r.forwarding} weight ${r.weight}${extra.length ? ` ${extra.join(" ")}` : ""}`);
  }
  if (!vs.reals.length) out.push("    no real servers");
  return out;
}
