// services http, https and http_proxy (ldirectord: LWP; reference §1.6): the reply must have an
// accepted status (2xx, or keepalived's status_code list) and, if receive is set, a body that
// matches it. http_proxy sends the request's absolute URL through the real as a proxy.
import { isIP, type Socket } from "node:net";
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { httpLeanCheck } from "./http-lean.ts";
import { CheckFailure, fail, pass, reasonText, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";

/** Bodies are read up to this size: enough for any health page, bounded against huge replies. */
export const MAX_BODY_BYTES = 64 * 1024;

/** The request path: ldirectord adds a leading "/" ("aaaa.html" → "/aaaa.html"); absolute URLs keep only path and query. */
export function requestPath(request: string): string {
  if (/^https?:\/\//i.test(request)) {
    try { const u = new URL(request); return u.pathname + u.search; } catch { /* fall through: treat as a path */ }
  }
  return request.startsWith("/") ? request : "/" + request;
}

/** keepalived status_code: exact codes and ranges; null means ldirectord's rule, any 2xx. */
export function statusAccepted(code: number, statusCodes: string[] | null): boolean {
  if (!statusCodes || statusCodes.length === 0) return code >= 200 && code <= 299;
  return statusCodes.some((s) => {
    const [lo, hi = lo] = s.split("-").map(Number);
    return code >= lo && code <= hi;
  });
}

/** For http_proxy: the absolute URL to ask the proxy for (ldirectord: the request as a full URI). */
export function proxyUrl(request: string): URL {
  const r = request.replace(/^\/+(?=https?:\/\/)/i, "");
  if (!/^https?:\/\//i.test(r)) throw new CheckFailure(`http_proxy needs an absolute URL as request (http://host/path), not ${JSON.stringify(request)}`);
  try { return new URL(r); } catch { throw new CheckFailure(`http_proxy request is not a valid URL: ${JSON.stringify(request)}`); }
}

export function httpCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const c = ctx.check;
  const https = c.service === "https";
  const proxy = c.service === "http_proxy";
  const v6 = isIP(ctx.host) === 6;
  let path: string, hostHeader: string, servername = "";
  if (proxy) {
    const u = proxyUrl(ctx.request);
    path = u.href;
    hostHeader = u.host;
  } else {
    // Host as LWP (and so ldirectord) sends it: the virtualhost or the real's address, plus the
    // port when it is not the scheme's default. A virtualhost that already names a port is kept.
    const defaultPort = https ? 443 : 80;
    const hostName = c.virtualhost ?? (v6 ? `[${ctx.host}]` : ctx.host);
    const hasPort = /:\d+$/.test(hostName) && !/^\[.*\]$/.test(hostName);
    hostHeader = hasPort || ctx.port === defaultPort ? hostName : `${hostName}:${ctx.port}`;
    path = requestPath(ctx.request);
    // SNI only for a hostname (an IP address is not a valid TLS server name).
    const sniName = c.virtualhost ? c.virtualhost.replace(/^\[(.*)\]$/, "$1").replace(/:\d+$/, "") : "";
    servername = sniName && isIP(sniName) === 0 ? sniName : "";
  }
  const label = proxy ? "http_proxy" : https ? "https" : "http";
  // Plain http, the check that runs by the thousand: the lean raw-socket path.
  if (!https && !proxy) return httpLeanCheck(ctx, path, hostHeader);
  return new Promise<ProtoResult>((resolve) => {
    let req: ClientRequest | null = null;
    let res: IncomingMessage | null = null;
    let status: number | null = null;
    let settled = false;
    const finish = (r: ProtoResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      ctx.signal.removeEventListener("abort", onAbort);
      res?.destroy();
      req?.destroy();
      resolve(r);
    };
    const onAbort = () => finish(fail(reasonText(ctx.signal), { httpStatus: status }));
    if (ctx.signal.aborted) return onAbort();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    const connectTimer = setTimeout(() => finish(fail(`${label} ${ctx.host}:${ctx.port}: connect timeout after ${ctx.connectTimeoutMs / 1000}s`)), ctx.connectTimeoutMs);
    const opts = {
      host: ctx.host, port: ctx.port, method: c.httpMethod, path,
      headers: { Host: hostHeader, "User-Agent": "lvsflow-prober", Connection: "close", Accept: "*/*" },
      // A fresh connection per check: a pooled socket would hide a real that stopped accepting.
      agent: false as const,
      ...(https ? { servername, rejectUnauthorized: c.tlsVerify } : {}),
    };
    try {
      req = (https ? httpsRequest : httpRequest)(opts, (r) => {
        res = r;
        status = r.statusCode ?? null;
        const code = status ?? 0;
        // Not accepted: down whatever the body says, no need to read it (redirects are not followed).
        if (!statusAccepted(code, c.statusCodes)) return finish(fail(`HTTP ${code}`, { httpStatus: status }));
        const chunks: Buffer[] = [];
        let size = 0;
        const evaluate = () => {
          if (!ctx.receive) return finish(pass({ httpStatus: status }));
          const body = Buffer.concat(chunks, Math.min(size, MAX_BODY_BYTES)).toString("utf8");
          let matched: string | null;
          // In an event callback: a pattern that overruns its limit must become a result, not a crash.
          try { matched = receiveMatcher(ctx.receive)(body); } catch (e) { return finish(fail(e instanceof Error ? e.message : String(e), { httpStatus: status })); }
          if (matched === null) {
            const why = c.httpMethod === "HEAD" ? " (HEAD has no body: leave receive empty)" : size > MAX_BODY_BYTES ? ` in the first ${MAX_BODY_BYTES} bytes` : "";
            return finish(fail(`receive ${JSON.stringify(ctx.receive.slice(0, 80))} not found${why}`, { httpStatus: status }));
          }
          finish(pass({ httpStatus: status, matched: matched.slice(0, 200) }));
        };
        r.on("data", (b: Buffer) => {
          chunks.push(b);
          size += b.length;
          // Enough read: judge on the first MAX_BODY_BYTES and drop the rest of a huge reply.
          if (size >= MAX_BODY_BYTES) evaluate();
        });
        r.once("end", evaluate);
        r.on("error", (e) => finish(fail(`reading response: ${e.message}`, { httpStatus: status })));
        r.once("aborted", () => finish(fail("response aborted by the server", { httpStatus: status })));
      });
    } catch (e) {
      return finish(fail(`${label}: ${e instanceof Error ? e.message : String(e)}`));
    }
    req.on("socket", (s: Socket) => {
      // keepalived connect_timeout: the connect alone has its own, shorter deadline.
      if (!s.connecting) clearTimeout(connectTimer);
      else s.once("connect", () => clearTimeout(connectTimer));
    });
    req.on("error", (e: NodeJS.ErrnoException) => finish(fail(`${label} ${ctx.host}:${ctx.port}: ${e.code ?? e.message}`)));
    req.end();
  });
}
