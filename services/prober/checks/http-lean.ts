// The plain-http negotiate check on a raw socket: one request, a small HTTP/1.x response parser,
// no ClientRequest/IncomingMessage/agent machinery. Node's http client costs about 230 µs per
// check, this about half of that, which is what lets one prober core keep 10,000 reals on
// schedule. Same rules as http.ts: accepted status, receive on the first 64 KiB of the body,
// redirects not followed, every wait bounded by the check's own deadline and by the caller's signal.
import { connect as tcpConnect, type Socket } from "node:net";
import { where } from "./session.ts";
import { fail, pass, reasonText, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";

export const MAX_HEADER_BYTES = 16 * 1024;
const MAX_BODY = 64 * 1024;
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/;

interface Parsed { status: number; headEnd: number; length: number | null; chunked: boolean }

/** Parses one header block at `buf[0..]`; null while incomplete; throws on a malformed response. */
export function parseHead(buf: Buffer): Parsed | null {
  const end = buf.indexOf("\r\n\r\n", 0, "latin1");
  if (end < 0) {
    if (buf.length >= 5 && buf.subarray(0, 5).toString("latin1") !== "HTTP/") throw new Error("not an HTTP response");
    if (buf.length > MAX_HEADER_BYTES) throw new Error(`Header overflow (HPE_HEADER_OVERFLOW): response headers over ${MAX_HEADER_BYTES} bytes`);
    return null;
  }
  if (end > MAX_HEADER_BYTES) throw new Error(`Header overflow (HPE_HEADER_OVERFLOW): response headers over ${MAX_HEADER_BYTES} bytes`);
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = STATUS_LINE.exec(lines[0]);
  // The server's text is never echoed: it may hold terminal escapes or be arbitrarily long.
  if (!m) throw new Error("invalid HTTP status line");
  let length: number | null = null, chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(":");
    if (c <= 0) throw new Error("invalid HTTP header line");
    const name = lines[i].slice(0, c).trim().toLowerCase();
    const value = lines[i].slice(c + 1).trim();
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value)) throw new Error("invalid Content-Length");
      length = Number(value);
    } else if (name === "transfer-encoding" && /chunked/i.test(value)) chunked = true;
  }
  return { status: Number(m[1]), headEnd: end + 4, length, chunked };
}

/** Decodes as much of a chunked body as `raw` holds; `done` once the last chunk is seen. */
export function dechunk(raw: Buffer, max: number): { body: Buffer; done: boolean } {
  const parts: Buffer[] = [];
  let size = 0, off = 0;
  for (;;) {
    const nl = raw.indexOf("\r\n", off, "latin1");
    if (nl < 0) { if (raw.length - off > 64) throw new Error("invalid chunk size line"); break; }
    const n = parseInt(raw.subarray(off, nl).toString("latin1").split(";")[0].trim(), 16);
    if (!Number.isFinite(n) || n < 0) throw new Error("invalid chunk size");
    if (n === 0) return { body: Buffer.concat(parts, size), done: true };
    const start = nl + 2;
    const avail = Math.min(n, raw.length - start);
    parts.push(raw.subarray(start, start + avail));
    size += avail;
    if (size >= max || avail < n) break;
    off = start + n + 2;
    if (off > raw.length) break;
  }
  return { body: Buffer.concat(parts, size), done: size >= max };
}

/**
 * The check's own timer at ctx.timeoutMs is its deadline, and ctx.signal (the caller's: a prober
 * stop, the scheduler's deadline) ends it at once: the dispatcher then needs no AbortController,
 * timer and race of its own per check (about a tenth of an HTTP check's CPU).
 */
