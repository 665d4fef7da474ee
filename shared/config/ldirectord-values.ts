// Value syntax of ldirectord.cf: virtual addresses, real= lines, fallbacks, ports and quoting.
// Each parser returns either a value or a problem with the offset (0-based, within the value)
// of the offending token, so the caller can report the exact column.
import { isIP } from "node:net";

export type Family = "ipv4" | "ipv6";
export type Fwd = "masq" | "gate" | "ipip";
export interface Problem { error: string; at: number; fix?: string }
export const isProblem = (x: unknown): x is Problem => typeof x === "object" && x !== null && "error" in x;

/** The subset of /etc/services that ldirectord users write instead of port numbers. */
const SERVICE_PORTS: Record<string, number> = {
  ftp: 21, ssh: 22, telnet: 23, smtp: 25, domain: 53, http: 80, www: 80, pop3: 110, nntp: 119, imap: 143,
  imap2: 143, snmp: 161, ldap: 389, https: 443, submission: 587, ldaps: 636, imaps: 993, pop3s: 995,
  radius: 1812, squid: 3128, mysql: 3306, sip: 5060, postgresql: 5432, "http-alt": 8080,
};

/** ldirectord's ld_port_to_service: the check protocol guessed from the virtual port (§1.6). */
const PORT_SERVICES: Record<number, string> = {
  21: "ftp", 25: "smtp", 53: "dns", 80: "http", 110: "pop", 119: "nntp", 143: "imap", 389: "ldap", 443: "https",
  587: "submission", 636: "ldaps", 993: "imaps", 995: "pops", 1521: "oracle", 1812: "radius", 3128: "http_proxy",
  3306: "mysql", 5060: "sip", 5432: "pgsql",
};
export function serviceForPort(port: number): string {
  return PORT_SERVICES[port] ?? "none";
}

export function parsePort(tok: string, at: number): number | Problem {
  if (/^\d+$/.test(tok)) {
    const n = Number(tok);
    return n <= 65535 ? n : { error: `port ${tok} is out of range (0-65535)`, at };
  }
  const n = SERVICE_PORTS[tok];
  if (n !== undefined) return n;
  return { error: `unknown service name "${tok}"`, at, fix: "write the port number" };
}

function hostnameProblem(tok: string, at: number): Problem {
  return /^\d+(\.\d+){3}$/.test(tok)
    ? { error: `${tok} is not a valid IPv4 address`, at }
    : { error: `"${tok}" is not an IP address; lvsflow does not resolve host names in the configuration`, at, fix: "write the IP address" };
}

export type VirtualAddress =
  | { kind: "addr"; address: string; port: number; portToken: string; family: Family }
  | { kind: "fwm"; fwmark: number; family: Family };

/** `virtual=A.B.C.D:port`, `virtual=<mark>`, `virtual6=[v6]:port` (§1.2). */
export function parseVirtualAddress(value: string, family: Family): VirtualAddress | Problem {
  const v = value.trim();
  if (v === "") return { error: "missing address", at: 0, fix: family === "ipv4" ? "virtual = 192.0.2.10:80" : "virtual6 = [2001:db8::10]:80" };
  if (/^\d+$/.test(v)) {
    const fwmark = Number(v);
    if (fwmark < 1 || fwmark > 0xffffffff) return { error: "a firewall mark must be an integer from 1 to 4294967295", at: 0 };
    return { kind: "fwm", fwmark, family };
  }
  const sp = v.search(/\s/);
  if (sp >= 0) return { error: `unexpected text after the address: "${v.slice(sp).trim()}"`, at: v.slice(sp).search(/\S/) + sp };
  const b = /^\[([^\]]*)\](?::(.*))?$/.exec(v);
  if (b) {
    if (family === "ipv4") return { error: "an IPv6 address is not allowed under virtual=", at: 0, fix: `virtual6 = ${v}` };
    if (isIP(b[1]) !== 6) return { error: `${b[1]} is not a valid IPv6 address`, at: 1 };
    if (b[2] === undefined || b[2] === "") return { error: "missing port", at: v.length, fix: `virtual6 = [${b[1]}]:80` };
    const port = parsePort(b[2], b[1].length + 3);
    return isProblem(port) ? port : { kind: "addr", address: b[1], port, portToken: b[2], family };
  }
  if (isIP(v) === 6 || (v.match(/:/g)?.length ?? 0) > 1) {
    return family === "ipv4"
      ? { error: "an IPv6 address is not allowed under virtual=", at: 0, fix: "virtual6 = [2001:db8::10]:80" }
      : { error: "IPv6 virtual addresses must be written in brackets", at: 0, fix: "virtual6 = [2001:db8::10]:80" };
  }
  const c = /^([^:]+):(.*)$/.exec(v);
  if (!c) return { error: "missing port", at: v.length, fix: `virtual = ${v}:80` };
  if (family === "ipv6") return { error: "virtual6= needs an IPv6 address in brackets", at: 0, fix: "virtual6 = [2001:db8::10]:80" };
  if (isIP(c[1]) !== 4) return hostnameProblem(c[1], 0);
  if (c[2] === "") return { error: "missing port", at: v.length };
  const port = parsePort(c[2], c[1].length + 1);
  return isProblem(port) ? port : { kind: "addr", address: c[1], port, portToken: c[2], family };
}

