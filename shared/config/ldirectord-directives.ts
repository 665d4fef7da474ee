// The directives of ldirectord.cf (reference §1.4): where each is valid and how its value is
// read into the settings of the global section or of one virtual block. Directives lvsflow has no
// use for are accepted with a warning that says what lvsflow does instead.
import type { Collector } from "./diagnostics.ts";
import type { Stmt } from "./ldirectord-grammar.ts";
import { isIP } from "node:net";
import { type Family, type FallbackSpec, type RealSpec, isProblem, optionalQuotes, parseFallback, parseReal, unquote } from "./ldirectord-values.ts";

export type Scope = "G" | "V" | "GV";
export const CHECK_TYPES = ["connect", "negotiate", "ping", "external", "on", "off"] as const;
export const SERVICES = [
  "dns", "ftp", "http", "https", "http_proxy", "imap", "imaps", "ldap", "ldaps", "mysql", "nntp", "none",
  "oracle", "pgsql", "pop", "pops", "radius", "simpletcp", "sip", "smtp", "submission",
] as const;

/** Settings valid globally and per virtual (a per-virtual value overrides the global one). */
export interface CommonSettings {
  checktimeout?: number;
  negotiatetimeout?: number;
  checkinterval?: number;
  failurecount?: number;
  quiescent?: boolean;
  fallback?: FallbackSpec;
  fallback6?: FallbackSpec;
  /** ldirectord's deprecated checkcount: ICMP attempts within one ping check. */
  checkcount?: number;
  /** Where each setting was made, for diagnostics found later. */
  at: Record<string, Stmt>;
}
export interface GlobalSettings extends CommonSettings { autoreload?: boolean; fork?: boolean }
export interface VirtualSettings extends CommonSettings {
  checktype?: (typeof CHECK_TYPES)[number] | "combined";
  combinedConnects?: number;
  service?: (typeof SERVICES)[number];
  checkcommand?: string;
  checkport?: number;
  request?: string;
  receive?: string;
  httpmethod?: "GET" | "HEAD";
  virtualhost?: string;
  scheduler?: string;
  schedflags?: string;
  persistent?: number;
  netmask?: string;
  protocol?: "tcp" | "udp" | "fwm";
  ops?: boolean;
  login?: string;
  passwd?: string;
  database?: string;
  secret?: string;
  reals: { spec: RealSpec; stmt: Stmt }[];
}

export interface Ctx {
  c: Collector;
  /** The block's address family and kind, undefined for the global section. */
  family?: Family;
  isFwm?: boolean;
}
type Target = GlobalSettings & Partial<VirtualSettings>;
type Apply = (s: Stmt, t: Target, x: Ctx) => void;
interface Directive { scope: Scope; apply: Apply }

const err = (x: Ctx, s: Stmt, msg: string, fix?: string, at = 0) => x.c.error(s.line, s.valueCol + at, s.key, msg, fix);

function integer(s: Stmt, x: Ctx, min: number, what: string): number | undefined {
  if (!/^\d+$/.test(s.value) || Number(s.value) < min) {
    err(x, s, `${what} must be a whole number${min > 0 ? ` ≥ ${min}` : ""}, not "${s.value}"`);
    return undefined;
  }
  return Number(s.value);
}

function yesNo(s: Stmt, x: Ctx): boolean | undefined {
  if (s.value !== "yes" && s.value !== "no") {
    err(x, s, `must be "yes" or "no", not "${s.value}"`);
    return undefined;
  }
  // ldirectord compares the raw value: trailing blanks (or a stripped comment) make it fail.
  if (s.ldValue !== s.value && s.ldValue.trimEnd() === s.value) {
    x.c.gotcha(s.line, s.valueCol + s.value.length, s.key, "trailing whitespace after yes/no: ldirectord rejects the value", "remove the trailing blanks");
  }
  return s.value === "yes";
}

