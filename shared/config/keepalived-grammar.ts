// Block grammar of keepalived.conf: words separated by blanks, `{ … }` blocks, comments from a
// `#` or `!` at the start of a word to the end of the line, double-quoted words. A statement is a
// keyword and the words after it on its line; its block, if any, opens on the same line (or on
// the next line alone). The tree keeps the line and column of every word for diagnostics; what
// the keywords mean is keepalived.ts's job. Bad input becomes diagnostics, never an exception.
import type { Collector } from "./diagnostics.ts";

export interface Word { text: string; line: number; col: number; quoted: boolean }

export interface KStmt {
  key: Word;
  args: Word[];
  /** The statements inside `{ … }`, or null when the statement has no block. */
  block: KStmt[] | null;
}

/** Splits one line into words, `{` and `}` always being words of their own. */
export function wordsOf(raw: string, line: number, c: Collector): Word[] {
  const out: Word[] = [];
  let i = 0;
  while (i < raw.length) {
    const ch = raw[i];
    // Every blank the word loop below stops at (\s: also NBSP, BOM, Unicode spaces), or a word
    // of length 0 would never advance i.
    if (/\s/.test(ch)) { i++; continue; }
    if (ch === "#" || ch === "!") break; // a comment runs to the end of the line
    if (ch === "{" || ch === "}") { out.push({ text: ch, line, col: i + 1, quoted: false }); i++; continue; }
    if (ch === '"') {
      const end = raw.indexOf('"', i + 1);
      if (end < 0) {
        c.error(line, i + 1, null, "unterminated double quote", "close the quote on the same line");
        out.push({ text: raw.slice(i + 1), line, col: i + 1, quoted: true });
        break;
      }
      out.push({ text: raw.slice(i + 1, end), line, col: i + 1, quoted: true });
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < raw.length && !/[\s{}"]/.test(raw[j])) j++;
    out.push({ text: raw.slice(i, j), line, col: i + 1, quoted: false });
    i = j;
  }
  return out;
}

/** Parses the whole file into statements. Unbalanced braces are errors at the offending brace. */
export function parseKeepalivedTree(text: string, c: Collector): KStmt[] {
  const root: KStmt[] = [];
  const stack: { list: KStmt[]; opener: Word | null }[] = [{ list: root, opener: null }];
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const words = wordsOf(lines[n], n + 1, c);
    let cur: KStmt | null = null; // the statement this line is building
    for (const w of words) {
      const top = stack[stack.length - 1];
      if (!w.quoted && w.text === "{") {
        // `{` alone on a line opens the block of the previous statement without one.
        const owner = cur ?? (top.list.length && top.list[top.list.length - 1].block === null && top.list[top.list.length - 1].key.line === w.line - 1 ? top.list[top.list.length - 1] : null);
        if (!owner) { c.error(w.line, w.col, null, "'{' without a keyword before it"); stack.push({ list: [], opener: w }); cur = null; continue; }
        if (owner.block) { c.error(w.line, w.col, owner.key.text, "a second '{' for the same keyword"); }
        owner.block = [];
        stack.push({ list: owner.block, opener: owner.key });
        cur = null;
      } else if (!w.quoted && w.text === "}") {
        if (stack.length === 1) { c.error(w.line, w.col, null, "'}' without a matching '{'", "remove it"); cur = null; continue; }
        stack.pop();
        cur = null;
      } else if (cur) {
        cur.args.push(w);
      } else {
        cur = { key: w, args: [], block: null };
        top.list.push(cur);
      }
    }
  }
  for (let k = stack.length - 1; k >= 1; k--) {
    const o = stack[k].opener!;
    c.error(o.line, o.col, o.text === "{" ? null : o.text, "block is never closed: '}' missing", "add the closing '}'");
  }
  return root;
}
