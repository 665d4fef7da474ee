// Loads one or more configuration files (ldirectord.cf and/or native YAML) into the model,
// checks cross references, and fingerprints the sources. Throws ConfigError (with every
// diagnostic) when anything is wrong; warnings come back with the model.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { stringify } from "yaml";
import { Model, type FloatingGroup, type LbNode, type VirtualService } from "../schemas/config.ts";
import { Collector, ConfigError, hasErrors, sortDiagnostics, type Diagnostic } from "./diagnostics.ts";
import { parseLdirectord } from "./ldirectord.ts";
import { looksLikeKeepalived, parseKeepalived } from "./keepalived.ts";
import { parseNative, type NativePart, type Position } from "./native.ts";
import { resolveCredentialFiles } from "../secrets.ts";

export type ConfigFormat = "ldirectord" | "keepalived" | "yaml";
export const FORMATS: readonly ConfigFormat[] = ["ldirectord", "keepalived", "yaml"];
export interface LoadOptions {
  strict?: boolean;
  format?: ConfigFormat;
  readFile?: (path: string) => string;
  /** Why the probers cannot run a virtual service's check (null if they can): an error at load time, never a silent "up". */
  supports?: (vs: VirtualService) => string | null;
}
export interface LoadedConfig {
  model: Model;
  /** The configuration version: sha256 of the source texts (each length-prefixed), first 16 hex digits. */
  version: string;
  warnings: Diagnostic[];
  sources: { path: string; text: string }[];
}

const NATIVE_KEYS = /^(schemaVersion|include|site|nodes|groups|timers|global|virtualServices)\s*:/m;

/** By extension (.yaml/.yml, .cf), else by content: keepalived's blocks, a native top-level key. */
export function detectFormat(path: string, text: string): ConfigFormat {
  if (/\.ya?ml$/i.test(path)) return "yaml";
  if (/\.cf$/i.test(path)) return "ldirectord";
  if (/keepalived[^/]*$/i.test(path) || looksLikeKeepalived(text)) return "keepalived";
  if (/\.conf$/i.test(path)) return "ldirectord";
  return NATIVE_KEYS.test(text) && !/^\s*virtual6?\s*=/m.test(text) ? "yaml" : "ldirectord";
}

/** The version of a set of source texts (paths do not count: the same files elsewhere are the same configuration). */
export function versionOf(sources: readonly { text: string }[]): string {
  const h = createHash("sha256");
  for (const s of sources) h.update(`${Buffer.byteLength(s.text)}:`).update(s.text);
  return h.digest("hex").slice(0, 16);
}

