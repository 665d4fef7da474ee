// The native YAML form of the configuration model. Any subset of site, nodes, groups, timers,
// global and virtualServices may be given; virtual services may leave out what can be derived
// (id, family, protocol, defaults). `include: ldirectord.cf` (relative to the YAML file) takes
// the virtual services from an ldirectord file, so an existing ldirectord.cf can be used with a
// small native file that adds the nodes and floating groups. Every problem is reported at the
// FILE:LINE:COL of the offending key.
import { readFileSync } from "node:fs";
import { dirname, resolve as resolvePath, isAbsolute } from "node:path";
import { isIP } from "node:net";
import { LineCounter, parseDocument, isMap, isSeq, isScalar, visit, type Document, type Node } from "yaml";
import { z } from "zod";
import {
  Check, CONFIG_SCHEMA_VERSION, Family, FloatingAddress, FloatingGroup, Forwarding, Global, IpAddress, LbNode, Name, Port, Protocol, Timers,
  VirtualService, vsId, type FloatingGroup as FloatingGroupT, type LbNode as LbNodeT,
} from "../schemas/config.ts";
import { Collector, scrubDiagnostics, secretsIn, sortDiagnostics, type Diagnostic } from "./diagnostics.ts";
import { parseLdirectord, LD_DEFAULTS } from "./ldirectord.ts";
import { looksLikeKeepalived, parseKeepalived } from "./keepalived.ts";
import { serviceForPort } from "./ldirectord-values.ts";

type Path = (string | number)[];
export interface Position { file: string; line: number; col: number }

const NativeReal = z.strictObject({
  address: IpAddress,
  port: Port.optional(),
  forwarding: Forwarding,
  weight: z.number().int().min(0).max(65535).optional(),
  request: z.string().nullable().optional(),
  receive: z.string().nullable().optional(),
  lowerThreshold: z.number().int().min(0).nullable().optional(),
  upperThreshold: z.number().int().min(0).nullable().optional(),
});

export const NativeVirtualService = z.strictObject({
  id: z.string().optional(),
  protocol: Protocol.optional(),
  address: IpAddress.nullable().optional(),
  port: Port.optional(),
  fwmark: z.number().int().positive().nullable().optional(),
  family: Family.optional(),
  scheduler: z.string().regex(/^[a-z]+$/, "scheduler names are lowercase words").optional(),
  schedFlags: z.string().nullable().optional(),
  persistence: z.strictObject({ timeout: z.number().int().positive(), netmask: z.string().optional() }).nullable().optional(),
  quiescent: z.boolean().optional(),
  onePacket: z.boolean().optional(),
  check: Check.partial().strict().optional(),
  fallback: z.strictObject({ address: IpAddress, port: Port.optional(), forwarding: Forwarding.optional() }).nullable().optional(),
  reals: z.array(NativeReal).default([]),
  source: z.object({ file: z.string(), line: z.number().int() }).nullable().optional(),
});
type NativeVs = z.infer<typeof NativeVirtualService>;

export const NativeFile = z.strictObject({
  schemaVersion: z.literal(CONFIG_SCHEMA_VERSION).optional(),
  include: z.union([z.string().min(1), z.array(z.string().min(1))], { error: "must be a path or a list of paths" }).optional(),
  site: Name.optional(),
  nodes: z.array(LbNode.strict()).optional(),
  groups: z.array(FloatingGroup.extend({ addresses: z.array(FloatingAddress.strict()).min(1) }).strict()).optional(),
  timers: Timers.partial().strict().optional(),
  global: Global.partial().strict().optional(),
  virtualServices: z.array(NativeVirtualService).optional(),
});

/** What one native file contributes to the model; absent keys were not given. */
export interface NativePart {
  site?: string;
  nodes?: LbNodeT[];
  groups?: FloatingGroupT[];
  timers?: Partial<z.infer<typeof Timers>>;
  global?: Partial<z.infer<typeof Global>>;
  virtualServices: VirtualService[];
  /** Nodes an included keepalived.conf implies; used only when no file declares nodes. */
  derivedNodes?: LbNodeT[];
}
export interface NativeResult {
  part: NativePart;
  diagnostics: Diagnostic[];
  /** Files read through `include`, in order. */
  sources: { path: string; text: string }[];
  /** FILE:LINE:COL of a key path such as ["nodes", 1, "name"]. */
  locate(path: Path): Position;
}

export interface NativeOptions { strict?: boolean; readFile?: (path: string) => string; supports?: (vs: VirtualService) => string | null }

