// pino JSON logs on stderr; a compact human format only when stderr is a terminal.
import { pino, type Logger, type DestinationStream } from "pino";
import { LOG_REDACT_PATHS, scrubKnownSecrets } from "./secrets.ts";

export type { Logger };

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "service", "node"]);

/** Renders one pino JSON line for a person: time, level, service@node, message, then key=value. */
export function humanLine(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const t = new Date(Number(o.time)).toISOString().slice(11, 23);
    const kv = Object.entries(o).filter(([k]) => !SKIP.has(k)).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
    const who = o.node ? `${o.service}@${o.node}` : String(o.service ?? "");
    return `${t} ${(LEVELS[Number(o.level)] ?? "?").padEnd(5)} ${who}: ${o.msg ?? ""}${kv.length ? "  " + kv.join(" ") : ""}\n`;
  } catch {
    return line;
  }
}

const human: DestinationStream = { write: (s: string) => void process.stderr.write(humanLine(s)) };

export function createLogger(service: string, extra: Record<string, unknown> = {}): Logger {
  const level = process.env.LVSFLOW_LOG_LEVEL ?? "info";
  const opts = {
    level,
    base: { service, pid: process.pid, ...extra },
    // Secrets never reach a log line, whatever object they travel in.
    redact: { paths: LOG_REDACT_PATHS, censor: "[redacted]" },
    // …and no secret value read through shared/secrets.ts, whatever message or key carries it.
    hooks: { streamWrite: scrubKnownSecrets },
  };
  const dest = process.stderr.isTTY && !process.env.LVSFLOW_LOG_JSON ? human : pino.destination({ dest: 2, sync: true });
  return pino(opts, dest);
}
