// Line grammar of ldirectord.cf (reference §1.2): which lines are global directives and which
// belong to a virtual block.
//
// strict: exactly ldirectord's read_config. Globals start in column 1; a virtual block is the
//   lines after `virtual=` indented by ≥4 spaces or a tab; the first other line (a blank line
//   too) ends it and is read as a global line; `#` cuts a virtual line, even inside quotes;
//   global lines keep trailing comments.
// lenient (default): also reads files whose indentation was lost (the seed): an unindented
//   per-virtual directive after a `virtual=` line belongs to that block, with a warning naming
//   the line. Trailing comments are stripped (with a warning on global lines).
import { shownKey, type Collector } from "./diagnostics.ts";
import { DIRECTIVES } from "./ldirectord-directives.ts";

export interface Stmt {
  line: number;
  /** Column of the directive name. */
  col: number;
  key: string;
  hasEq: boolean;
  /** The value as lvsflow reads it: comment removed, trimmed. */
  value: string;
  valueCol: number;
  /** The value exactly as ldirectord would capture it (for its exact "yes"/"no" comparisons). */
  ldValue: string;
  indented: boolean;
}
export interface Block { header: Stmt; stmts: Stmt[] }
export interface Layout { globals: Stmt[]; blocks: Block[] }

const KEY = /^([A-Za-z][A-Za-z0-9_-]*)/;
const INDENT_FIX = "indent it by 4 spaces (or a tab) under its virtual= line";

/** Index of a trailing comment: a `#` outside double quotes at the start or after a blank. */
function commentAt(s: string): number {
  let q = false;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '"') q = !q;
    else if (s[i] === "#" && !q && (i === 0 || /\s/.test(s[i - 1]))) return i;
  }
  return -1;
}