/** Values ldirectord only accepts in double quotes (§1.2). */
function quoted(s: Stmt, x: Ctx): string | undefined {
  const q = unquote(s.value);
  if (q !== null) return q;
  if (s.value.startsWith('"')) {
    err(x, s, "unbalanced or extra double quotes", `${s.key} = "…"`);
    return undefined;
  }
  x.c.gotcha(s.line, s.valueCol, s.key, "value must be double-quoted: ldirectord rejects it unquoted", `${s.key} = "${s.key === "passwd" || s.key === "secret" ? "…" : s.value}"`);
  return s.value;
}

const set = <K extends keyof Target>(key: K, read: (s: Stmt, x: Ctx) => Target[K] | undefined): Apply => (s, t, x) => {
  const v = read(s, x);
  if (v !== undefined) { t[key] = v; t.at[key as string] = s; }
};

/** Accepted for compatibility, with a warning saying what lvsflow does instead. */
const ignored = (instead: string, check?: (s: Stmt, x: Ctx) => unknown): Apply => (s, _t, x) => {
  check?.(s, x);
  x.c.warn(s.line, s.col, s.key, `ignored: ${instead}`);
};

const fallbackOf = (six: boolean): Apply => (s, t, x) => {
  const family: Family = six ? "ipv6" : "ipv4";
  if (x.family && x.family !== family) {
    err(x, s, `not allowed in a ${x.family === "ipv4" ? "virtual" : "virtual6"} block`, `use ${six ? "fallback" : "fallback6"}`);
    return;
  }
  const f = parseFallback(s.value, family, s.key);
  if (isProblem(f)) return err(x, s, f.error, f.fix, f.at);
  t[six ? "fallback6" : "fallback"] = f;
  t.at[s.key] = s;
};

const realOf = (six: boolean): Apply => (s, t, x) => {
  const family: Family = six ? "ipv6" : "ipv4";
  if (x.family !== family) return err(x, s, `not allowed in a ${x.family === "ipv6" ? "virtual6" : "virtual"} block`, `use ${six ? "real" : "real6"}`);
  const r = parseReal(s.value, family);
  if (isProblem(r)) return err(x, s, r.error, r.fix, r.at);
  if (r.quotedThresholds) {
    x.c.gotcha(s.line, s.valueCol, s.key, "thresholds must be unquoted (l:N u:N): ldirectord's parser rejects the quoted form its manual shows (§1.9.5)", "drop the quotes around l:N / u:N");
  }
  if (r.lower !== null && r.upper !== null && r.lower >= r.upper) {
    x.c.warn(s.line, s.valueCol, s.key, `lower threshold ${r.lower} is not below upper threshold ${r.upper}`);
  }
  t.reals!.push({ spec: r, stmt: s });
};

const MAIL = "lvsflow publishes real server state changes as events and audits them in Redis; send alerts from those events";

