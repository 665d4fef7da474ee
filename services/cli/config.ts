// `lvsflow config …`: validate configuration files and print the normalized model, or print the
// JSON Schema of the native YAML file. Invalid input gives FILE:LINE:COL diagnostics and exit 1,
// never a stack trace.
import { z } from "zod";
import { Model, type VirtualService } from "../../shared/schemas/config.ts";
import { ConfigError, formatDiagnostic, type Diagnostic } from "../../shared/config/diagnostics.ts";
import { configToYaml, loadConfig, type ConfigFormat, type LoadedConfig } from "../../shared/config/load.ts";
import { NativeFile } from "../../shared/config/native.ts";
import { redactSecrets } from "../../shared/secrets.ts";

const USAGE = `usage:
  lvsflow config check FILE [FILE…] [--json] [--strict] [--format ldirectord|yaml]
      validate ldirectord.cf and/or native YAML files; print the normalized model
      (--json: as JSON), warnings and errors on stderr as FILE:LINE[:COL]
      --strict: read ldirectord.cf exactly as ldirectord does (indentation, comments)
  lvsflow config convert FILE [FILE…] [--strict] [--format F]
      print the same configuration in the native YAML form
  lvsflow config schema [--model]
      JSON Schema of the native YAML file (--model: of the normalized model)
`;

interface Out { out: (s: string) => void; err: (s: string) => void }
const stdio: Out = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) };

export async function configCommand(args: string[], io: Out = stdio): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "schema") {
    const schema = rest.includes("--model") ? Model : NativeFile;
    io.out(JSON.stringify(z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }), null, 2) + "\n");
    return 0;
  }
  if (sub !== "check" && sub !== "convert") {
    (sub === "help" || sub === "--help" ? io.out : io.err)(USAGE);
    return sub === "help" || sub === "--help" ? 0 : 2;
  }
  const files: string[] = [];
  let json = false, strict = false;
  let format: ConfigFormat | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "--json") json = true;
    else if (a === "--strict") strict = true;
    else if (a === "--format" || a.startsWith("--format=")) {
      const f = a.includes("=") ? a.slice(9) : rest[++i];
      if (f !== "ldirectord" && f !== "yaml") { io.err(`lvsflow config: --format must be ldirectord or yaml\n${USAGE}`); return 2; }
      format = f;
    } else if (a.startsWith("--")) { io.err(`lvsflow config: unknown option ${a}\n${USAGE}`); return 2; }
    else files.push(a);
  }
  if (!files.length) { io.err(`lvsflow config ${sub}: no file given\n${USAGE}`); return 2; }

  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(files, { strict, format });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const d of e.diagnostics) io.err(formatDiagnostic(d) + "\n");
    return 1;
  }
  for (const w of loaded.warnings) io.err(formatDiagnostic(w) + "\n");
  if (sub === "convert") io.out(configToYaml(loaded.model));
  else io.out(json ? JSON.stringify(redactSecrets(loaded.model), null, 2) + "\n" : summary(loaded, loaded.warnings));
  return 0;
}

/** A short human description of the normalized model. */
export function summary({ model: m, version, sources }: LoadedConfig, warnings: Diagnostic[]): string {
  const lines = [`site ${m.site}: configuration ${version} from ${sources.map((s) => s.path).join(", ")}`];
  lines.push(`nodes: ${m.nodes.length ? m.nodes.map((n) => `${n.name} (priority ${n.priority}${Object.keys(n.interfaces).length ? `, ${Object.entries(n.interfaces).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""})`).join(", ") : "none"}`);
  lines.push(`groups: ${m.groups.length ? "" : "none"}`);
  for (const g of m.groups) {
    lines.push(`  ${g.name}: ${g.addresses.map((a) => `${a.address}/${a.prefix} on ${a.interface}`).join(", ")}${g.preempt ? `, preempt${g.preemptDelayMs ? ` after ${g.preemptDelayMs} ms` : ""}` : ""}`);
  }
  lines.push(`virtual services: ${m.virtualServices.length || "none"}`);
  for (const vs of m.virtualServices) lines.push(...describeVs(vs));
  if (warnings.length) lines.push(`${warnings.length} warning${warnings.length === 1 ? "" : "s"} (on stderr)`);
  return lines.join("\n") + "\n";
}

function describeVs(vs: VirtualService): string[] {
  const c = vs.check;
  const persist = vs.persistence ? `, persistent ${vs.persistence.timeout} s (netmask ${vs.persistence.netmask})` : "";
  const check = c.type === "on" || c.type === "off"
    ? `check ${c.type}`
    : `check ${c.type}${c.type === "combined" ? ` (${c.combinedConnects} connects per negotiate)` : ""}${c.type === "negotiate" || c.type === "combined" ? ` ${c.service} ${c.request}${c.receive ? ` expecting "${c.receive}"` : ""}` : ""}` +
      `${c.port !== null ? ` on port ${c.port}` : ""}, every ${c.interval} s, timeout ${c.timeout} s, down after ${c.failureCount} failure${c.failureCount === 1 ? "" : "s"}`;
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
