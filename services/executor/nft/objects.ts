// knftables-style typed nftables objects and a Transaction that renders to ONE `nft -f -` script
// (one script = one atomic kernel transaction). Every name and comment is checked here, so no
// caller can smuggle a second statement into the script.

export const FAMILY = "ip";
export const TABLE = "lvsflow";

export interface Table { kind: "table" }
export interface Chain {
  kind: "chain";
  name: string;
  comment?: string;
  /** Base chains only. nft 1.0.6 rejects `priority dstnat` on the output hook, hence a free string. */
  base?: { type: "nat"; hook: "prerouting" | "output" | "postrouting"; priority: string };
}
export interface NftSet {
  kind: "set";
  name: string;
  type: "ipv4_addr";
  flags: ("dynamic" | "timeout")[];
  timeoutS: number;
  comment?: string;
}
export interface Rule { kind: "rule"; chain: string; expr: string; comment?: string }
export type NftObject = Table | Chain | NftSet | Rule;

const NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
// Forbidden in rule text: newline and ';' (statement separators), '#' (starts a comment), '"' (quoting).
// Long enough for a Maglev vmap (1021 slots as ranges) in one rule.
const EXPR_RE = /^[^\n\r;#"\\\x00]{1,100000}$/;
const COMMENT_RE = /^[^\n\r"\\\x00-\x1f]*$/;

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) throw new Error(`invalid nft object name: ${JSON.stringify(name)}`);
  return name;
}

export function checkComment(c: string): string {
  // The kernel stores comments as userdata; nft caps them at 128 bytes.
  if (!COMMENT_RE.test(c) || Buffer.byteLength(c) > 128) throw new Error(`invalid nft comment: ${JSON.stringify(c)}`);
  return c;
}

const T = `${FAMILY} ${TABLE}`;
const commentClause = (c?: string) => (c === undefined ? "" : ` comment "${checkComment(c)}"`);

function renderAdd(o: NftObject): string {
  switch (o.kind) {
    case "table":
      return `add table ${T}`;
    case "chain": {
      const name = checkName(o.name);
      if (o.base) {
        if (!/^(dstnat|srcnat|-?\d{1,4})$/.test(o.base.priority)) throw new Error(`invalid chain priority ${o.base.priority}`);
        return `add chain ${T} ${name} { type ${o.base.type} hook ${o.base.hook} priority ${o.base.priority}; policy accept; }`;
      }
      return o.comment === undefined ? `add chain ${T} ${name}` : `add chain ${T} ${name} { comment "${checkComment(o.comment)}"; }`;
    }
    case "set": {
      if (!Number.isInteger(o.timeoutS) || o.timeoutS <= 0) throw new Error(`invalid set timeout ${o.timeoutS}`);
      const c = o.comment === undefined ? "" : ` comment "${checkComment(o.comment)}";`;
      return `add set ${T} ${checkName(o.name)} { type ${o.type}; flags ${o.flags.join(",")}; timeout ${o.timeoutS}s;${c} }`;
    }
    case "rule":
      if (!EXPR_RE.test(o.expr)) throw new Error(`invalid rule expression: ${JSON.stringify(o.expr)}`);
      return `add rule ${T} ${checkName(o.chain)} ${o.expr}${commentClause(o.comment)}`;
  }
}

/** An ordered list of operations; render() gives the script for `nft -f -`. */
export class Transaction {
  private readonly lines: string[] = [];

  add(o: NftObject): this { this.lines.push(renderAdd(o)); return this; }
  flush(c: Chain | string): this { this.lines.push(`flush chain ${T} ${checkName(typeof c === "string" ? c : c.name)}`); return this; }
  delete(o: Chain | NftSet): this { this.lines.push(`delete ${o.kind} ${T} ${checkName(o.name)}`); return this; }
  deleteChain(name: string): this { this.lines.push(`delete chain ${T} ${checkName(name)}`); return this; }
  deleteSet(name: string): this { this.lines.push(`delete set ${T} ${checkName(name)}`); return this; }

  get ops(): string[] { return [...this.lines]; }
  get size(): number { return this.lines.length; }
  render(): string { return this.lines.length ? this.lines.join("\n") + "\n" : ""; }
}
