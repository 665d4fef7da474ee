// ldirectord.cf → normalized virtual services. The grammar is in ldirectord-grammar.ts, the
// directives in ldirectord-directives.ts; this file applies them and resolves ldirectord's
// defaults (reference §1.2-§1.4) into the model. Bad input never throws: it becomes diagnostics.
import { hostname } from "node:os";
import { VirtualService, vsId, realId, type Real } from "../schemas/config.ts";
import { Collector, scrubDiagnostics, secretsIn, shownKey, sortDiagnostics, type Diagnostic } from "./diagnostics.ts";
import { layoutLdirectord, type Block, type Stmt } from "./ldirectord-grammar.ts";
import { DIRECTIVES, suggest, type Ctx, type GlobalSettings, type VirtualSettings } from "./ldirectord-directives.ts";
import { type Family, type FallbackSpec, isProblem, parseVirtualAddress, serviceForPort, type VirtualAddress } from "./ldirectord-values.ts";

export interface LdirectordGlobal {
  autoreload: boolean;
  /** ldirectord's fork=yes; lvsflow always checks virtual services independently. */
  fork: boolean;
}
export interface LdirectordResult {
  virtualServices: VirtualService[];
  global: LdirectordGlobal;
  diagnostics: Diagnostic[];
}

/** ldirectord's built-in defaults (set_defaults / ld_setup). */
export const LD_DEFAULTS = { checktimeout: 5, negotiatetimeout: 30, checkinterval: 10, failurecount: 1, scheduler: "wrr" } as const;

export interface LdirectordOptions {
  strict?: boolean;
  /** Why the probers cannot run a virtual service's check, or null; reported as an error at its checktype/service line. */
  supports?: (vs: VirtualService) => string | null;
}

export function parseLdirectord(text: string, file: string, opts: LdirectordOptions = {}): LdirectordResult {
  const c = new Collector(file, opts.strict ?? false);
  const { globals, blocks } = layoutLdirectord(text, c);
  const g: GlobalSettings = { at: {} };
  for (const s of globals) applyGlobal(s, g, c);

  const parsed: { block: Block; v: VirtualSettings; addr: VirtualAddress | null }[] = [];
  for (const block of blocks) {
    const family: Family = block.header.key === "virtual6" ? "ipv6" : "ipv4";
    const addr = parseVirtualAddress(block.header.value, family);
    if (isProblem(addr)) c.error(block.header.line, block.header.valueCol + addr.at, block.header.key, addr.error, addr.fix);
    const x: Ctx = { c, family, isFwm: !isProblem(addr) && addr.kind === "fwm" };
    const v: VirtualSettings = { at: {}, reals: [] };
    for (const s of block.stmts) {
      const d = DIRECTIVES[s.key];
      if (!d) unknown(s, c);
      else if (d.scope === "G") {
        // ldirectord rejects global-only directives inside a virtual block (§1.9.7).
        c.gotcha(s.line, s.col, s.key, "global directive inside a virtual block (ldirectord: Unknown command); applied globally", "move it above the first virtual= line, in column 1");
        d.apply(s, g, { c });
      } else d.apply(s, v, x);
    }
    parsed.push({ block, v, addr: isProblem(addr) ? null : addr });
  }

  const out: VirtualService[] = [];
  const seen = new Map<string, number>();
  for (const { block, v, addr } of parsed) {
    if (!addr) continue;
    const vs = resolve(block.header, addr, v, g, c);
    if (!vs) continue;
    const first = seen.get(vs.id);
    if (first !== undefined) {
      c.error(block.header.line, block.header.valueCol, block.header.key, `duplicate virtual service ${vs.id} (first defined at line ${first})`, "merge the two blocks");
      continue;
    }
    seen.set(vs.id, block.header.line);
    const why = opts.supports?.(vs);
    if (why) {
      const s = v.at.checktype ?? v.at.service ?? block.header;
      c.error(s.line, s.valueCol, s.key, `${vs.id}: ${why}`);
    }
    out.push(vs);
  }
  if (!g.fork) {
    for (const { v } of parsed) {
      const s = v.at.checkinterval;
      if (s) c.warn(s.line, s.col, s.key, "ldirectord ignores a per-virtual checkinterval unless fork = yes; lvsflow applies it");
    }
  }
  return { virtualServices: out, global: { autoreload: g.autoreload ?? false, fork: g.fork ?? false }, diagnostics: scrubDiagnostics(sortDiagnostics(c.diagnostics), secretsIn(text)) };
}

