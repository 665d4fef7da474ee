// One health check of one real server, with ldirectord's semantics (reference §1.5–1.6) and
// keepalived's retry / delay_before_retry / connect_timeout / status_code. The protocol modules
// live in checks/; this file picks one, gives it a hard deadline and turns anything it does —
// error, refusal, stall, throw — into a CheckOutcome. runCheck never throws and never outlives
// its budget, because the scheduler must get a result for every slot.
import { performance } from "node:perf_hooks";
import type { Check, VirtualService } from "../../shared/schemas/config.ts";
import { CheckFailure, abortPromise, delay, type CheckOutcome, type CheckTarget, type ProbeContext, type ProtoCheck, type ProtoResult } from "./checks/types.ts";
import { connectOnce } from "./checks/connect.ts";
import { httpCheck } from "./checks/http.ts";
import { smtpCheck, popCheck, imapCheck, nntpCheck, simpletcpCheck } from "./checks/text.ts";
import { ftpCheck } from "./checks/ftp.ts";
import { dnsCheck } from "./checks/dns.ts";
import { sipCheck } from "./checks/sip.ts";
import { radiusCheck } from "./checks/radius.ts";
import { ldapCheck } from "./checks/ldap.ts";
import { pgsqlCheck } from "./checks/pgsql.ts";
import { mysqlCheck } from "./checks/mysql.ts";
import { pingCheck } from "./checks/ping.ts";
import { externalCheck } from "./checks/external.ts";
import { hasProbe, pluginCheck } from "./checks/plugins.ts";

export type { CheckOutcome, CheckTarget } from "./checks/types.ts";
export { receiveMatcher } from "./checks/types.ts";
export { MAX_BODY_BYTES, requestPath, statusAccepted } from "./checks/http.ts";

/** negotiate: the protocol module for each ldirectord service this prober speaks. */
const NEGOTIATORS: Partial<Record<Check["service"], ProtoCheck>> = {
  http: httpCheck, https: httpCheck, http_proxy: httpCheck,
  smtp: smtpCheck, submission: smtpCheck, pop: popCheck, pops: popCheck, imap: imapCheck, imaps: imapCheck,
  nntp: nntpCheck, ftp: ftpCheck, dns: dnsCheck, sip: sipCheck, radius: radiusCheck, simpletcp: simpletcpCheck,
  ldap: ldapCheck, ldaps: ldapCheck, pgsql: pgsqlCheck, mysql: mysqlCheck,
  none: async () => ({ ok: true }),
};

const NOT_YET: Partial<Record<Check["service"], string>> = {
  oracle: "oracle checks need Oracle's proprietary client library, which lvsflow does not ship; use checktype external with a sqlplus script, or a probe plugin",
};

/** ldirectord's checkport fallback: the real's port, else the service's well-known port. */
const SERVICE_PORTS: Partial<Record<Check["service"], number>> = {
  ftp: 21, smtp: 25, dns: 53, http: 80, pop: 110, nntp: 119, imap: 143, ldap: 389, https: 443, submission: 587,
  ldaps: 636, imaps: 993, pops: 995, oracle: 1521, radius: 1812, http_proxy: 3128, mysql: 3306, sip: 5060, pgsql: 5432,
};

/** Short name of a check for events, metrics and logs: "connect", "negotiate/http", "plugin/name", "on". */
export function checkLabel(check: Check): string {
  if (check.type === "plugin") return `plugin/${check.plugin ?? "?"}`;
  return check.type === "negotiate" || check.type === "combined" || check.type === "external" || check.type === "ping"
    ? `${check.type}/${check.service}` : check.type;
}

/** Which protocol one attempt runs: combined alternates negotiate and connect (see CombinedCursor). */
export type AttemptKind = "connect" | "negotiate" | "ping" | "external" | "plugin";

/** What the check of `vs` runs when not combined; udp connect is a ping, as in ldirectord. */
export function baseKind(vs: VirtualService): AttemptKind | "on" | "off" {
  const t = vs.check.type;
  if (t === "combined") return "negotiate";
  if (t === "connect" && vs.protocol === "udp") return "ping";
  return t;
}

/**
 * Why this prober cannot check the reals of `vs` as configured, or null if it can. The service logs
 * this loudly at start: such reals get a failed result on every check, never a silent pass.
 */
export function unsupportedReason(vs: VirtualService): string | null {
  const c = vs.check;
  const kind = baseKind(vs);
  if (kind === "plugin") return c.plugin && hasProbe(c.plugin) ? null : `no probe registered under ${JSON.stringify(c.plugin)} (load its module with LVSFLOW_PROBE_MODULES)`;
  if (kind !== "negotiate") return null;
  if (NOT_YET[c.service]) return NOT_YET[c.service]!;
  return NEGOTIATORS[c.service] ? null : `negotiate/${c.service} not supported by this prober`;
}

/** Where and what to probe for one real server: per-real request/receive win over the check's. */
export function probeParams(t: CheckTarget) {
  const c = t.vs.check;
  return {
    host: t.real.address,
    // The service's well-known port only for protocol checks of a real without a port (fwmark).
    port: c.port ?? (t.real.port || (c.type === "negotiate" || c.type === "combined" ? SERVICE_PORTS[c.service] ?? 0 : 0)),
    timeoutMs: c.timeout * 1000,
    connectTimeoutMs: Math.min(c.connectTimeout ?? c.timeout, c.timeout) * 1000,
    request: t.real.request ?? c.request,
    receive: t.real.receive ?? c.receive,
  };
}