/** One address of a real or fallback: IPv4 for ipv4 blocks, `[v6]` for ipv6 blocks. */
function parseHost(tok: string, at: number, family: Family, what: string): string | Problem {
  const b = /^\[([^\]]*)\]$/.exec(tok);
  if (b) {
    if (family === "ipv4") return { error: `an IPv6 address is not allowed in ${what}`, at, fix: `use ${what}6 inside a virtual6 block` };
    return isIP(b[1]) === 6 ? b[1] : { error: `${b[1]} is not a valid IPv6 address`, at: at + 1 };
  }
  if (family === "ipv6") {
    return isIP(tok) === 4
      ? { error: `an IPv4 address is not allowed in ${what}6`, at, fix: `use ${what} inside a virtual block` }
      : { error: "IPv6 addresses must be written in brackets", at, fix: "[2001:db8::20]:80" };
  }
  return isIP(tok) === 4 ? tok : hostnameProblem(tok, at);
}

const ipToInt = (a: string) => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const intToIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
/** Ranges are expanded at parse time; this keeps a typo from creating millions of reals. */
export const MAX_RANGE = 1024;

export interface RealSpec {
  addresses: string[];
  port: number | null;
  forwarding: Fwd;
  weight: number;
  request: string | null;
  receive: string | null;
  lower: number | null;
  upper: number | null;
  /** The POD's quoted `"l:N"` form was used (ldirectord's parser rejects it). */
  quotedThresholds: boolean;
}