function applyGlobal(s: Stmt, g: GlobalSettings, c: Collector): void {
  const d = DIRECTIVES[s.key];
  if (!d) return unknown(s, c);
  if (d.scope === "V") {
    c.error(s.line, s.col, s.key, "only valid inside a virtual block", "indent it by 4 spaces under its virtual= line");
    return;
  }
  d.apply(s, g, { c });
}

function unknown(s: Stmt, c: Collector): void {
  const hint = suggest(s.key);
  c.error(s.line, s.col, shownKey(s.key), "unknown directive", hint && hint !== s.key ? `did you mean "${hint}"?` : undefined);
}

/** Negotiate checks use the negotiatetimeout chain; the others (and sip/simpletcp, which only have ldirectord's alarm) the checktimeout chain (§1.4). */
function usesNegotiateTimeout(type: string, service: string): boolean {
  return (type === "negotiate" || type === "combined") && service !== "sip" && service !== "simpletcp";
}

function resolve(h: Stmt, addr: VirtualAddress, v: VirtualSettings, g: GlobalSettings, c: Collector): VirtualService | null {
  const fwm = addr.kind === "fwm";
  const vport = addr.kind === "addr" ? addr.port : 0;
  const protocol = v.protocol ?? (fwm ? "fwm" : vport === 53 || (addr.kind === "addr" && addr.portToken === "domain") ? "udp" : "tcp");
  const service = v.service ?? (fwm ? "none" : serviceForPort(vport));
  let type = v.checktype ?? "negotiate";
  if (type === "connect" && protocol === "udp") {
    const s = v.at.checktype!;
    c.warn(s.line, s.valueCol, s.key, "a connect check on a UDP virtual service is an ICMP ping in ldirectord; lvsflow pings too");
    type = "ping";
  }
  // The two timeouts are each other's defaults, per virtual first, then global (ld_setup).
  const checkTimeout = v.checktimeout ?? v.negotiatetimeout ?? g.checktimeout ?? g.negotiatetimeout ?? LD_DEFAULTS.checktimeout;
  const negotiateTimeout = v.negotiatetimeout ?? v.checktimeout ?? g.negotiatetimeout ?? g.checktimeout ?? LD_DEFAULTS.negotiatetimeout;
  const request = v.request ?? "/";
  const receive = v.receive ?? "";

  if (type !== "negotiate" && type !== "combined" && (v.at.request || v.at.receive)) {
    const s = (v.at.request ?? v.at.receive)!;
    c.warn(s.line, s.col, s.key, `not used by checktype ${type}: only negotiate checks send the request and match the reply`);
  }
  if (service === "nntp" && (type === "negotiate" || type === "combined") && v.at.request && request !== "/") {
    const s = v.at.request;
    c.warn(s.line, s.col, s.key, "ldirectord's nntp check ignores request (it reads the greeting only); lvsflow selects it as a newsgroup, which must answer GROUP with 211", "leave request out for ldirectord's behaviour");
  }
  if (v.httpmethod === "HEAD" && receive !== "") {
    const s = v.at.receive!;
    c.warn(s.line, s.col, s.key, "a HEAD request has no body to match", "leave receive out with httpmethod = HEAD");
  }
  if (v.ops && protocol !== "udp") {
    const s = v.at.ops!;
    c.warn(s.line, s.col, s.key, "one-packet scheduling only applies to UDP virtual services; ignored");
  }
  if (["mysql", "pgsql", "oracle"].includes(service) && usesNegotiateTimeout(type, service)) {
    const s = v.at.service ?? h;
    c.warn(s.line, s.col, s.key, `ldirectord sets no timeout on SQL checks (§1.9.10), so one hung database stalls every check; lvsflow stops it after negotiatetimeout (${negotiateTimeout} s)`);
  }
  if (addr.family === "ipv6" && (type === "ping" || !["dns", "http", "https", "nntp", "none", "simpletcp", "sip"].includes(service))) {
    const s = v.at.checktype ?? v.at.service ?? h;
    c.warn(s.line, s.col, s.key, `ldirectord documents IPv6 checks only for connect/external/negotiate/on/off with dns, http, https, nntp, none, simpletcp or sip (§1.2); lvsflow runs ${type}/${service} over IPv6 too`);
  }
  const checkcount = v.checkcount ?? g.checkcount;
  if (checkcount !== undefined && type !== "ping") {
    const s = (v.at.checkcount ?? g.at.checkcount)!;
    c.warn(s.line, s.col, s.key, `only ping checks use checkcount; checktype ${type} ignores it`);
  }
  // ftp and sip checks log in as ldirectord does when no login is given (§1.4 service).
  const me = `ldirectord@${hostname()}`;
  const login = v.login ?? (service === "ftp" ? "anonymous" : service === "sip" ? me : undefined);
  const passwd = v.passwd ?? (service === "ftp" ? me : undefined);
  if (v.netmask !== undefined && v.persistent === undefined) {
    const s = v.at.netmask!;
    c.warn(s.line, s.col, s.key, "has no effect without persistent");
  }

  const reals: Real[] = [];
  const realLine = new Map<string, number>();
  for (const { spec, stmt } of v.reals) {
    if (!fwm && spec.port !== null && spec.port !== vport && spec.forwarding !== "masq") {
      c.warn(stmt.line, stmt.valueCol, stmt.key, `LVS sends ${spec.forwarding} traffic to the virtual port ${vport}; port ${spec.port} is only used by the check`);
    }
    for (const address of spec.addresses) {
      // Without a port, ipvsadm uses the virtual service's port (fwmark services keep 0).
      const real: Real = {
        address, port: spec.port ?? vport, forwarding: spec.forwarding, weight: spec.weight,
        request: spec.request, receive: spec.receive, lowerThreshold: spec.lower, upperThreshold: spec.upper,
      };
      const id = realId(real);
      const dup = realLine.get(id);
      if (dup !== undefined) {
        c.error(stmt.line, stmt.valueCol, stmt.key, `duplicate real server ${id} (already at line ${dup})`);
        continue;
      }
      realLine.set(id, stmt.line);
      reals.push(real);
    }
  }
  if (reals.length === 0) c.warn(h.line, h.col, h.key, "virtual service has no real servers; only its fallback can serve");

  const fallback = pickFallback(addr.family, protocol, vport, v, g);
  const vs = {
    id: vsId(protocol, addr.kind === "addr" ? addr.address : null, vport, fwm ? addr.fwmark : null),
    protocol,
    address: addr.kind === "addr" ? addr.address : null,
    port: vport,
    fwmark: fwm ? addr.fwmark : null,
    family: addr.family,
    scheduler: v.scheduler ?? LD_DEFAULTS.scheduler,
    schedFlags: v.schedflags ?? null,
    persistence: v.persistent !== undefined
      ? { timeout: v.persistent, netmask: v.netmask ?? (addr.family === "ipv6" ? "128" : "255.255.255.255") }
      : null,
    quiescent: v.quiescent ?? g.quiescent ?? false,
    onePacket: protocol === "udp" && (v.ops ?? false),
    check: {
      type,
      service,
      request,
      receive,
      port: v.checkport ?? null,
      interval: v.checkinterval ?? g.checkinterval ?? LD_DEFAULTS.checkinterval,
      timeout: usesNegotiateTimeout(type, service) ? negotiateTimeout : checkTimeout,
      failureCount: v.failurecount ?? g.failurecount ?? LD_DEFAULTS.failurecount,
      riseCount: 1, // ldirectord brings a real back on the first success
      combinedConnects: v.combinedConnects ?? 0,
      virtualhost: v.virtualhost ?? null,
      httpMethod: v.httpmethod ?? "GET",
      command: v.checkcommand ?? (type === "external" ? "/bin/true" : null),
      tlsVerify: false, // ldirectord never verifies certificates
      // ping: checkcount ICMP attempts within one check, each with checktimeout (§1.4 checkcount).
      ...(type === "ping" && checkcount !== undefined ? { retry: Math.min(10, checkcount - 1), delayBeforeRetry: 0 } : {}),
      ...(login !== undefined ? { login } : {}),
      ...(passwd !== undefined ? { passwd } : {}),
      ...(v.database !== undefined ? { database: v.database } : {}),
      ...(v.secret !== undefined ? { secret: v.secret } : {}),
    },
    fallback,
    reals,
    source: { file: c.file, line: h.line },
  };
  const r = VirtualService.safeParse(vs);
  if (!r.success) {
    for (const i of r.error.issues) c.error(h.line, h.valueCol, h.key, `${i.path.join(".")}: ${i.message}`);
    return null;
  }
  return r.data;
}

/** A per-virtual fallback wins; otherwise the global one of the same family, for tcp/udp only (§1.7). */
function pickFallback(family: Family, protocol: string, vport: number, v: VirtualSettings, g: GlobalSettings) {
  const key = family === "ipv6" ? "fallback6" : "fallback";
  const f: FallbackSpec | undefined = v[key] ?? (protocol === "fwm" ? undefined : g[key]);
  return f ? { address: f.address, port: f.port ?? vport, forwarding: f.forwarding } : null;
}
