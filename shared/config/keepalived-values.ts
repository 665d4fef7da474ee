// Reading the words of keepalived.conf statements: numbers, addresses, names, and the two ways a
// statement lvsflow does not use is reported (no equivalent → warning; unknown keyword → warning,
// or an error with --strict). Every report names the statement's line and column.
import { isIP } from "node:net";
import { shownKey, type Collector } from "./diagnostics.ts";
import type { KStmt, Word } from "./keepalived-grammar.ts";

export class KCtx {
  constructor(readonly c: Collector) {}

  error(w: Word, key: string | null, msg: string, fix?: string): void { this.c.error(w.line, w.col, key, msg, fix); }
  warn(w: Word, key: string | null, msg: string, fix?: string): void { this.c.warn(w.line, w.col, key, msg, fix); }

  /** A statement lvsflow has no equivalent for: reported on its own line, then ignored. */
  ignored(s: KStmt, instead?: string): void {
    const inner = s.block ? ` (with its ${count(s.block)} line${count(s.block) === 1 ? "" : "s"})` : "";
    this.c.warn(s.key.line, s.key.col, shownKey(s.key.text), `no lvsflow equivalent, ignored${inner}${instead ? `: ${instead}` : ""}`);
  }

  /** A keyword keepalived does not have in this place (a typo, or a newer keepalived). */
  unknown(s: KStmt, where: string): void {
    this.c.gotcha(s.key.line, s.key.col, shownKey(s.key.text), `unknown keyword in ${where}, ignored`);
  }

  /** The n-th argument, or an error naming what is missing. */
  arg(s: KStmt, n: number, what: string): Word | undefined {
    const w = s.args[n];
    if (!w) this.c.error(s.key.line, s.key.col + s.key.text.length, s.key.text, `missing ${what}`);
    return w;
  }

  /** Numbers as keepalived reads them; timers may have decimals. */
  number(s: KStmt, what: string, o: { min?: number; max?: number; int?: boolean } = {}): number | undefined {
    const w = this.arg(s, 0, what);
    if (!w) return undefined;
    const ok = o.int ? /^\d+$/.test(w.text) : /^\d+(\.\d+)?$/.test(w.text);
    const n = Number(w.text);
    if (!ok || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
      const range = o.min !== undefined && o.max !== undefined ? ` from ${o.min} to ${o.max}` : o.min !== undefined ? ` ≥ ${o.min}` : "";
      this.error(w, s.key.text, `${what} must be a ${o.int ? "whole " : ""}number${range}, not "${w.text}"`);
      return undefined;
    }
    return n;
  }

  /** Extra words after what a keyword takes. */
  noMore(s: KStmt, n: number): void {
    const w = s.args[n];
    if (w) this.error(w, s.key.text, `unexpected "${s.args.slice(n).map((a) => a.text).join(" ")}"`);
  }
}

/** Statements in a block, nested ones too (iterative: a hostile file may nest thousands deep). */
function count(b: KStmt[]): number {
  let n = 0;
  const todo = [b];
  while (todo.length) for (const s of todo.pop()!) { n++; if (s.block) todo.push(s.block); }
  return n;
}

/** keepalived writes a block's keywords one per line, but `url { path / status_code 200 }` puts
 *  several on one: split a statement at every later word that is itself a keyword of the block. */
export function splitStatements(list: KStmt[], keywords: ReadonlySet<string>): KStmt[] {
  const out: KStmt[] = [];
  for (const s of list) {
    if (s.block) { out.push(s); continue; }
    let cur: KStmt = { key: s.key, args: [], block: null };
    for (const w of s.args) {
      if (!w.quoted && keywords.has(w.text)) { out.push(cur); cur = { key: w, args: [], block: null }; }
      else cur.args.push(w);
    }
    out.push(cur);
  }
  return out;
}

export type Fwd = "masq" | "gate" | "ipip";
/** keepalived's NAT / DR / TUN. */
export function forwardingOf(x: KCtx, s: KStmt): Fwd | undefined {
  const w = x.arg(s, 0, "forwarding method (NAT, DR or TUN)");
  if (!w) return undefined;
  const f = ({ NAT: "masq", DR: "gate", TUN: "ipip" } as const)[w.text.toUpperCase() as "NAT" | "DR" | "TUN"];
  if (!f) { x.error(w, s.key.text, `forwarding method must be NAT, DR or TUN, not "${w.text}"`); return undefined; }
  if (s.args.length > 1) x.warn(s.args[1], s.key.text, `"${s.args.slice(1).map((a) => a.text).join(" ")}": lvsflow has no tunnel type or checksum options; plain ${w.text.toUpperCase()} is used`);
  return f;
}

/** An IP address word (IPv4 or IPv6, no brackets). */
export function ipOf(x: KCtx, s: KStmt, w: Word | undefined, what: string): string | undefined {
  if (!w) return undefined;
  if (isIP(w.text) === 0) {
    x.error(w, s.key.text, /^[\w.-]+$/.test(w.text) && !/^\d+(\.\d+){3}$/.test(w.text)
      ? `"${w.text}" is not an IP address; lvsflow does not resolve host names in the configuration`
      : `${w.text} is not a valid ${what}`, "write the IP address");
    return undefined;
  }
  return w.text;
}

export function portOf(x: KCtx, s: KStmt, w: Word | undefined): number | undefined {
  if (!w) return undefined;
  if (!/^\d+$/.test(w.text) || Number(w.text) > 65535) { x.error(w, s.key.text, `port must be a number from 0 to 65535, not "${w.text}"`); return undefined; }
  return Number(w.text);
}

/** keepalived names (VI_1, LVS_DEVEL) as lvsflow names: lowercase, digits, - and _. */
export function lvsflowName(name: string, taken: Set<string>): string {
  let base = name.toLowerCase().replace(/[^a-z0-9_-]/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 56) || "group";
  if (!/^[a-z0-9]/.test(base)) base = `g${base}`;
  let n = base;
  for (let k = 2; taken.has(n); k++) n = `${base}-${k}`;
  taken.add(n);
  return n;
}
