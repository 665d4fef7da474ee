// keepalived's LVS part → lvsflow virtual services. virtual_server (address+port, fwmark, or a
// virtual_server_group expanded into one virtual service per member), lvs_sched, lvs_method,
// persistence, protocol, sorry_server (the fallback), real_server with weight, thresholds and
// inhibit_on_failure (quiescent), and the checkers TCP_CHECK / HTTP_GET / SSL_GET / MISC_CHECK
// (plus SMTP_CHECK, DNS_CHECK, PING_CHECK mapped to the matching lvsflow checks). keepalived's
// defaults (anchors §2.2): scheduler wlc, NAT, delay_loop 60 s, connect_timeout 5 s, retry 1
// (MISC 0), delay_before_retry 3 s for HTTP/SSL and 1 s otherwise, persistence_timeout 360 s.
// lvsflow runs one check per virtual service; differences between reals are reported.
import { isIP } from "node:net";
import { VirtualService, vsId, realId, type Check, type Real } from "../schemas/config.ts";
import type { KStmt, Word } from "./keepalived-grammar.ts";
import { KCtx, forwardingOf, ipOf, portOf, splitStatements, type Fwd } from "./keepalived-values.ts";
import { MAX_RANGE } from "./ldirectord-values.ts";

export const KA_DEFAULTS = { scheduler: "wlc", delayLoop: 60, connectTimeout: 5, persistenceTimeout: 360 } as const;

type Member = { kind: "addr"; address: string; port: number } | { kind: "fwm"; fwmark: number };
export interface VsGroup { name: string; at: Word; members: Member[] }

/** What a checker (or its absence) says about one real server. */
interface RealCheck {
  at: Word | null;
  check: Partial<Check> & Pick<Check, "type" | "service">;
}

/** Timing defaults that cascade virtual_server → real_server → checker. */
interface Timing { delayLoop?: number; connectTimeout?: number; retry?: number; delayBeforeRetry?: number }