export const DIRECTIVES: Record<string, Directive> = {
  // Global only.
  autoreload: { scope: "G", apply: set("autoreload", yesNo) },
  fork: {
    scope: "G",
    apply: (s, t, x) => {
      const v = yesNo(s, x);
      if (v === undefined) return;
      t.fork = v;
      t.at.fork = s;
      x.c.warn(s.line, s.col, s.key, "lvsflow checks every real server on its own schedule, never serially (as with fork = yes, per real server); the value only decides whether a per-virtual checkinterval is warned about");
    },
  },
  callback: { scope: "G", apply: ignored("lvsflow distributes configuration changes to every node itself (lvsflow config push; every node's services reload it)", quoted) },
  logfile: { scope: "G", apply: ignored("lvsflow logs JSON to stderr; events are audited in Redis", quoted) },
  execute: { scope: "G", apply: ignored("lvsflow does not start other ldirectord instances; pass every configuration file to lvsflow") },
  supervised: { scope: "G", apply: ignored("lvsflow services always run in the foreground under a supervisor and log to stderr", (s, x) => s.hasEq && yesNo(s, x)) },
  readdquiescent: { scope: "G", apply: ignored("lvsflow reconciles the kernel table to the desired state; a quiesced real server is kept at weight 0", yesNo) },
  maintenancedir: { scope: "G", apply: ignored("lvsflow takes real servers out of service through its control plane, not through marker files: lvsflow maintenance REAL on|off (or drain)") },
  emailalertfrom: { scope: "G", apply: ignored(MAIL) },
  // Global with per-virtual override.
  checktimeout: { scope: "GV", apply: set("checktimeout", (s, x) => integer(s, x, 1, "checktimeout")) },
  negotiatetimeout: { scope: "GV", apply: set("negotiatetimeout", (s, x) => integer(s, x, 1, "negotiatetimeout")) },
  checkinterval: { scope: "GV", apply: set("checkinterval", (s, x) => integer(s, x, 1, "checkinterval")) },
  failurecount: { scope: "GV", apply: set("failurecount", (s, x) => integer(s, x, 1, "failurecount")) },
  quiescent: { scope: "GV", apply: set("quiescent", yesNo) },
  fallback: { scope: "GV", apply: fallbackOf(false) },
  fallback6: { scope: "GV", apply: fallbackOf(true) },
  checkcount: {
    scope: "GV",
    apply: (s, t, x) => {
      const n = integer(s, x, 1, "checkcount");
      if (n === undefined) return;
      x.c.warn(s.line, s.col, s.key, "deprecated in ldirectord; only ping checks use it: lvsflow sends up to this many pings per check (check.retry)", "failurecount = N counts failed checks instead");
      t.checkcount = n;
      t.at.checkcount = s;
    },
  },
  fallbackcommand: { scope: "GV", apply: ignored("lvsflow runs no shell commands; it installs the fallback server and publishes an event when no real server is up") },
  emailalert: { scope: "GV", apply: ignored(MAIL) },
  emailalertfreq: { scope: "GV", apply: ignored(MAIL, (s, x) => integer(s, x, 0, "emailalertfreq")) },
  emailalertstatus: { scope: "GV", apply: ignored(MAIL) },
  smtp: { scope: "GV", apply: ignored(MAIL) },
  cleanstop: { scope: "GV", apply: ignored("the lvsflow executor owns the kernel table; stopping the control plane does not flush it", yesNo) },
  timeout: { scope: "GV", apply: (s, _t, x) => x.c.error(s.line, s.col, s.key, "deprecated in favour of checktimeout and negotiatetimeout (ldirectord refuses it too)", "checktimeout = N and/or negotiatetimeout = N") },
  connecttimeout: { scope: "GV", apply: (s, _t, x) => x.c.error(s.line, s.col, s.key, "deprecated in favour of negotiatetimeout (ldirectord refuses it too)", "negotiatetimeout = N") },
  // Virtual only.
  real: { scope: "V", apply: realOf(false) },
  real6: { scope: "V", apply: realOf(true) },
  checktype: {
    scope: "V",
    apply: (s, t, x) => {
      if (/^\d+$/.test(s.value)) {
        t.checktype = "combined";
        t.combinedConnects = Number(s.value);
      } else if (s.value === "external-perl") {
        return err(x, s, "external-perl runs Perl inside ldirectord's process; lvsflow cannot do that", "checktype = external, with the same checkcommand run as a process (args: vip vport rip rport)");
      } else if ((CHECK_TYPES as readonly string[]).includes(s.value)) {
        t.checktype = s.value as (typeof CHECK_TYPES)[number];
      } else {
        return err(x, s, `must be connect, negotiate, ping, external, on, off or a number, not "${s.value}"`);
      }
      t.at.checktype = s;
    },
  },
  service: {
    scope: "V",
    apply: set("service", (s, x) => ((SERVICES as readonly string[]).includes(s.value) ? (s.value as VirtualSettings["service"]) : void err(x, s, `unknown service "${s.value}"`, `one of ${SERVICES.join(", ")}`))),
  },
  checkcommand: { scope: "V", apply: set("checkcommand", (s, x) => optionalQuotes(s.value) || void err(x, s, "missing command")) },
  checkport: {
    scope: "V",
    apply: set("checkport", (s, x) => {
      const n = integer(s, x, 1, "checkport");
      return n !== undefined && n > 65535 ? void err(x, s, "must be a port from 1 to 65535") : n;
    }),
  },
  request: {
    scope: "V",
    apply: set("request", (s, x) => {
      const q = quoted(s, x);
      if (q === "") return void err(x, s, "empty request", 'request = "/"');
      return q === undefined ? q : withSlash(q);
    }),
  },
  receive: {
    scope: "V",
    apply: set("receive", (s, x) => {
      const q = quoted(s, x);
      if (q === "") x.c.gotcha(s.line, s.valueCol, s.key, "ldirectord rejects an empty receive string", "leave receive out: any successful response counts");
      return q;
    }),
  },
  httpmethod: {
    scope: "V",
    apply: set("httpmethod", (s, x) => {
      const m = s.value.toUpperCase();
      return m === "GET" || m === "HEAD" ? m : void err(x, s, `must be GET or HEAD, not "${s.value}"`);
    }),
  },
  virtualhost: { scope: "V", apply: set("virtualhost", (s, x) => optionalQuotes(s.value) || void err(x, s, "missing host name")) },
  scheduler: {
    scope: "V",
    apply: set("scheduler", (s, x) => (/^[a-z]+$/.test(s.value) ? s.value : void err(x, s, `must be a lowercase scheduler name such as wlc, rr or wrr, not "${s.value}"`))),
  },
  schedflags: { scope: "V", apply: set("schedflags", (s, x) => s.value || void err(x, s, "missing scheduler flags")) },
  persistent: { scope: "V", apply: set("persistent", (s, x) => integer(s, x, 1, "persistent")) },
  netmask: {
    scope: "V",
    apply: set("netmask", (s, x) => {
      if (x.family === "ipv6") {
        const n = /^\d+$/.test(s.value) ? Number(s.value) : 0;
        return n >= 1 && n <= 128 ? s.value : void err(x, s, "an IPv6 persistence netmask is a prefix length from 1 to 128");
      }
      return isIP(s.value) === 4 ? s.value : void err(x, s, `must be a dotted quad such as 255.255.255.0, not "${s.value}"`);
    }),
  },
  protocol: {
    scope: "V",
    apply: set("protocol", (s, x) => {
      if (x.isFwm) return s.value === "fwm" ? "fwm" : void err(x, s, "must be fwm for a firewall-mark virtual service");
      return s.value === "tcp" || s.value === "udp" ? s.value : void err(x, s, `must be tcp or udp for an address:port virtual service, not "${s.value}"`);
    }),
  },
  ops: { scope: "V", apply: set("ops", yesNo) },
  login: { scope: "V", apply: set("login", quoted) },
  passwd: { scope: "V", apply: set("passwd", quoted) },
  database: { scope: "V", apply: set("database", quoted) },
  secret: { scope: "V", apply: set("secret", quoted) },
  monitorfile: { scope: "V", apply: ignored("every check result and state change is recorded as an event in the Redis audit history") },
  servicename: { scope: "V", apply: ignored("only used in ldirectord's alert e-mails") },
  comment: { scope: "V", apply: ignored("only used in ldirectord's alert e-mails") },
  load: { scope: "V", apply: ignored("ldirectord parses it but never uses it", quoted) },
};

/** ldirectord adds a leading '/' to a request, unless it is a full URL (`http://…`, §1.3). */
export function withSlash(q: string): string {
  return q.startsWith("/") || /^[a-z_]+:\/\//i.test(q) ? q : "/" + q;
}

/** Closest known directive, for "did you mean" hints on typos. */
export function suggest(key: string): string | undefined {
  const all = [...Object.keys(DIRECTIVES), "virtual", "virtual6"];
  const lower = key.toLowerCase();
  if (all.includes(lower)) return lower;
  let best: [string, number] | undefined;
  for (const k of all) {
    const d = distance(lower, k);
    if (d <= 2 && (!best || d < best[1])) best = [k, d];
  }
  return best?.[0];
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}