/** `real=A[->B][:port] gate|masq|ipip [weight] ["request", "receive"] [l:N] [u:N]` (§1.3). */
export function parseReal(value: string, family: Family): RealSpec | Problem {
  const m = /^(\S+)(\s*)(.*)$/.exec(value);
  if (!m || m[1] === "") return { error: "missing real server address", at: 0, fix: "real = 192.0.2.21:80 masq" };
  const target = m[1];
  const a = /^(\[[^\]]*\]|[^\[\]:\s]+?)(?:->(\[[^\]]*\]|[^\[\]:\s]+?))?(?::([A-Za-z0-9_-]*))?$/.exec(target);
  if (!a) return { error: `cannot read "${target}" as address[->address][:port]`, at: 0, fix: "real = 192.0.2.21:80 masq" };
  const first = parseHost(a[1], 0, family, "real");
  if (isProblem(first)) return first;
  let addresses = [first];
  if (a[2] !== undefined) {
    const lastAt = a[1].length + 2;
    if (family === "ipv6") return { error: "address ranges are not supported for IPv6 real servers", at: lastAt };
    const last = parseHost(a[2], lastAt, family, "real");
    if (isProblem(last)) return last;
    const [i, j] = [ipToInt(first), ipToInt(last)];
    if (i > j) return { error: `range ${first}->${last} runs backwards`, at: 0, fix: `${last}->${first}` };
    if (j - i + 1 > MAX_RANGE) return { error: `range ${first}->${last} has ${j - i + 1} addresses (max ${MAX_RANGE})`, at: 0 };
    addresses = Array.from({ length: j - i + 1 }, (_, k) => intToIp(i + k));
  }
  let port: number | null = null;
  if (a[3] !== undefined) {
    const at = target.lastIndexOf(":") + 1;
    if (a[3] === "") return { error: "missing port after ':'", at };
    const p = parsePort(a[3], at);
    if (isProblem(p)) return p;
    port = p;
  }
  let rest = m[3];
  let off = target.length + m[2].length;
  const fm = /^(\w+)/.exec(rest);
  if (!fm) return { error: "missing forwarding method (gate, masq or ipip)", at: off, fix: `real = ${target} masq` };
  if (fm[1] !== "gate" && fm[1] !== "masq" && fm[1] !== "ipip") {
    return { error: `forwarding method must be gate, masq or ipip, not "${fm[1]}"`, at: off };
  }
  const spec: RealSpec = { addresses, port, forwarding: fm[1], weight: 1, request: null, receive: null, lower: null, upper: null, quotedThresholds: false };
  const eat = (re: RegExp): RegExpExecArray | null => {
    const r = re.exec(rest);
    if (r) { rest = rest.slice(r[0].length); off += r[0].length; }
    return r;
  };
  eat(/^\w+/);
  const w = eat(/^\s+(\d+)(?=\s|$)/);
  if (w) {
    spec.weight = Number(w[1]);
    if (spec.weight > 65535) return { error: `weight ${w[1]} is out of range (0-65535)`, at: off - w[1].length };
  }
  const rr = /^\s+"([^"]*)"(?:,\s*|\s+)"([^"]*)"/.exec(rest);
  if (rr && !(/^[lu]:\d+$/.test(rr[1]) && /^[lu]:\d+$/.test(rr[2]))) {
    eat(/^\s+"([^"]*)"(?:,\s*|\s+)"([^"]*)"/);
    spec.request = rr[1].startsWith("/") || /^[a-z_]+:\/\//i.test(rr[1]) ? rr[1] : "/" + rr[1];
    spec.receive = rr[2];
  }
  for (;;) {
    const t = eat(/^\s+("?)([lu]):(\d+)\1(?=\s|$)/);
    if (!t) break;
    if (t[1]) spec.quotedThresholds = true;
    const key = t[2] === "l" ? "lower" : "upper";
    if (spec[key] !== null) return { error: `${t[2]}: threshold given twice`, at: off - t[0].trimStart().length };
    spec[key] = Number(t[3]);
  }
  if (rest.trim() !== "") {
    const at = off + rest.search(/\S/);
    return { error: `unexpected "${rest.trim()}"`, at, fix: 'real = ADDR[:PORT] gate|masq|ipip [WEIGHT] ["request", "receive"] [l:N] [u:N]' };
  }
  return spec;
}

export interface FallbackSpec { address: string; port: number | null; forwarding: Fwd }

/** `fallback=ADDR[:port] [gate|masq|ipip]`; the forwarding method defaults to gate (§1.3). */
export function parseFallback(value: string, family: Family, what = "fallback"): FallbackSpec | Problem {
  const m = /^(\S+)(?:(\s+)(\S+))?$/.exec(value.trim());
  if (!m) {
    return value.trim() === ""
      ? { error: "missing fallback server", at: 0, fix: `${what} = 127.0.0.1:80 gate` }
      : { error: "expected ADDR[:PORT] [gate|masq|ipip]", at: 0, fix: `${what} = 127.0.0.1:80 gate` };
  }
  const h = /^(\[[^\]]*\]|[^:\[\]]+)(?::(.*))?$/.exec(m[1]);
  if (!h) return { error: `cannot read "${m[1]}" as address[:port]`, at: 0 };
  const address = parseHost(h[1], 0, family, "fallback");
  if (isProblem(address)) return address;
  let port: number | null = null;
  if (h[2] !== undefined) {
    const p = parsePort(h[2], h[1].length + 1);
    if (isProblem(p)) return p;
    port = p;
  }
  let forwarding: Fwd = "gate";
  if (m[3] !== undefined) {
    if (m[3] !== "gate" && m[3] !== "masq" && m[3] !== "ipip") {
      return { error: `forwarding method must be gate, masq or ipip, not "${m[3]}"`, at: m[1].length + m[2].length };
    }
    forwarding = m[3];
  }
  return { address, port, forwarding };
}

/** The inside of `"…"`, or null when the value is not one double-quoted string. */
export function unquote(value: string): string | null {
  const m = /^"([^"]*)"$/.exec(value);
  return m ? m[1] : null;
}

/** Strips one pair of surrounding quotes, for directives where ldirectord makes them optional. */
export function optionalQuotes(value: string): string {
  const m = /^"(.*)"$/.exec(value);
  return m ? m[1] : value;
}