export function parseNative(text: string, file: string, opts: NativeOptions = {}): NativeResult {
  const c = new Collector(file, opts.strict ?? false);
  const lc = new LineCounter();
  const pos = (offset: number): Position => { const p = lc.linePos(offset); return { file, line: Math.max(1, p.line), col: Math.max(1, p.col) }; };
  let doc: Document;
  try {
    // uniqueKeys is checked below in linear time: the library's own check is quadratic.
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
  } catch (e) {
    // The YAML library gives up on some pathological inputs (e.g. thousands of nested blocks).
    c.error(1, 1, null, `cannot read the YAML: ${firstLine((e as Error).message)}`, "simplify the file's nesting");
    return finish({ part: { virtualServices: [] }, diagnostics: c.diagnostics, sources: [], locate: () => ({ file, line: 1, col: 1 }) }, text);
  }
  const locate = (path: Path) => pos(offsetOf(doc, path));
  const result: NativeResult = { part: { virtualServices: [] }, diagnostics: c.diagnostics, sources: [], locate };
  const at = (path: Path, msg: string, fix?: string, warn = false) => {
    const p = locate(path);
    (warn ? c.warn : c.error).call(c, p.line, p.col, path.length ? pathName(path) : null, msg, fix);
  };

  for (const e of doc.errors) { const p = pos(e.pos[0]); c.error(p.line, p.col, null, firstLine(e.message)); }
  let dups = 0;
  visit(doc, {
    Map(_k, map) {
      const seen = new Set<string>();
      for (const it of map.items) {
        const k = isScalar(it.key) ? String(it.key.value) : String(it.key);
        if (seen.has(k) && dups++ < 50) { const p = pos((it.key as Node | null)?.range?.[0] ?? 0); c.error(p.line, p.col, null, `map keys must be unique: "${k.slice(0, 80)}" is given twice`); }
        seen.add(k);
      }
    },
  });
  for (const w of doc.warnings) { const p = pos(w.pos[0]); c.warn(p.line, p.col, null, firstLine(w.message)); }
  if (doc.errors.length || dups) return finish(result, text);
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (e) {
    c.error(1, 1, null, `cannot read the YAML: ${(e as Error).message}`);
    return finish(result, text);
  }
  if (data === null || data === undefined) return finish(result, text); // an empty file contributes nothing
  if (typeof data !== "object" || Array.isArray(data)) {
    at([], "expected a mapping with some of: site, nodes, groups, timers, global, virtualServices, include");
    return finish(result, text);
  }
  const odd = exotic(data, []);
  if (odd) {
    at(odd, "unsupported YAML value (a binary, timestamp, set or ordered-map tag, or a recursive alias)", "use plain strings, numbers, lists and mappings");
    return finish(result, text);
  }
  const parsed = NativeFile.safeParse(data);
  if (!parsed.success) {
    // A file of a hundred thousand wrong keys needs a few examples, not a hundred thousand lines.
    let reported = 0;
    const LIMIT = 50;
    for (const i of parsed.error.issues) {
      for (const k of i.code === "unrecognized_keys" ? i.keys : [null]) {
        if (reported++ >= LIMIT) continue;
        if (k === null) at(i.path.map(seg), i.message);
        else at([...i.path.map(seg), k], `unknown key "${k}"`);
      }
    }
    if (reported > LIMIT) at([], `${reported - LIMIT} more problem(s) of the same kind not listed`);
    return finish(result, text);
  }
  const f = parsed.data;
  const part = result.part;
  if (f.site !== undefined) part.site = f.site;
  if (f.nodes) part.nodes = f.nodes;
  if (f.groups) part.groups = f.groups;
  if (f.timers) part.timers = f.timers;
  if (f.global) part.global = { ...f.global };

  // Included ldirectord files come first, then the YAML's own virtual services.
  const includes = f.include === undefined ? [] : Array.isArray(f.include) ? f.include : [f.include];
  includes.forEach((inc, k) => {
    const where: Path = Array.isArray(f.include) ? ["include", k] : ["include"];
    const path = isAbsolute(inc) ? inc : resolvePath(dirname(file), inc);
    if (/\.ya?ml$/i.test(inc)) return at(where, "only ldirectord.cf and keepalived.conf files can be included", "list the YAML file as another configuration file");
    let text: string;
    try {
      text = (opts.readFile ?? ((p: string) => readFileSync(p, "utf8")))(path);
    } catch (e) {
      return at(where, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    result.sources.push({ path, text });
    if (/keepalived[^/]*$/i.test(path) || looksLikeKeepalived(text)) {
      const ka = parseKeepalived(text, path, { strict: opts.strict, supports: opts.supports });
      c.diagnostics.push(...ka.diagnostics);
      part.virtualServices.push(...ka.virtualServices);
      if (ka.groups.length) part.groups = [...(part.groups ?? []), ...ka.groups];
      if (ka.nodes.length) part.derivedNodes = [...(part.derivedNodes ?? []), ...ka.nodes];
      return;
    }
    const ld = parseLdirectord(text, path, { strict: opts.strict, supports: opts.supports });
    c.diagnostics.push(...ld.diagnostics);
    part.virtualServices.push(...ld.virtualServices);
    // The YAML's own `global` wins over what the included file says.
    part.global = { autoreload: ld.global.autoreload, ...part.global };
  });
  (f.virtualServices ?? []).forEach((vs, k) => {
    const done = completeVirtualService(vs, { file, line: locate(["virtualServices", k]).line }, (p, msg, fix) => at(["virtualServices", k, ...p], msg, fix));
    const why = done && opts.supports?.(done);
    if (why) at(["virtualServices", k, "check"], why);
    if (done) part.virtualServices.push(done);
  });
  const seen = new Map<string, string>();
  part.virtualServices.forEach((vs) => {
    const here = vs.source ? `${vs.source.file}:${vs.source.line}` : file;
    const first = seen.get(vs.id);
    if (first) c.error(vs.source?.line ?? 1, 1, vs.id, `duplicate virtual service (first defined at ${first})`);
    else seen.set(vs.id, here);
  });
  const kept = new Set<string>();
  part.virtualServices = part.virtualServices.filter((vs) => (kept.has(vs.id) ? false : (kept.add(vs.id), true)));
  return finish(result, text);
}

function finish(r: NativeResult, text: string): NativeResult {
  r.diagnostics.splice(0, r.diagnostics.length, ...scrubDiagnostics(sortDiagnostics(r.diagnostics), secretsIn(text)));
  return r;
}

/** Fills what a native virtual service may leave out, with ldirectord's defaults. */
export function completeVirtualService(
  v: NativeVs, source: { file: string; line: number }, report: (path: Path, msg: string, fix?: string) => void,
): VirtualService | null {
  const fwm = v.fwmark != null || v.protocol === "fwm";
  if (fwm) {
    if (v.fwmark == null) return report(["protocol"], "a fwm virtual service needs a fwmark"), null;
    if (v.protocol && v.protocol !== "fwm") return report(["protocol"], "must be fwm (or left out) when fwmark is set"), null;
    if (v.address != null) return report(["address"], "a firewall-mark virtual service has no address; leave address out"), null;
  } else {
    if (v.address == null) return report([], "address and port are required (or fwmark)", "address: 192.0.2.10, port: 80"), null;
    if (v.port === undefined) return report([], "port is required", "port: 80"), null;
  }
  const address = fwm ? null : v.address!;
  const port = fwm ? 0 : v.port!;
  const protocol = v.protocol ?? (fwm ? "fwm" : port === 53 ? "udp" : "tcp");
  const family = address ? (isIP(address) === 6 ? "ipv6" : "ipv4") : (v.family ?? "ipv4");
  if (v.family && v.family !== family) return report(["family"], `${address} is ${family}, not ${v.family}`), null;
  const id = vsId(protocol, address, port, fwm ? v.fwmark! : null);
  if (v.id !== undefined && v.id !== id) return report(["id"], `does not match the service: expected "${id}"`, "leave id out"), null;
  const type = v.check?.type ?? "negotiate";
  const service = v.check?.service ?? (fwm ? "none" : serviceForPort(port));
  const negotiate = (type === "negotiate" || type === "combined") && service !== "sip" && service !== "simpletcp";
  const candidate = {
    id, protocol, address, port, fwmark: fwm ? v.fwmark! : null, family,
    scheduler: v.scheduler ?? LD_DEFAULTS.scheduler,
    schedFlags: v.schedFlags ?? null,
    persistence: v.persistence ? { timeout: v.persistence.timeout, netmask: v.persistence.netmask ?? (family === "ipv6" ? "128" : "255.255.255.255") } : null,
    quiescent: v.quiescent ?? false,
    onePacket: v.onePacket ?? false,
    check: {
      request: "/", receive: "", port: null, interval: LD_DEFAULTS.checkinterval, failureCount: LD_DEFAULTS.failurecount,
      timeout: negotiate ? LD_DEFAULTS.negotiatetimeout : LD_DEFAULTS.checktimeout,
      ...v.check, type, service,
    },
    fallback: v.fallback ? { address: v.fallback.address, port: v.fallback.port ?? port, forwarding: v.fallback.forwarding ?? "gate" } : null,
    reals: v.reals.map((r) => ({ ...r, port: r.port ?? port, weight: r.weight ?? 1 })),
    source: v.source ?? source,
  };
  const r = VirtualService.safeParse(candidate);
  if (!r.success) {
    for (const i of r.error.issues) report(i.path.map(seg), i.message);
    return null;
  }
  return r.data;
}

/** Path of the first value that is not plain JSON data: YAML tags can produce Buffers, Dates or
 *  Maps, and an alias inside its own anchor a cycle. */
function exotic(v: unknown, path: Path, stack = new Set<object>()): Path | null {
  if (v === null || typeof v !== "object") return null;
  const proto = Object.getPrototypeOf(v);
  if (stack.has(v) || (!Array.isArray(v) && proto !== Object.prototype && proto !== null)) return path;
  stack.add(v);
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  for (const [k, x] of entries) {
    const p = exotic(x, [...path, k], stack);
    if (p) return p;
  }
  stack.delete(v);
  return null;
}

const seg = (s: PropertyKey): string | number => (typeof s === "number" ? s : String(s));
const firstLine = (s: string) => s.split("\n")[0];

/** `virtualServices[0].check.timeout` */
export function pathName(path: Path): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

/** Offset of the deepest node on `path` that exists: the key itself for the last map entry. */
function offsetOf(doc: Document, path: Path): number {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0] ?? 0;
  for (const p of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => (isScalar(it.key) ? String(it.key.value) : String(it.key)) === String(p));
      if (!pair) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(p)] as Node | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return offset;
}