export function layoutLdirectord(text: string, c: Collector): Layout {
  const globals: Stmt[] = [];
  const blocks: Block[] = [];
  let open: Block | null = null; // the block lines are currently added to
  let last: Block | null = null; // lenient: the block a stray per-virtual line may still join
  let style: "indented" | "flat" | null = null;
  let crlf = false;
  let blank = false; // a blank line since the last virtual= line
  const lines = text.split("\n");

  for (let i = 0; i < lines.length; i++) {
    const no = i + 1;
    let raw = lines[i];
    if (raw.endsWith("\r")) {
      raw = raw.slice(0, -1);
      if (!crlf) c.gotcha(no, raw.length + 1, null, "CRLF line endings: ldirectord keeps the \\r in every value, which breaks yes/no and logfile", "convert the file to LF line endings (dos2unix)");
      crlf = true;
    }
    if (/^\s*$/.test(raw)) {
      blank = true;
      if (open) last = open;
      open = null; // a blank line ends a virtual block (ldirectord)
      continue;
    }
    if (/^\s*#/.test(raw)) continue;
    const ws = /^[ \t]*/.exec(raw)![0];
    const indented = ws.length > 0;
    const width = [...ws].reduce((w, ch) => w + (ch === "\t" ? 4 : 1), 0);
    const km = KEY.exec(raw.slice(ws.length));
    const key = km?.[1] ?? "";
    const scope = DIRECTIVES[key]?.scope;
    const col = ws.length + 1;

    if ((key === "virtual" || key === "virtual6") && /^\s*=/.test(raw.slice(ws.length + key.length))) {
      if (indented) c.gotcha(no, 1, key, "must start in column 1 (ldirectord: Unknown command)", "remove the indentation");
      const header = statement(raw, ws.length, no, false, c);
      if (header) {
        open = last = { header, stmts: [] };
        blank = false;
        blocks.push(open);
        style = null;
      } else open = last = null;
      continue;
    }

    // Decide whether the line is part of a virtual block (a "virtual line") or global.
    let into: Block | null = null;
    if (c.strict) {
      if (open && width >= 4) into = open;
      else {
        if (last && !blank && !indented && scope === "GV") {
          c.warn(no, col, key, `read as a global directive: it is not indented under the virtual= line ${last.header.line}`, INDENT_FIX);
        }
        open = null;
        if (indented) {
          c.error(no, col, key || null, last && scope !== "G"
            ? "indented line outside a virtual block: a blank line or an unindented line ended the block above (ldirectord: Unknown command)"
            : "global directives must start in column 1 (ldirectord: Unknown command)", last && scope !== "G" ? "remove blank lines inside the virtual block" : "remove the indentation");
          continue;
        }
        if (scope === "V" && last) {
          c.error(no, col, key, `not indented: ldirectord ends the virtual block of line ${last.header.line} here and rejects "${key}" as a global directive (Unknown command)`, INDENT_FIX);
          continue;
        }
      }
    } else if (open) {
      if (indented) {
        into = open;
        style ??= "indented";
        if (width < 4) c.warn(no, col, key || null, "indented by fewer than 4 spaces: ldirectord would end the virtual block here", "indent by 4 spaces or a tab");
      } else if (scope === "G") {
        open = null;
      } else if (scope === "V" || scope === undefined || style !== "indented") {
        into = open;
        style ??= "flat";
        if (scope) c.warn(no, col, key, `not indented: read as part of the virtual service at line ${open.header.line} (ldirectord requires 4 spaces or a tab)`, INDENT_FIX);
      } else {
        open = null; // a global/per-virtual directive after an indented block is global, as in ldirectord
      }
    } else if (last && scope && scope !== "G" && (indented || scope === "V")) {
      into = open = last;
      c.warn(no, col, key, `read as part of the virtual service at line ${last.header.line}, but ldirectord ends a virtual block at a blank line or an unindented line`, `remove the blank line${indented ? "" : " and " + INDENT_FIX}`);
    } else if (indented) {
      c.warn(no, col, key || null, "global directives must start in column 1 (ldirectord: Unknown command)", "remove the indentation");
    }
    if (!into && scope !== "V") last = null;

    const s = statement(raw, ws.length, no, into !== null, c);
    if (s) (into ? into.stmts : globals).push(s);
  }
  return { globals, blocks };
}

/** Splits `key = value`, applying the comment rules of a virtual or a global line. */
function statement(raw: string, indent: number, no: number, virtualLine: boolean, c: Collector): Stmt | null {
  const content = raw.slice(indent);
  const m = /^([A-Za-z][A-Za-z0-9_-]*)(\s*)(=?)(\s*)/.exec(content);
  const col = indent + 1;
  if (!m) {
    // The line is not echoed: a mangled line may carry a password.
    c.error(no, col, null, "cannot read this line as directive = value");
    return null;
  }
  const key = m[1];
  const start = indent + m[0].length;
  const rest = raw.slice(start);
  const hashAt = rest.indexOf("#");
  // ldirectord matches the address at the start of a virtual= value and ignores what follows.
  const header = !virtualLine && (key === "virtual" || key === "virtual6");
  // What ldirectord captures: virtual lines are cut at any '#', global lines are taken whole.
  const ldValue = virtualLine && hashAt >= 0 ? rest.slice(0, hashAt) : rest;
  let value: string;
  if (c.strict) {
    value = ldValue.trimEnd();
    const cm = virtualLine ? -1 : commentAt(rest);
    if (cm >= 0 && header) value = rest.slice(0, cm).trimEnd();
    else if (cm >= 0) {
      c.error(no, start + cm + 1, key, "trailing comment: ldirectord does not strip comments on global lines, they become part of the value", "move the comment to its own line");
      value = rest.slice(0, cm).trimEnd();
    }
  } else {
    const cm = commentAt(rest);
    value = (cm >= 0 ? rest.slice(0, cm) : rest).trimEnd();
    if (cm >= 0 && !virtualLine && !header) c.warn(no, start + cm + 1, key, "trailing comment removed; ldirectord keeps it as part of the value", "move the comment to its own line");
    if (virtualLine && value.includes("#")) {
      c.warn(no, start + value.indexOf("#") + 1, key, `ldirectord cuts virtual lines at '#', even inside quotes: it would read "${rest.slice(0, hashAt).trim()}"`, "avoid '#' in virtual lines");
    }
  }
  if (!m[3]) {
    if (value !== "" || key !== "supervised") {
      c.error(no, col + key.length, shownKey(key), "expected '=' after the directive name", `${shownKey(key)} = …`);
      return null;
    }
    c.warn(no, col, key, "a bare supervised is deprecated in ldirectord", "supervised = yes");
  }
  return { line: no, col, key, hasEq: !!m[3], value, valueCol: start + 1, ldValue, indented: indent > 0 };
}