const EVENTS = "lvsflow publishes real server changes as events (audited in Redis); act on those events";
const VS_KEYS = new Set([
  "delay_loop", "lvs_sched", "lb_algo", "lvs_method", "lb_kind", "persistence_timeout", "persistence_granularity", "persistence_engine",
  "protocol", "ha_suspend", "virtualhost", "alpha", "omega", "quorum", "hysteresis", "quorum_up", "quorum_down", "sorry_server",
  "sorry_server_inhibit", "sorry_server_lvs_method", "real_server", "ops", "hashed", "flag-1", "flag-2", "flag-3", "sh-port",
  "sh-fallback", "mh-port", "mh-fallback", "ip_family", "smtp_alert", "connect_timeout", "retry", "delay_before_retry", "warmup",
  "inhibit_on_failure", "snmp_name",
]);
const RS_KEYS = new Set([
  "weight", "inhibit_on_failure", "lvs_method", "uthreshold", "lthreshold", "notify_up", "notify_down", "smtp_alert", "virtualhost",
  "alpha", "delay_loop", "connect_timeout", "retry", "nb_get_retry", "delay_before_retry", "warmup",
]);
const CHECK_KEYS = new Set([
  "connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "connect_timeout", "retry", "nb_get_retry", "delay_before_retry",
  "delay_loop", "warmup", "fwmark", "log_all_failures", "alpha", "url", "http_protocol", "virtualhost", "enable_sni", "sni_name",
  "tls_compliant", "fast_recovery", "misc_path", "misc_timeout", "misc_dynamic", "user", "helo_name", "type", "name", "host",
  "payload", "require_reply", "min_length", "max_length", "dynamic",
]);
const URL_KEYS = new Set(["path", "digest", "status_code", "virtualhost", "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset"]);
const CHECKERS = new Set(["TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "PING_CHECK", "UDP_CHECK", "BFD_CHECK", "FILE_CHECK"]);
const SCHED_FLAGS = new Set(["flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback"]);

export function readVsGroup(x: KCtx, s: KStmt): VsGroup | null {
  const nameW = x.arg(s, 0, "group name");
  if (!nameW || !s.block) { if (nameW) x.error(s.key, s.key.text, "expected a block: virtual_server_group NAME { ADDRESS PORT … }"); return null; }
  const g: VsGroup = { name: nameW.text, at: s.key, members: [] };
  for (const e of s.block) {
    if (e.key.text === "fwmark") {
      const n = x.number(e, "firewall mark", { min: 1, max: 0xffffffff, int: true });
      if (n !== undefined) g.members.push({ kind: "fwm", fwmark: n });
      continue;
    }
    const port = portOf(x, e, x.arg(e, 0, "port"));
    if (port === undefined) continue;
    x.noMore(e, 1);
    // A range repeats the address's last part: 192.0.2.10-20 (IPv4) or 2001:db8::a-1f (IPv6).
    const m = /^(.*?)(?:-([0-9a-fA-F]+))?$/.exec(e.key.text)!;
    const fam = isIP(m[1]);
    if (!fam) { x.error(e.key, "virtual_server_group", `"${e.key.text}" is not an address or address range (A.B.C.D or A.B.C.D-E)`); continue; }
    if (m[2] === undefined) { g.members.push({ kind: "addr", address: m[1], port }); continue; }
    const expanded = expandRange(m[1], m[2], fam);
    if (typeof expanded === "string") { x.error(e.key, "virtual_server_group", expanded); continue; }
    for (const a of expanded) g.members.push({ kind: "addr", address: a, port });
  }
  if (!g.members.length) x.warn(s.key, s.key.text, `virtual_server_group ${g.name} has no entries (keepalived removes it)`);
  return g;
}

function expandRange(first: string, endTok: string, fam: number): string[] | string {
  if (fam === 4) {
    const parts = first.split(".").map(Number);
    const end = Number(endTok);
    if (!/^\d+$/.test(endTok) || end > 255 || end <= parts[3]) return `range end ${endTok} must be above ${parts[3]} and at most 255`;
    return Array.from({ length: end - parts[3] + 1 }, (_, k) => [...parts.slice(0, 3), parts[3] + k].join("."));
  }
  return "IPv6 address ranges are not supported: list each address";
}

/** One keepalived virtual_server block → one virtual service per address (several for a group). */
export function readVirtualServer(x: KCtx, s: KStmt, groups: Map<string, VsGroup>, file: string): VirtualService[] {
  const a0 = x.arg(s, 0, "address and port, fwmark N or group NAME");
  if (!a0) return [];
  if (!s.block) { x.error(s.key, s.key.text, "expected a block: virtual_server ADDRESS PORT { … }"); return []; }
  let members: Member[];
  if (a0.text === "fwmark") {
    const w = x.arg(s, 1, "firewall mark");
    if (!w) return [];
    if (!/^\d+$/.test(w.text) || Number(w.text) < 1 || Number(w.text) > 0xffffffff) { x.error(w, s.key.text, "a firewall mark must be an integer from 1 to 4294967295"); return []; }
    members = [{ kind: "fwm", fwmark: Number(w.text) }];
  } else if (a0.text === "group") {
    const w = x.arg(s, 1, "group name");
    if (!w) return [];
    const g = groups.get(w.text);
    if (!g) { x.error(w, s.key.text, `no virtual_server_group named ${w.text} (it must come before the virtual_server)`); return []; }
    members = g.members;
    if (members.length > 1) x.warn(w, s.key.text, `group ${w.text}: lvsflow makes one virtual service for each of its ${members.length} members, with the same settings and real servers`);
  } else {
    const address = ipOf(x, s, a0, "IP address");
    const pw = s.args[1];
    if (!pw) { if (address) x.error(s.key, s.key.text, "a virtual server without a port (all ports) is not supported", "give the port, or use fwmark"); return []; }
    const port = portOf(x, s, pw);
    if (address === undefined || port === undefined) return [];
    if (port === 0) { x.error(pw, s.key.text, "port 0 (all ports) is not supported", "use a fwmark virtual server"); return []; }
    members = [{ kind: "addr", address, port }];
  }
  x.noMore(s, 2);
  const spec = readVsBody(x, s);
  if (!spec) return [];
  const out: VirtualService[] = [];
  if (members.length > MAX_RANGE) { x.error(s.key, s.key.text, `the group has ${members.length} members (max ${MAX_RANGE})`); return []; }
  for (const m of members) {
    const vs = build(x, s, m, spec, file);
    if (vs) out.push(vs);
  }
  return out;
}

interface RsSpec {
  at: Word;
  address: string;
  port: number | null;
  weight: number;
  forwarding: Fwd | null;
  lower: number | null;
  upper: number | null;
  inhibit: Word | null;
  virtualhost: string | null;
  check: RealCheck;
}
interface VsSpec {
  scheduler: string;
  flags: string[];
  forwarding: Fwd;
  persistence: { timeout: number; netmask: string | null } | null;
  protocol: { value: "tcp" | "udp"; at: Word } | null;
  ops: Word | null;
  virtualhost: string | null;
  inhibit: boolean;
  family: { value: "ipv4" | "ipv6"; at: Word } | null;
  sorry: { address: string; port: number | null; forwarding: Fwd | null; at: Word } | null;
  quorum: number | null;
  hysteresis: number | null;
  reals: RsSpec[];
  /** The virtual server's own timing, for a virtual service without checkers. */
  timing: Timing;
}

function readVsBody(x: KCtx, s: KStmt): VsSpec | null {
  const t: Timing = {};
  const spec: VsSpec = { scheduler: KA_DEFAULTS.scheduler, flags: [], forwarding: "masq", persistence: null, protocol: null, ops: null, virtualhost: null, inhibit: false, family: null, sorry: null, quorum: null, hysteresis: null, reals: [], timing: t };
  let sched: Word | null = null;
  let quorum: { n: number; at: Word } | null = null;
  let hysteresis: { n: number; at: Word } | null = null;
  let granularity: { value: string; at: Word } | null = null;
  let sorryFwd: Fwd | null = null;
  const realStmts: KStmt[] = [];
  for (const st of splitStatements(s.block!, VS_KEYS)) {
    const k = st.key.text;
    switch (k) {
      case "delay_loop": t.delayLoop = x.number(st, "delay_loop (seconds)", { min: 0.001 }) ?? t.delayLoop; break;
      case "connect_timeout": t.connectTimeout = x.number(st, "connect_timeout (seconds)", { min: 0.001 }) ?? t.connectTimeout; break;
      case "retry": t.retry = x.number(st, "retry", { min: 0, int: true }) ?? t.retry; break;
      case "delay_before_retry": t.delayBeforeRetry = x.number(st, "delay_before_retry (seconds)", { min: 0 }) ?? t.delayBeforeRetry; break;
      case "lvs_sched": case "lb_algo": {
        const w = x.arg(st, 0, "scheduler");
        if (w && /^[a-z]+$/.test(w.text)) { spec.scheduler = w.text; sched = w; } else if (w) x.error(w, k, `scheduler must be a lowercase name such as wlc, rr or sh, not "${w.text}"`);
        break;
      }
      case "lvs_method": case "lb_kind": spec.forwarding = forwardingOf(x, st) ?? spec.forwarding; break;
      case "persistence_timeout": {
        const n = st.args.length ? x.number(st, "persistence_timeout (seconds)", { min: 1, int: true }) : KA_DEFAULTS.persistenceTimeout;
        if (n !== undefined) spec.persistence = { timeout: n, netmask: null };
        break;
      }
      case "persistence_granularity": { const w = x.arg(st, 0, "netmask"); if (w) granularity = { value: w.text, at: w }; break; }
      case "protocol": {
        const w = x.arg(st, 0, "TCP, UDP or SCTP");
        const p = w?.text.toUpperCase();
        if (p === "TCP" || p === "UDP") spec.protocol = { value: p === "TCP" ? "tcp" : "udp", at: w! };
        else if (p === "SCTP") x.error(w!, k, "SCTP virtual services are not supported by lvsflow");
        else if (w) x.error(w, k, `protocol must be TCP, UDP or SCTP, not "${w.text}"`);
        break;
      }
      case "ops": spec.ops = st.key; break;
      case "virtualhost": spec.virtualhost = x.arg(st, 0, "host name")?.text ?? null; break;
      case "inhibit_on_failure": spec.inhibit = true; break;
      case "ip_family": {
        const w = x.arg(st, 0, "inet or inet6");
        if (w?.text === "inet" || w?.text === "inet6") spec.family = { value: w.text === "inet" ? "ipv4" : "ipv6", at: w };
        else if (w) x.error(w, k, `must be inet or inet6, not "${w.text}"`);
        break;
      }
      case "quorum": { const n = x.number(st, "quorum", { min: 1, int: true }); if (n !== undefined) quorum = { n, at: st.key }; break; }
      case "hysteresis": { const n = x.number(st, "hysteresis", { min: 0, int: true }); if (n !== undefined) hysteresis = { n, at: st.key }; break; }
      case "sorry_server": {
        const address = ipOf(x, st, x.arg(st, 0, "address"), "IP address");
        const port = st.args[1] ? portOf(x, st, st.args[1]) : null;
        x.noMore(st, 2);
        if (address !== undefined && port !== undefined) spec.sorry = { address, port, forwarding: null, at: st.key };
        break;
      }
      case "sorry_server_lvs_method": sorryFwd = forwardingOf(x, st) ?? sorryFwd; break;
      case "real_server": realStmts.push(st); break;
      case "alpha": break; // lvsflow never puts a real in the pool before its first check: alpha is its behaviour
      case "omega": case "quorum_up": case "quorum_down": case "smtp_alert": x.ignored(st, EVENTS); break;
      case "ha_suspend": x.ignored(st, "every lvsflow node checks its reals and keeps its kernel table ready, whoever owns the address"); break;
      case "persistence_engine": x.ignored(st, "only client-address persistence is supported"); break;
      case "sorry_server_inhibit": x.ignored(st, "the fallback server is added and removed, never quiesced (as in ldirectord)"); break;
      case "hashed": case "snmp_name": x.ignored(st); break;
      case "warmup": x.ignored(st, "lvsflow spreads its checks itself"); break;
      default:
        if (SCHED_FLAGS.has(k)) spec.flags.push(k);
        else if (CHECKERS.has(k)) x.error(st.key, k, "checkers belong inside a real_server block");
        else x.unknown(st, "virtual_server");
    }
  }
  if (!sched) x.warn(s.key, "lvs_sched", `no scheduler given: keepalived uses ${KA_DEFAULTS.scheduler}, and so does lvsflow`);
  if (granularity) {
    spec.persistence ??= { timeout: KA_DEFAULTS.persistenceTimeout, netmask: null };
    spec.persistence.netmask = granularity.value;
  }
  // keepalived's default quorum 1 / hysteresis 0 is ldirectord's rule (the sorry server serves
  // when no real server is up): only other values are carried over.
  if (quorum && quorum.n !== 1) spec.quorum = quorum.n;
  if (hysteresis && hysteresis.n !== 0) spec.hysteresis = hysteresis.n;
  if ((spec.quorum !== null || spec.hysteresis !== null) && !spec.sorry) x.warn((quorum ?? hysteresis)!.at, quorum ? "quorum" : "hysteresis", "without a sorry_server, losing the quorum changes nothing in lvsflow (keepalived would only run quorum_down)");
  if (spec.sorry) spec.sorry.forwarding = sorryFwd ?? spec.forwarding;
  for (const r of realStmts) {
    const rs = readReal(x, r, t, spec);
    if (rs) spec.reals.push(rs);
  }
  return spec;
}

function readReal(x: KCtx, s: KStmt, vsTiming: Timing, vs: VsSpec): RsSpec | null {
  const address = ipOf(x, s, x.arg(s, 0, "address"), "IP address");
  const port = s.args[1] ? portOf(x, s, s.args[1]) : null;
  x.noMore(s, 2);
  if (address === undefined || port === undefined) return null;
  const r: RsSpec = { at: s.key, address, port, weight: 1, forwarding: null, lower: null, upper: null, inhibit: null, virtualhost: null, check: { at: null, check: { type: "on", service: "none" } } };
  const t: Timing = { ...vsTiming };
  const checkers: KStmt[] = [];
  for (const st of splitStatements(s.block ?? [], RS_KEYS)) {
    const k = st.key.text;
    switch (k) {
      case "weight": r.weight = x.number(st, "weight", { min: 0, max: 65535, int: true }) ?? r.weight; break;
      case "inhibit_on_failure": r.inhibit = st.key; break;
      case "lvs_method": r.forwarding = forwardingOf(x, st) ?? r.forwarding; break;
      case "uthreshold": r.upper = x.number(st, "uthreshold", { min: 0, int: true }) ?? r.upper; break;
      case "lthreshold": r.lower = x.number(st, "lthreshold", { min: 0, int: true }) ?? r.lower; break;
      case "virtualhost": r.virtualhost = x.arg(st, 0, "host name")?.text ?? null; break;
      case "delay_loop": t.delayLoop = x.number(st, "delay_loop (seconds)", { min: 0.001 }) ?? t.delayLoop; break;
      case "connect_timeout": t.connectTimeout = x.number(st, "connect_timeout (seconds)", { min: 0.001 }) ?? t.connectTimeout; break;
      case "retry": case "nb_get_retry": t.retry = x.number(st, k, { min: 0, int: true }) ?? t.retry; break;
      case "delay_before_retry": t.delayBeforeRetry = x.number(st, "delay_before_retry (seconds)", { min: 0 }) ?? t.delayBeforeRetry; break;
      case "alpha": break;
      case "notify_up": case "notify_down": case "smtp_alert": x.ignored(st, EVENTS); break;
      case "warmup": x.ignored(st, "lvsflow spreads its checks itself"); break;
      default:
        if (CHECKERS.has(k)) checkers.push(st);
        else x.unknown(st, "real_server");
    }
  }
  if (!s.block) x.warn(s.key, "real_server", "no block: keepalived needs real_server ADDRESS PORT { … }; read as a real server without checks");
  for (const extra of checkers.slice(1)) x.ignored(extra, `lvsflow runs one check per real server: the ${checkers[0].key.text} at line ${checkers[0].key.line}`);
  if (checkers.length) {
    const c = readChecker(x, checkers[0], t, r, vs);
    if (c) r.check = c;
    else return null;
  }
  return r;
}

function readChecker(x: KCtx, s: KStmt, inherited: Timing, r: RsSpec, vs: VsSpec): RealCheck | null {
  const kind = s.key.text;
  if (kind === "UDP_CHECK" || kind === "BFD_CHECK" || kind === "FILE_CHECK") {
    x.error(s.key, kind, `${kind} has no lvsflow equivalent`, "use TCP_CHECK, HTTP_GET, SSL_GET or MISC_CHECK");
    return null;
  }
  const t: Timing = { ...inherited };
  const check: RealCheck["check"] = { type: "connect", service: "none" };
  let port: number | null = null;
  let vhost: string | null = null;
  let url: KStmt | null = null;
  let miscPath: string | null = null;
  let miscTimeout: number | undefined;
  let dnsName: string | null = null;
  for (const st of splitStatements(s.block ?? [], CHECK_KEYS)) {
    const k = st.key.text;
    switch (k) {
      case "connect_port": port = portOf(x, st, x.arg(st, 0, "port")) ?? port; break;
      case "connect_ip": {
        const ip = ipOf(x, st, x.arg(st, 0, "address"), "IP address");
        if (ip && ip !== r.address) x.warn(st.key, k, `lvsflow checks the real server's own address ${r.address}, not ${ip}`);
        break;
      }
      case "connect_timeout": t.connectTimeout = x.number(st, "connect_timeout (seconds)", { min: 0.001 }) ?? t.connectTimeout; break;
      case "retry": case "nb_get_retry": t.retry = x.number(st, k, { min: 0, int: true }) ?? t.retry; break;
      case "delay_before_retry": t.delayBeforeRetry = x.number(st, "delay_before_retry (seconds)", { min: 0 }) ?? t.delayBeforeRetry; break;
      case "delay_loop": t.delayLoop = x.number(st, "delay_loop (seconds)", { min: 0.001 }) ?? t.delayLoop; break;
      case "virtualhost": vhost = x.arg(st, 0, "host name")?.text ?? vhost; break;
      case "sni_name": vhost ??= x.arg(st, 0, "host name")?.text ?? null; break;
      case "url":
        if (!st.block) { x.error(st.key, k, "expected a block: url { path /PATH status_code 200 }"); break; }
        if (url) x.ignored(st, `lvsflow checks one URL per real server: the one at line ${url.key.line}`);
        else url = st;
        break;
      case "misc_path": miscPath = x.arg(st, 0, "command")?.text ?? null; break;
      case "misc_timeout": miscTimeout = x.number(st, "misc_timeout (seconds)", { min: 0.001 }); break;
      case "misc_dynamic": x.ignored(st, "lvsflow does not set weights from a check's exit code; exit 0 is up, anything else down"); break;
      case "name": dnsName = x.arg(st, 0, "name")?.text ?? null; break;
      case "type": { const w = x.arg(st, 0, "record type"); if (w && w.text.toUpperCase() !== "A") x.warn(w, k, `lvsflow's dns check looks up A records, not ${w.text}`); break; }
      case "enable_sni": case "alpha": break;
      case "bindto": case "bind_port": case "bind_if": x.ignored(st, "lvsflow checks from the prober's own address"); break;
      case "warmup": x.ignored(st, "lvsflow spreads its checks itself"); break;
      case "log_all_failures": x.ignored(st, "lvsflow records every failed check as an event"); break;
      default:
        x.ignored(st);
    }
  }
  const defaults = kind === "HTTP_GET" || kind === "SSL_GET" ? { retry: 1, delayBeforeRetry: 3 } : kind === "MISC_CHECK" ? { retry: 0, delayBeforeRetry: 1 } : kind === "DNS_CHECK" ? { retry: 3, delayBeforeRetry: t.delayLoop ?? KA_DEFAULTS.delayLoop } : { retry: 1, delayBeforeRetry: 1 };
  const interval = t.delayLoop ?? KA_DEFAULTS.delayLoop;
  let retry = t.retry ?? defaults.retry;
  if (retry > 10) { x.warn(s.key, "retry", `retry ${retry} is more than lvsflow's maximum of 10; 10 is used`); retry = 10; }
  Object.assign(check, {
    interval, retry, delayBeforeRetry: t.delayBeforeRetry ?? defaults.delayBeforeRetry,
    timeout: t.connectTimeout ?? KA_DEFAULTS.connectTimeout,
    connectTimeout: t.connectTimeout ?? null,
    failureCount: 1, riseCount: 1, port,
    virtualhost: vhost ?? r.virtualhost ?? vs.virtualhost,
  } satisfies Partial<Check>);
  switch (kind) {
    case "TCP_CHECK": Object.assign(check, { type: "connect", service: "none" }); break;
    case "PING_CHECK": Object.assign(check, { type: "ping", service: "none" }); break;
    case "SMTP_CHECK": Object.assign(check, { type: "negotiate", service: "smtp" }); break;
    case "DNS_CHECK": Object.assign(check, { type: "negotiate", service: "dns", request: dnsName ?? "." }); break;
    case "MISC_CHECK":
      if (!miscPath) { x.error(s.key, kind, "MISC_CHECK needs misc_path"); return null; }
      Object.assign(check, { type: "external", service: "none", command: miscPath, timeout: miscTimeout ?? interval });
      break;
    case "HTTP_GET": case "SSL_GET": {
      Object.assign(check, { type: "negotiate", service: kind === "HTTP_GET" ? "http" : "https" });
      if (!url) { x.error(s.key, kind, `${kind} needs a url { path … } block`); return null; }
      if (!readUrl(x, url, check)) return null;
      break;
    }
    default:
      x.unknown(s, "real_server");
      return null;
  }
  return { at: s.key, check };
}

function readUrl(x: KCtx, s: KStmt, check: RealCheck["check"]): boolean {
  let ok = true;
  for (const st of splitStatements(s.block!, URL_KEYS)) {
    const k = st.key.text;
    if (k === "path") {
      const w = x.arg(st, 0, "path");
      if (w) check.request = w.text.startsWith("/") || /^[a-z]+:\/\//i.test(w.text) ? w.text : "/" + w.text;
    } else if (k === "status_code") {
      const codes: string[] = [];
      for (const w of st.args) {
        if (!/^[1-5]\d\d(-[1-5]\d\d)?$/.test(w.text)) { x.error(w, k, `"${w.text}" is not a status code or range like 200-299`); ok = false; }
        else codes.push(w.text);
      }
      if (!st.args.length) x.arg(st, 0, "status code");
      if (codes.length) check.statusCodes = codes;
    } else if (k === "virtualhost") {
      check.virtualhost = x.arg(st, 0, "host name")?.text ?? check.virtualhost;
    } else if (k === "regex") {
      const w = x.arg(st, 0, "regular expression");
      if (w) {
        try { new RegExp(w.text); check.receive = w.text; } catch (e) { x.error(w, k, `invalid regular expression: ${(e as Error).message}`); ok = false; }
      }
    } else if (k === "digest") {
      x.warn(st.key, k, "no lvsflow equivalent, ignored: the page's MD5 digest is not compared, only the status code (and regex); use regex to match the content");
    } else if (k === "regex_no_match") {
      x.warn(st.key, k, "no lvsflow equivalent, ignored: the regex must match for the real server to be up");
    } else {
      x.ignored(st);
    }
  }
  if (check.request === undefined) { x.error(s.key, "url", "url needs a path"); return false; }
  return ok;
}

function build(x: KCtx, s: KStmt, m: Member, spec: VsSpec, file: string): VirtualService | null {
  const fwm = m.kind === "fwm";
  const address = m.kind === "addr" ? m.address : null;
  const port = m.kind === "addr" ? m.port : 0;
  const family = address ? (isIP(address) === 6 ? "ipv6" : "ipv4") : (spec.family?.value ?? (spec.reals[0] && isIP(spec.reals[0].address) === 6 ? "ipv6" : "ipv4"));
  if (spec.family && spec.family.value !== family) { x.error(spec.family.at, "ip_family", `the virtual server's address is ${family}`); return null; }
  if (fwm && spec.protocol) x.warn(spec.protocol.at, "protocol", "a firewall-mark virtual service matches every protocol; ignored (as keepalived does)");
  const protocol = fwm ? "fwm" : spec.protocol?.value ?? "tcp";
  if (spec.ops && protocol !== "udp") x.warn(spec.ops, "ops", "one-packet scheduling only applies to UDP virtual services; ignored");
  let netmask = spec.persistence?.netmask ?? null;
  if (netmask !== null && family === "ipv4" && isIP(netmask) !== 4) { x.error(s.key, "persistence_granularity", `"${netmask}" is not an IPv4 netmask such as 255.255.255.0`); return null; }
  if (netmask !== null && family === "ipv6" && !(/^\d+$/.test(netmask) && Number(netmask) >= 1 && Number(netmask) <= 128)) { x.error(s.key, "persistence_granularity", "an IPv6 persistence granularity is a prefix length from 1 to 128"); return null; }
  netmask ??= family === "ipv6" ? "128" : "255.255.255.255";

  // One check for the whole virtual service: the first real's, with the differences reported.
  const withCheck = spec.reals.filter((r) => r.check.at);
  const base = withCheck[0]?.check ?? { at: null, check: { type: "on", service: "none" } as RealCheck["check"] };
  const reals: Real[] = [];
  const seen = new Set<string>();
  for (const r of spec.reals) {
    if ((isIP(r.address) === 6 ? "ipv6" : "ipv4") !== family) { x.error(r.at, "real_server", `${r.address} is not ${family} like its virtual server`); continue; }
    let request: string | null = null;
    let receive: string | null = null;
    if (r.check !== base) {
      const diff = checkDiff(base.check, r.check.check);
      if (!r.check.at && base.at) x.warn(r.at, "real_server", `this real server has no checker (keepalived: always up), but lvsflow runs the ${base.at.text} of line ${base.at.line} on every real server of the virtual service`);
      else if (diff.every((d) => d === "request" || d === "receive")) { request = r.check.check.request ?? null; receive = r.check.check.receive ?? null; }
      else if (diff.length) x.warn(r.check.at ?? r.at, r.check.at?.text ?? "real_server", `lvsflow runs one check per virtual service: the ${base.at?.text ?? "check"} of line ${base.at?.line}; this one differs in ${diff.join(", ")}`);
    }
    const real: Real = {
      address: r.address, port: r.port ?? port, forwarding: r.forwarding ?? spec.forwarding, weight: r.weight,
      request, receive, lowerThreshold: r.lower, upperThreshold: r.upper,
    };
    const id = realId(real);
    if (seen.has(id)) { x.error(r.at, "real_server", `duplicate real server ${id}`); continue; }
    seen.add(id);
    reals.push(real);
  }
  const inhibited = spec.reals.filter((r) => r.inhibit);
  if (!spec.inhibit && inhibited.length && inhibited.length < spec.reals.length) {
    x.warn(inhibited[0].inhibit!, "inhibit_on_failure", "lvsflow quiesces per virtual service: every real server of this one is kept at weight 0 when it fails");
  }
  if (!reals.length) x.warn(s.key, "virtual_server", "virtual server has no real servers; only its sorry server can serve");
  const candidate = {
    id: vsId(protocol, address, port, fwm ? m.fwmark : null),
    protocol, address, port, fwmark: fwm ? m.fwmark : null, family,
    scheduler: spec.scheduler,
    schedFlags: spec.flags.length ? spec.flags.join(",") : null,
    persistence: spec.persistence ? { timeout: spec.persistence.timeout, netmask } : null,
    quiescent: spec.inhibit || inhibited.length > 0,
    onePacket: protocol === "udp" && spec.ops !== null,
    check: {
      request: "/", receive: "", port: null, failureCount: 1,
      interval: spec.timing.delayLoop ?? KA_DEFAULTS.delayLoop, timeout: spec.timing.connectTimeout ?? KA_DEFAULTS.connectTimeout,
      ...base.check,
    },
    fallback: spec.sorry ? { address: spec.sorry.address, port: spec.sorry.port ?? port, forwarding: spec.sorry.forwarding ?? spec.forwarding } : null,
    ...(spec.quorum !== null ? { quorum: spec.quorum } : {}), ...(spec.hysteresis !== null ? { hysteresis: spec.hysteresis } : {}),
    reals,
    source: { file, line: s.key.line },
  };
  if (spec.sorry && (isIP(spec.sorry.address) === 6 ? "ipv6" : "ipv4") !== family) { x.error(spec.sorry.at, "sorry_server", `${spec.sorry.address} is not ${family} like its virtual server`); return null; }
  const r = VirtualService.safeParse(candidate);
  if (!r.success) {
    for (const i of r.error.issues) x.error(s.key, "virtual_server", `${i.path.join(".")}: ${i.message}`);
    return null;
  }
  return r.data;
}

const COMPARED = ["type", "service", "request", "receive", "port", "interval", "timeout", "retry", "delayBeforeRetry", "statusCodes", "virtualhost", "command"] as const;
function checkDiff(a: Partial<Check>, b: Partial<Check>): string[] {
  return COMPARED.filter((k) => JSON.stringify(a[k] ?? null) !== JSON.stringify(b[k] ?? null));
}

/** Where a virtual service's check came from, for load-time capability errors. */
export function checkerWordOf(s: KStmt): Word | null {
  for (const r of s.block ?? []) {
    if (r.key.text !== "real_server") continue;
    for (const c of r.block ?? []) if (CHECKERS.has(c.key.text)) return c.key;
  }
  return null;
}
