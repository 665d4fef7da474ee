// One health check of one real server, with ldirectord's semantics (reference §1.5–1.6) for the
// check types this prober implements: connect, negotiate (http, https, none), on and off.
// runCheck never throws and never outlives the check timeout: every error, refusal, stall or
// abort becomes a failed CheckOutcome, because the scheduler must get a result for every slot.
import { connect as tcpConnect, isIP, type Socket } from "node:net";
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { performance } from "node:perf_hooks";
import type { Check, Real, VirtualService } from "../../shared/schemas/config.ts";

export interface CheckTarget { vs: VirtualService; real: Real }

export interface CheckOutcome {
  ok: boolean;
  latencyMs: number;
  error: string | null;
  httpStatus: number | null;
  /** What matched `receive`, when a receive pattern was configured and matched. */
  matched: string | null;
}

/** Bodies are read up to this size: enough for any health page, bounded against huge replies. */
export const MAX_BODY_BYTES = 64 * 1024;

const NEGOTIATE_SERVICES = new Set<Check["service"]>(["http", "https", "none"]);

/** Short name of a check for events, metrics and logs: "connect", "negotiate/http", "on". */
export function checkLabel(check: Check): string {
  return check.type === "negotiate" || check.type === "combined" || check.type === "external" || check.type === "ping"
    ? `${check.type}/${check.service}` : check.type;
}

/**
 * Why this prober cannot check the reals of `vs` as configured, or null if it can. The service logs
 * this loudly at start: such reals get a failed result on every check, never a silent pass.
 */
export function unsupportedReason(vs: VirtualService): string | null {
  const c = vs.check;
  if (c.type === "on" || c.type === "off") return null;
  if (c.type === "connect") return vs.protocol === "udp" ? "connect check for udp needs ping; not supported yet" : null;
  if (c.type === "negotiate" && NEGOTIATE_SERVICES.has(c.service)) return null;
  return `check ${c.type}/${c.service} not supported by this prober yet`;
}

/** Where and what to probe for one real server: per-real request/receive win over the check's. */
export function probeParams(t: CheckTarget) {
  const c = t.vs.check;
  return {
    host: t.real.address,
    port: c.port ?? t.real.port,
    timeoutMs: c.timeout * 1000,
    request: t.real.request ?? c.request,
    receive: t.real.receive ?? c.receive,
  };
}