export function httpLeanCheck(ctx: ProbeContext, path: string, hostHeader: string): Promise<ProtoResult> {
  const c = ctx.check;
  const head = c.httpMethod === "HEAD";
  // Only failures name the real: no string built per passing check.
  const at = () => `http ${where(ctx.host, ctx.port)}`;
  return new Promise<ProtoResult>((resolve) => {
    let sock: Socket | null = null;
    let settled = false;
    let status: number | null = null;
    let buf: Buffer = Buffer.alloc(0);
    let parsed: Parsed | null = null;
    // Declared before finish() can run (an early failure clears them while still unset).
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const finish = (r: ProtoResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(deadline);
      ctx.signal.removeEventListener("abort", onAbort);
      // After a judged response, RST: no FIN exchange and no TIME_WAIT per check on the prober.
      if (parsed && sock && !sock.destroyed) sock.resetAndDestroy();
      else sock?.destroy();
      resolve(r);
    };
    const onAbort = () => finish(fail(reasonText(ctx.signal), { httpStatus: status }));
    if (ctx.signal.aborted) return onAbort();
    if (/[\s\u0000-\u001f\u007f]/.test(path) || /[\r\n]/.test(hostHeader)) return finish(fail("request path or Host contains spaces or control characters"));
    // The same text as the dispatcher's deadline ("timeout after 0.5s").
    deadline = setTimeout(() => finish(fail(`timeout after ${ctx.timeoutMs / 1000}s`, { httpStatus: status })), ctx.timeoutMs);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    connectTimer = ctx.connectTimeoutMs < ctx.timeoutMs
      ? setTimeout(() => finish(fail(`${at()}: connect timeout after ${ctx.connectTimeoutMs / 1000}s`)), ctx.connectTimeoutMs) : undefined;
    const evaluate = (body: Buffer, truncated: boolean) => {
      if (!ctx.receive) return finish(pass({ httpStatus: status }));
      let matched: string | null;
      try { matched = receiveMatcher(ctx.receive)(body.subarray(0, MAX_BODY).toString("utf8")); } catch (e) { return finish(fail((e as Error).message, { httpStatus: status })); }
      if (matched !== null) return finish(pass({ httpStatus: status, matched: matched.slice(0, 200) }));
      const why = head ? " (HEAD has no body: leave receive empty)" : truncated ? ` in the first ${MAX_BODY} bytes` : "";
      finish(fail(`receive ${JSON.stringify(ctx.receive.slice(0, 80))} not found${why}`, { httpStatus: status }));
    };
    const onData = (chunk: Buffer | null) => {
      if (chunk) buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      try {
        while (!parsed) {
          const p = parseHead(buf);
          if (!p) return;
          // Interim 1xx answers (100 Continue) come before the real one.
          if (p.status >= 100 && p.status < 200 && p.status !== 101) { buf = buf.subarray(p.headEnd); continue; }
          parsed = p;
          status = p.status;
          buf = buf.subarray(p.headEnd);
          if (!statusOk(p.status)) return finish(fail(`HTTP ${p.status}`, { httpStatus: status }));
          if (head || p.status === 204 || p.status === 304) return evaluate(Buffer.alloc(0), false);
        }
        if (parsed.chunked) {
          const d = dechunk(buf, MAX_BODY);
          if (d.done) return evaluate(d.body, d.body.length >= MAX_BODY);
        } else if (parsed.length !== null) {
          if (buf.length >= parsed.length || buf.length >= MAX_BODY) return evaluate(buf, parsed.length > MAX_BODY);
        } else if (buf.length >= MAX_BODY) return evaluate(buf, true);
        if (chunk === null) {
          // The server closed: a complete close-delimited body, or a cut-off one.
          if (parsed.chunked || parsed.length !== null) return finish(fail("response aborted by the server", { httpStatus: status }));
          return evaluate(buf, false);
        }
      } catch (e) {
        finish(fail(`${at()}: ${(e as Error).message}`, { httpStatus: status }));
      }
    };
    const statusOk = (code: number) => {
      if (!c.statusCodes || c.statusCodes.length === 0) return code >= 200 && code <= 299;
      return c.statusCodes.some((s) => { const [lo, hi = lo] = s.split("-").map(Number); return code >= lo && code <= hi; });
    };
    sock = tcpConnect({ host: ctx.host, port: ctx.port });
    sock.once("connect", () => {
      clearTimeout(connectTimer);
      sock!.write(`${c.httpMethod} ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: lvsflow-prober\r\nConnection: close\r\nAccept: */*\r\n\r\n`, "latin1");
    });
    sock.on("data", onData);
    sock.once("end", () => {
      if (!parsed) return finish(fail(`${at()}: connection closed before a complete response`, { httpStatus: status }));
      onData(null);
    });
    // `on`, not `once`: a late second error on a destroyed socket must not become an uncaught one.
    sock.on("error", (e: NodeJS.ErrnoException) => finish(fail(`${at()}: ${e.code ?? e.message}`, { httpStatus: status })));
  });
}