/** The longest a whole check may take: every attempt's timeout plus the delays between them. */
export function checkBudgetMs(check: Check): number {
  return (check.retry + 1) * check.timeout * 1000 + check.retry * check.delayBeforeRetry * 1000;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** One attempt of one kind, bounded by the check's timeout and by the caller's signal. */
export async function attempt(target: CheckTarget, kind: AttemptKind, signal: AbortSignal): Promise<CheckOutcome> {
  const started = performance.now();
  const p = probeParams(target);
  const out = (r: ProtoResult & { latencyMs?: number }): CheckOutcome => ({
    ok: r.ok, error: r.ok ? null : (r.detail ?? "failed"), httpStatus: r.httpStatus ?? null, matched: r.matched ?? null,
    latencyMs: r.latencyMs !== undefined && r.latencyMs >= 0 ? round(r.latencyMs) : round(performance.now() - started),
  });
  if (signal.aborted) return out({ ok: false, detail: "aborted before start" });
  const needsPort = kind === "connect" || kind === "negotiate";
  if (needsPort && !p.port && (kind === "connect" || target.vs.check.service !== "none")) return out({ ok: false, detail: "no port to check (real port 0 and no checkport)" });
  if (kind === "connect") {
    // The lean path (see connect.ts): its own timer is the deadline; a stop only drops the result.
    const err = await connectOnce(p.host, p.port, p.timeoutMs, p.connectTimeoutMs);
    return out(err === null ? { ok: true } : { ok: false, detail: err });
  }
  if (kind === "negotiate" && target.vs.check.service === "http") {
    // Plain http runs by the thousand: the lean module keeps its own deadline and listens to the
    // caller's signal itself (see http-lean.ts), so no AbortController, timer or race per check.
    try {
      return out(await httpCheck({ target, check: target.vs.check, ...p, signal }));
    } catch (e) {
      return out({ ok: false, detail: e instanceof CheckFailure ? e.message : `check threw: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  // The attempt's own deadline, chained to the caller's signal (prober stop, scheduler deadline).
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`timeout after ${p.timeoutMs / 1000}s`)), p.timeoutMs);
  const onOuter = () => ac.abort(signal.reason);
  signal.addEventListener("abort", onOuter, { once: true });
  const ctx: ProbeContext = { target, check: target.vs.check, ...p, signal: ac.signal };
  try {
    const run: ProtoCheck = kind === "ping" ? pingCheck : kind === "external" ? externalCheck
      : kind === "plugin" ? pluginCheck : (NEGOTIATORS[target.vs.check.service] ?? (async () => ({ ok: false, detail: unsupportedReason(target.vs) ?? "unsupported" })));
    // The race is the hard deadline: a module (or plugin) that ignores its signal still loses.
    return out(await Promise.race([Promise.resolve().then(() => run(ctx)), abortPromise(ac.signal, 25)]));
  } catch (e) {
    const msg = e instanceof CheckFailure ? e.message : `check threw: ${e instanceof Error ? e.message : String(e)}`;
    return out({ ok: false, detail: msg });
  } finally {
    // Modules release their sockets when they settle; aborting here would only cost an Error and
    // an event per check. The deadline race above already covers a module that did not settle.
    clearTimeout(timer);
    signal.removeEventListener("abort", onOuter);
  }
}

/**
 * One check: `retry` extra attempts `delayBeforeRetry` apart (keepalived) before it counts as
 * failed. `kind` is chosen by the caller (combined checks alternate).
 */
export async function runAttempts(target: CheckTarget, kind: AttemptKind, signal: AbortSignal): Promise<CheckOutcome> {
  const c = target.vs.check;
  let o = await attempt(target, kind, signal);
  for (let i = 0; i < c.retry && !o.ok && !signal.aborted; i++) {
    try { await delay(c.delayBeforeRetry * 1000, signal); } catch { break; }
    const next = await attempt(target, kind, signal);
    o = next.ok ? next : { ...next, error: `${next.error} (after ${i + 2} attempts)` };
  }
  return o;
}

/** Stateless single check (combined runs its negotiate half); the scheduler uses CheckRunner. */
export async function runCheck(target: CheckTarget, signal: AbortSignal): Promise<CheckOutcome> {
  const kind = baseKind(target.vs);
  if (kind === "on") return { ok: true, latencyMs: 0, error: null, httpStatus: null, matched: null };
  if (kind === "off") return { ok: false, latencyMs: 0, error: "checktype off", httpStatus: null, matched: null };
  return runAttempts(target, kind, signal);
}

/**
 * ldirectord's combined check (checktype = N): one negotiate, then N connects, then negotiate
 * again; a failed connect forces the next check to be a negotiate. A failed negotiate is also
 * followed by a negotiate, so a real never comes back on a bare connect.
 */
export class CombinedCursor {
  private since = new Map<string, number>();

  next(key: string, n: number): "negotiate" | "connect" {
    const s = this.since.get(key);
    return s === undefined || s >= n ? "negotiate" : "connect";
  }

  record(key: string, kind: "negotiate" | "connect", ok: boolean, n: number): void {
    if (kind === "negotiate") this.since.set(key, ok ? 0 : n);
    else this.since.set(key, ok ? (this.since.get(key) ?? 0) + 1 : n);
  }

  forget(key: string): void {
    this.since.delete(key);
  }
}

/** The scheduler's runner: runCheck plus the per-real memory combined checks need. */
export function createCheckRunner(): (target: CheckTarget, signal: AbortSignal) => Promise<CheckOutcome> {
  const cursor = new CombinedCursor();
  return async (target, signal) => {
    const c = target.vs.check;
    if (c.type !== "combined") return runCheck(target, signal);
    const key = `${target.vs.id}|${target.real.address}:${target.real.port}`;
    const kind = cursor.next(key, c.combinedConnects);
    const o = await runAttempts(target, kind, signal);
    cursor.record(key, kind, o.ok, c.combinedConnects);
    return kind === "connect" ? o : { ...o, error: o.error };
  };
}

export { CheckFailure };