export function loadConfig(files: string[], opts: LoadOptions = {}): LoadedConfig {
  const read = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const sources: { path: string; text: string }[] = [];
  const unreadable: Diagnostic[] = [];
  for (const path of files) {
    try {
      sources.push({ path, text: read(path) });
    } catch (e) {
      unreadable.push({ file: path, line: 1, col: 1, severity: "error", directive: null, message: `cannot read the file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    }
  }
  if (unreadable.length) throw new ConfigError(unreadable);
  return loadConfigSources(sources, { ...opts, readFile: read });
}

/** The pure core of loadConfig, for texts already in memory (the lab maps the seed's addresses first). */
export function loadConfigSources(sources: { path: string; text: string }[], opts: LoadOptions = {}): LoadedConfig {
  try {
    return loadUnguarded(sources, opts);
  } catch (e) {
    // A file nested thousands of levels deep overflows a recursive parser (yaml's composer, the
    // keepalived tree): a clear error, not a crash of the service reloading it.
    if (!(e instanceof RangeError) || !/call stack/i.test(e.message)) throw e;
    throw new ConfigError([{ file: sources[0]?.path ?? "(none)", line: 1, col: 1, severity: "error", directive: null, message: "cannot read the configuration: it nests too deeply (blocks, lists or maps thousands of levels deep)" }]);
  }
}

function loadUnguarded(sources: { path: string; text: string }[], opts: LoadOptions): LoadedConfig {
  const diagnostics: Diagnostic[] = [];
  const all: { path: string; text: string }[] = [];
  const nodes: { node: LbNode; at: Position }[] = [];
  // Nodes a keepalived.conf implies (router_id, priority): used only when no file declares nodes.
  const derivedNodes: { node: LbNode; at: Position }[] = [];
  const groups: { group: FloatingGroup; at: Position; locate: (p: (string | number)[]) => Position }[] = [];
  const vss: VirtualService[] = [];
  let site: { name: string; file: string } | undefined;
  let timers: NativePart["timers"] = {};
  let global: NativePart["global"] = {};
  let ldAutoreload: boolean | undefined;

  if (sources.length === 0) {
    throw new ConfigError([{ file: "(none)", line: 1, col: 1, severity: "error", directive: null, message: "no configuration file given" }]);
  }
  for (const src of sources) {
    all.push(src);
    const format = opts.format ?? detectFormat(src.path, src.text);
    if (format === "keepalived") {
      const r = parseKeepalived(src.text, src.path, { strict: opts.strict, supports: opts.supports });
      diagnostics.push(...r.diagnostics);
      vss.push(...r.virtualServices);
      const at = { file: src.path, line: 1, col: 1 };
      r.nodes.forEach((node) => derivedNodes.push({ node, at }));
      r.groups.forEach((group) => groups.push({ group, at, locate: () => at }));
      continue;
    }
    if (format === "ldirectord") {
      const r = parseLdirectord(src.text, src.path, { strict: opts.strict, supports: opts.supports });
      diagnostics.push(...r.diagnostics);
      vss.push(...r.virtualServices);
      ldAutoreload = (ldAutoreload ?? false) || r.global.autoreload;
      continue;
    }
    const r = parseNative(src.text, src.path, { strict: opts.strict, readFile: opts.readFile, supports: opts.supports });
    diagnostics.push(...r.diagnostics);
    all.push(...r.sources);
    const p = r.part;
    if (p.site !== undefined) {
      if (site && site.name !== p.site) {
        const at = r.locate(["site"]);
        diagnostics.push(diag("error", at, "site", `conflicts with site "${site.name}" from ${site.file}`));
      } else site ??= { name: p.site, file: src.path };
    }
    p.nodes?.forEach((node, k) => nodes.push({ node, at: r.locate(["nodes", k, "name"]) }));
    p.derivedNodes?.forEach((node) => derivedNodes.push({ node, at: r.locate(["include"]) }));
    p.groups?.forEach((group, k) => groups.push({ group, at: r.locate(["groups", k, "name"]), locate: (q) => r.locate(["groups", k, ...q]) }));
    timers = { ...timers, ...p.timers };
    global = { ...global, ...p.global };
    vss.push(...p.virtualServices);
  }

  if (nodes.length) {
    for (const d of derivedNodes) {
      if (!nodes.some((n) => n.node.name === d.node.name)) {
        diagnostics.push(diag("warning", d.at, "nodes", `node "${d.node.name}" (priority ${d.node.priority}) from keepalived is not used: the nodes come from ${nodes[0].at.file}`));
      }
    }
  } else nodes.push(...derivedNodes);
  const model = {
    site: site?.name,
    nodes: nodes.map((n) => n.node),
    groups: groups.map((g) => g.group),
    timers,
    global: { ...(ldAutoreload !== undefined ? { autoreload: ldAutoreload } : {}), ...global },
    virtualServices: dedupe(vss, diagnostics),
  };
  // Probe credentials from files (check.passwdFile …): the secrets stay out of the texts hashed and stored as versions.
  for (const p of resolveCredentialFiles(model.virtualServices)) diagnostics.push(diag("error", { file: p.file, line: p.line, col: 1 }, p.directive, p.message));
  if (!hasErrors(diagnostics)) crossCheck(nodes, groups, model.virtualServices, diagnostics);
  const parsed = Model.safeParse(model);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      diagnostics.push(diag("error", { file: sources[0].path, line: 1, col: 1 }, i.path.join("."), i.message));
    }
  }
  const sorted = sortDiagnostics(diagnostics);
  if (hasErrors(sorted) || !parsed.success) throw Object.assign(new ConfigError(sorted), { version: versionOf(all) });
  const version = versionOf(all);
  return { model: parsed.data, version, warnings: sorted, sources: all };
}

function diag(severity: "error" | "warning", at: Position, directive: string | null, message: string, fix?: string): Diagnostic {
  const c = new Collector(at.file);
  (severity === "error" ? c.error : c.warn).call(c, at.line, at.col, directive, message, fix);
  return c.diagnostics[0];
}

/** A virtual service defined in two files is an error at the second definition. */
function dedupe(vss: VirtualService[], out: Diagnostic[]): VirtualService[] {
  const seen = new Map<string, VirtualService>();
  for (const vs of vss) {
    const first = seen.get(vs.id);
    if (!first) { seen.set(vs.id, vs); continue; }
    if (first === vs) continue;
    const where = first.source ? `${first.source.file}:${first.source.line}` : "another file";
    out.push(diag("error", { file: vs.source?.file ?? "(config)", line: vs.source?.line ?? 1, col: 1 }, vs.id, `duplicate virtual service (first defined at ${where})`));
  }
  return [...seen.values()];
}

function crossCheck(
  nodes: { node: LbNode; at: Position }[],
  groups: { group: FloatingGroup; at: Position; locate: (p: (string | number)[]) => Position }[],
  vss: VirtualService[], out: Diagnostic[],
): void {
  const names = new Map<string, Position>();
  for (const { node, at } of nodes) {
    const first = names.get(node.name);
    if (first) out.push(diag("error", at, "nodes.name", `node "${node.name}" is defined twice (first at ${first.file}:${first.line})`, "give every node a unique name"));
    else names.set(node.name, at);
  }
  const prios = new Map<number, string>();
  for (const { node, at } of nodes) {
    const other = prios.get(node.priority);
    if (other && other !== node.name) out.push(diag("warning", at, "nodes.priority", `nodes "${other}" and "${node.name}" have the same priority ${node.priority}; the tie is broken by name`));
    else prios.set(node.priority, node.name);
  }
  const groupNames = new Set<string>();
  const owner = new Map<string, string>();
  for (const { group, at, locate } of groups) {
    if (groupNames.has(group.name)) out.push(diag("error", at, "groups.name", `group "${group.name}" is defined twice`));
    groupNames.add(group.name);
    group.addresses.forEach((a, k) => {
      const here = locate(["addresses", k, "interface"]);
      if (!a.interface.trim()) out.push(diag("error", here, "interface", `address ${a.address} of group "${group.name}" has no interface`));
      const prev = owner.get(a.address);
      if (prev) out.push(diag("error", locate(["addresses", k, "address"]), "address", `${a.address} is already in group "${prev}"; an address can float with one group only`));
      else owner.set(a.address, group.name);
      for (const { node } of nodes) {
        const ifaces = Object.values(node.interfaces);
        if (ifaces.length && !ifaces.includes(a.interface)) {
          out.push(diag("warning", here, "interface", `node "${node.name}" declares no interface "${a.interface}" (it has ${ifaces.join(", ")})`));
        }
      }
    });
  }
  for (const vs of vss) {
    if (vs.address === null || owner.has(vs.address)) continue;
    const at = { file: vs.source?.file ?? "(config)", line: vs.source?.line ?? 1, col: 1 };
    out.push(diag("warning", at, vs.id, `address ${vs.address} is in no floating group: lvsflow will not move it between nodes`, "add it to a group's addresses"));
  }
}

/** The native YAML form of a model (without `source`, which describes where it came from). */
export function configToYaml(model: Model): string {
  const { virtualServices, ...rest } = model;
  // A credential read from a file stays a file reference: never its content.
  const fromFiles = (c: VirtualService["check"]) => Object.fromEntries(Object.entries(c).filter(([k]) => !(["login", "passwd", "secret"].includes(k) && (c as Record<string, unknown>)[`${k}File`])));
  const doc = { ...rest, virtualServices: virtualServices.map(({ source: _source, ...vs }) => ({ ...vs, check: fromFiles(vs.check) })) };
  return `# lvsflow configuration, native form (generated)\n${stringify(doc, { lineWidth: 0 })}`;
}
