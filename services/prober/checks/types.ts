// What every check module receives and returns. A protocol check is an async function of a
// ProbeContext; the dispatcher (../checks.ts) gives it a deadline signal and turns whatever it
// throws into a failed CheckOutcome, so modules can simply throw on every failure.
import vm from "node:vm";
import type { Check, Real, VirtualService } from "../../../shared/schemas/config.ts";

export interface CheckTarget { vs: VirtualService; real: Real }

export interface CheckOutcome {
  ok: boolean;
  latencyMs: number;
  error: string | null;
  httpStatus: number | null;
  /** What matched `receive`, when a receive pattern was configured and matched. */
  matched: string | null;
}

export interface ProbeContext {
  target: CheckTarget;
  check: Check;
  host: string;
  port: number;
  /** Deadline of this attempt in ms (the check's timeout). */
  timeoutMs: number;
  /** Deadline for the TCP/TLS connect alone (keepalived connect_timeout), ≤ timeoutMs. */
  connectTimeoutMs: number;
  request: string;
  receive: string;
  /** Fires at the attempt's deadline or when the prober stops; modules release sockets on it. */
  signal: AbortSignal;
}

/** What a protocol module reports; `detail` is the error text when down. */
export interface ProtoResult { ok: boolean; detail?: string | null; httpStatus?: number | null; matched?: string | null }

export type ProtoCheck = (ctx: ProbeContext) => Promise<ProtoResult>;

/**
 * A failure with a message meant for the operator (shown as the result's error). No stack trace:
 * thousands of checks fail per second when a rack goes dark, and stacks are costly and unused.
 */
export class CheckFailure extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

export const fail = (detail: string, extra: Partial<ProtoResult> = {}): ProtoResult => ({ ok: false, detail, ...extra });
export const pass = (extra: Partial<ProtoResult> = {}): ProtoResult => ({ ok: true, detail: null, ...extra });

/** How long a receive pattern may run on one reply before the check fails. */
export const RECEIVE_LIMIT_MS = 100;

// A pattern with quantifiers can backtrack catastrophically on a hostile reply ((a+)+$ on 40
// bytes runs for ages) and would block the event loop, and with it every other check. Such
// patterns run in a vm context whose timeout interrupts the regex engine; plain literal patterns
// (the usual "Test Page") stay on the fast path, as the guard costs ~70 µs per match.
const guardCtx = vm.createContext({});
const guardScript = new vm.Script("__re.exec(__body)");
const QUANTIFIED = /[*+?{]/;

/**
 * The receive pattern as a JavaScript RegExp; an invalid regex is matched as a literal string.
 * Throws CheckFailure when a quantified pattern runs longer than RECEIVE_LIMIT_MS on the body.
 */
export function receiveMatcher(receive: string): (body: string) => string | null {
  let re: RegExp;
  try {
    re = new RegExp(receive);
  } catch {
    return (body) => (body.includes(receive) ? receive : null);
  }
  if (!QUANTIFIED.test(receive)) return (body) => re.exec(body)?.[0] ?? null;
  return (body) => {
    guardCtx.__re = re;
    guardCtx.__body = body;
    try {
      return (guardScript.runInContext(guardCtx, { timeout: RECEIVE_LIMIT_MS }) as RegExpExecArray | null)?.[0] ?? null;
    } catch (e) {
      if ((e as { code?: string }).code === "ERR_SCRIPT_EXECUTION_TIMEOUT") {
        throw new CheckFailure(`receive ${JSON.stringify(receive.slice(0, 80))} ran over ${RECEIVE_LIMIT_MS} ms on the reply (catastrophic backtracking?): simplify the pattern`);
      }
      throw e;
    } finally {
      guardCtx.__body = "";
    }
  };
}

/**
 * Rejects with the signal's reason text `graceMs` after it fires: the hard stop for a check that
 * ignores its signal, late enough that a well-behaved one reports its own, more precise detail.
 */
export function abortPromise(signal: AbortSignal, graceMs = 0): Promise<never> {
  return new Promise((_, reject) => {
    const why = () => reject(new CheckFailure(reasonText(signal)));
    const later = () => (graceMs > 0 ? setTimeout(why, graceMs) : why());
    if (signal.aborted) later();
    else signal.addEventListener("abort", later, { once: true });
  });
}

export function reasonText(signal: AbortSignal): string {
  const r = signal.reason;
  return r instanceof Error ? r.message : typeof r === "string" ? r : "aborted";
}

/** Sleeps `ms`, or rejects early when the signal fires. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CheckFailure(reasonText(signal)));
    const onAbort = () => { clearTimeout(t); reject(new CheckFailure(reasonText(signal))); };
    const t = setTimeout(() => { signal.removeEventListener("abort", onAbort); resolve(); }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