export async function runCheck(target: CheckTarget, signal: AbortSignal): Promise<CheckOutcome> {
  const started = performance.now();
  const done = (ok: boolean, error: string | null, extra: Partial<CheckOutcome> = {}): CheckOutcome =>
    ({ ok, latencyMs: Math.round((performance.now() - started) * 10) / 10, error, httpStatus: null, matched: null, ...extra });
  try {
    const c = target.vs.check;
    if (c.type === "on") return done(true, null);
    if (c.type === "off") return done(false, "checktype off");
    const unsupported = unsupportedReason(target.vs);
    if (unsupported) return done(false, unsupported);
    if (c.type === "negotiate" && c.service === "none") return done(true, null);
    const p = probeParams(target);
    if (!p.port) return done(false, "no port to check (real port 0 and no checkport)");
    if (signal.aborted) return done(false, "aborted before start");
    if (c.type === "connect") {
      const error = await connectCheck(p.host, p.port, p.timeoutMs, signal);
      return done(error === null, error);
    }
    const r = await httpCheck(target, p, signal);
    return done(r.ok, r.error, { httpStatus: r.httpStatus, matched: r.matched });
  } catch (e) {
    // Only a programming error gets here; still a result, never an exception in the scheduler.
    return done(false, `check failed unexpectedly: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Runs `body` with a hard deadline: resolves with `onTimeout()`'s value when the timeout passes or
 * the signal fires, whatever the I/O is doing, and calls `cleanup` exactly once either way.
 */
function bounded<T>(timeoutMs: number, signal: AbortSignal, onStop: (why: string) => T, cleanup: () => void,
  body: (finish: (v: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve) => {
    let settled = false;
    const finish = (v: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      try { cleanup(); } catch { /* a socket that is already gone */ }
      resolve(v);
    };
    // The scheduler aborts with Error("timeout …") at its deadline; anything else is a cancel (stop).
    const onAbort = () => finish(onStop(signal.reason instanceof Error && signal.reason.message.startsWith("timeout")
      ? signal.reason.message : "aborted"));
    const timer = setTimeout(() => finish(onStop(`timeout after ${timeoutMs / 1000}s`)), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    try { body(finish); } catch (e) { finish(onStop(String(e instanceof Error ? e.message : e))); }
  });
}

/** TCP connect within the timeout; returns the error text, or null when the real accepted. */
function connectCheck(host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<string | null> {
  let sock: Socket | null = null;
  const where = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  return bounded<string | null>(timeoutMs, signal, (why) => `connect ${where}: ${why}`, () => sock?.destroy(), (finish) => {
    sock = tcpConnect({ host, port });
    sock.once("connect", () => finish(null));
    // `on`, not `once`: a late second error on a destroyed socket must not become an uncaught one.
    sock.on("error", (e: NodeJS.ErrnoException) => finish(`connect ${where}: ${e.code ?? e.message}`));
  });
}

interface HttpResult { ok: boolean; error: string | null; httpStatus: number | null; matched: string | null }

/** The request path: ldirectord adds a leading "/" ("aaaa.html" → "/aaaa.html"); absolute URLs keep only path and query. */
export function requestPath(request: string): string {
  if (/^https?:\/\//i.test(request)) {
    try { const u = new URL(request); return u.pathname + u.search; } catch { /* fall through: treat as a path */ }
  }
  return request.startsWith("/") ? request : "/" + request;
}

/** The receive pattern as a JavaScript RegExp; an invalid regex is matched as a literal string. */
export function receiveMatcher(receive: string): (body: string) => string | null {
  try {
    const re = new RegExp(receive);
    return (body) => re.exec(body)?.[0] ?? null;
  } catch {
    return (body) => (body.includes(receive) ? receive : null);
  }
}

function httpCheck(t: CheckTarget, p: ReturnType<typeof probeParams>, signal: AbortSignal): Promise<HttpResult> {
  const c = t.vs.check;
  const https = c.service === "https";
  const v6 = isIP(p.host) === 6;
  // Host as LWP (and so ldirectord) sends it: the virtualhost or the real's address, plus the port
  // when it is not the scheme's default. A virtualhost that already names a port is kept as is.
  const defaultPort = https ? 443 : 80;
  const hostName = c.virtualhost ?? (v6 ? `[${p.host}]` : p.host);
  const hasPort = /:\d+$/.test(hostName) && !/^\[.*\]$/.test(hostName);
  const hostHeader = hasPort || p.port === defaultPort ? hostName : `${hostName}:${p.port}`;
  // SNI only for a hostname (an IP address is not a valid TLS server name).
  const sniName = c.virtualhost ? c.virtualhost.replace(/^\[(.*)\]$/, "$1").replace(/:\d+$/, "") : "";
  const servername = sniName && isIP(sniName) === 0 ? sniName : "";
  let req: ClientRequest | null = null;
  let res: IncomingMessage | null = null;
  const fail = (error: string, httpStatus: number | null = null): HttpResult => ({ ok: false, error, httpStatus, matched: null });
  let status: number | null = null;
  return bounded<HttpResult>(p.timeoutMs, signal, (why) => fail(why, status), () => { res?.destroy(); req?.destroy(); }, (finish) => {
    const opts = {
      host: p.host, port: p.port, method: c.httpMethod, path: requestPath(p.request),
      headers: { Host: hostHeader, "User-Agent": "lvsflow-prober", Connection: "close", Accept: "*/*" },
      // A fresh connection per check: a pooled socket would hide a real that stopped accepting.
      agent: false as const,
      ...(https ? { servername, rejectUnauthorized: c.tlsVerify } : {}),
    };
    req = (https ? httpsRequest : httpRequest)(opts, (r) => {
      res = r;
      status = r.statusCode ?? null;
      const chunks: Buffer[] = [];
      let size = 0;
      const code = status ?? 0;
      // Not 2xx: down whatever the body says, no need to read it (redirects are not followed).
      if (code < 200 || code > 299) return finish(fail(`HTTP ${code}`, status));
      const evaluate = () => {
        if (!p.receive) return finish({ ok: true, error: null, httpStatus: status, matched: null });
        const body = Buffer.concat(chunks, Math.min(size, MAX_BODY_BYTES)).toString("utf8");
        const matched = receiveMatcher(p.receive)(body);
        if (matched === null) {
          const why = c.httpMethod === "HEAD" ? " (HEAD has no body: leave receive empty)" : size > MAX_BODY_BYTES ? ` in the first ${MAX_BODY_BYTES} bytes` : "";
          return finish(fail(`receive ${JSON.stringify(p.receive.slice(0, 80))} not found${why}`, status));
        }
        finish({ ok: true, error: null, httpStatus: status, matched: matched.slice(0, 200) });
      };
      r.on("data", (b: Buffer) => {
        chunks.push(b);
        size += b.length;
        // Enough read: judge on the first MAX_BODY_BYTES and drop the rest of a huge reply.
        if (size >= MAX_BODY_BYTES) evaluate();
      });
      r.once("end", evaluate);
      r.on("error", (e) => finish(fail(`reading response: ${e.message}`, status)));
      r.once("aborted", () => finish(fail("response aborted by the server", status)));
    });
    req.on("error", (e: NodeJS.ErrnoException) => finish(fail(`${https ? "https" : "http"} ${p.host}:${p.port}: ${e.code ?? e.message}`)));
    req.end();
  });
}
