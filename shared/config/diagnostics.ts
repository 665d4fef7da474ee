// Diagnostics for configuration files: every problem names FILE:LINE:COL and the directive,
// so an operator can fix a file without reading lvsflow's code. Parsers collect them and never
// throw for bad input; loadConfig turns the errors into one ConfigError.

export type Severity = "error" | "warning";

export interface Diagnostic {
  file: string;
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  col: number;
  severity: Severity;
  /** The directive or key concerned (`real`, `checktimeout`, `nodes[0].name`), null for the whole line. */
  directive: string | null;
  message: string;
  fix?: string;
}

/** `FILE:LINE:COL: error: directive: message (fix: …)`; warnings leave out the column. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.severity === "error" ? `${d.file}:${d.line}:${d.col}` : `${d.file}:${d.line}`;
  const what = d.directive ? `${d.directive}: ${d.message}` : d.message;
  return `${where}: ${d.severity}: ${what}${d.fix ? ` (fix: ${d.fix})` : ""}`;
}

export function hasErrors(ds: readonly Diagnostic[]): boolean {
  return ds.some((d) => d.severity === "error");
}

/** Sorts by file, then line, then column, keeping the order of equal positions. */
export function sortDiagnostics(ds: readonly Diagnostic[]): Diagnostic[] {
  return ds
    .map((d, i) => [d, i] as const)
    .sort(([a, i], [b, j]) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col || i - j))
    .map(([d]) => d);
}

export class ConfigError extends Error {
  readonly diagnostics: Diagnostic[];
  /** The version of the refused sources, when they could all be read. */
  version: string | null = null;
  constructor(diagnostics: Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === "error");
    const first = errors[0] ?? diagnostics[0];
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? "s" : ""})` : "";
    super(first ? formatDiagnostic(first) + more : "invalid configuration");
    this.name = "ConfigError";
    this.diagnostics = diagnostics;
  }
}

/** Collects diagnostics for one file. `gotcha` is a warning in lenient mode and an error in strict mode. */
export class Collector {
  readonly diagnostics: Diagnostic[] = [];
  constructor(readonly file: string, readonly strict = false) {}

  error(line: number, col: number, directive: string | null, message: string, fix?: string): void {
    this.push("error", line, col, directive, message, fix);
  }
  warn(line: number, col: number, directive: string | null, message: string, fix?: string): void {
    this.push("warning", line, col, directive, message, fix);
  }
  gotcha(line: number, col: number, directive: string | null, message: string, fix?: string): void {
    this.push(this.strict ? "error" : "warning", line, col, directive, message, fix);
  }
  private push(severity: Severity, line: number, col: number, directive: string | null, message: string, fix?: string): void {
    const d: Diagnostic = { file: this.file, line: Math.max(1, line), col: Math.max(1, col), severity, directive, message };
    if (fix) d.fix = fix;
    this.diagnostics.push(d);
  }
}

// ---- secrets never travel in diagnostics ----------------------------------------------------

/** Values written after credential keys (login, passwd, secret, database, auth_pass), in any format. */
const SECRET_VALUE = /\b(?:login|passwd|password|secret|database|auth_pass)\b["']?\s*[=:]?\s*["']?([^"'\s#,}\]]{4,})/gi;

/** The credential values a configuration text holds, longest first. */
export function secretsIn(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(SECRET_VALUE)) found.add(m[1]!);
  return [...found].sort((a, b) => b.length - a.length);
}

/** Replaces every occurrence of `secrets` in the diagnostics' texts, so a mangled line that
 *  carries a password (say, a directive name run into its value) is never echoed. */
export function scrubDiagnostics(ds: Diagnostic[], secrets: readonly string[]): Diagnostic[] {
  if (!secrets.length) return ds;
  const scrub = (t: string) => secrets.reduce((acc, sec) => (acc.includes(sec) ? acc.split(sec).join("[redacted]") : acc), t);
  for (const d of ds) {
    d.message = scrub(d.message);
    if (d.fix) d.fix = scrub(d.fix);
    if (d.directive) d.directive = scrub(d.directive);
  }
  return ds;
}

/** A directive name as diagnostics show it: cut where it stops looking like one, since a mangled
 *  line may run a password into it (`secrS3cret…`). Real directive names are shown whole. */
export function shownKey(key: string): string {
  const head = /^(?:[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*|[A-Z][A-Z0-9_]*)/.exec(key)?.[0] ?? "";
  return head.length === key.length && key.length <= 40 ? key : `${head.slice(0, 32)}…`;
}
