// services ldap and ldaps (ldirectord: Net::LDAP bind, anonymous unless `login`, then a search
// with the request as base; up if the first entry's DN matches receive, or receive is empty).
// A minimal LDAPv3 client: BER encoding of BindRequest, SearchRequest (scope base, filter
// (objectClass=*), size limit 1) and UnbindRequest; replies parsed as TLVs with bounded sizes.
import type { Socket } from "node:net";
import { openSocket } from "./session.ts";
import { tlsFor } from "./text.ts";
import { CheckFailure, fail, pass, reasonText, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";

const MAX_MESSAGE = 256 * 1024;

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
}
export function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), len(value.length), value]);
}
const int = (tag: number, n: number) => tlv(tag, n < 0x80 ? Buffer.from([n]) : Buffer.from([(n >> 8) & 0x7f, n & 0xff]));
const str = (tag: number, s: string) => tlv(tag, Buffer.from(s, "utf8"));
const seq = (tag: number, ...parts: Buffer[]) => tlv(tag, Buffer.concat(parts));

export function bindRequest(id: number, dn: string, password: string): Buffer {
  return seq(0x30, int(0x02, id), seq(0x60, int(0x02, 3), str(0x04, dn), str(0x80, password)));
}

export function searchRequest(id: number, base: string, timeLimitS: number): Buffer {
  return seq(0x30, int(0x02, id), seq(0x63,
    str(0x04, base), int(0x0a, 0) /* scope base */, int(0x0a, 0) /* never deref */, int(0x02, 1) /* size limit */,
    int(0x02, Math.max(1, Math.min(127, Math.ceil(timeLimitS)))), tlv(0x01, Buffer.from([0])) /* typesOnly */,
    str(0x87, "objectClass") /* present filter */, seq(0x30, str(0x04, "1.1")) /* no attributes */));
}

const unbind = (id: number) => seq(0x30, int(0x02, id), tlv(0x42, Buffer.alloc(0)));

interface Tlv { tag: number; value: Buffer; next: number }

/** One TLV at `off`, or null if the buffer does not hold all of it yet. */
export function readTlv(buf: Buffer, off: number): Tlv | null {
  if (buf.length < off + 2) return null;
  const tag = buf[off];
  let l = buf[off + 1], p = off + 2;
  if (l & 0x80) {
    const n = l & 0x7f;
    if (n === 0 || n > 3) throw new CheckFailure("ldap: unsupported BER length");
    if (buf.length < p + n) return null;
    l = 0;
    for (let i = 0; i < n; i++) l = l * 256 + buf[p + i];
    p += n;
  }
  if (l > MAX_MESSAGE) throw new CheckFailure("ldap: reply larger than 256 KiB");
  if (buf.length < p + l) return null;
  return { tag, value: buf.subarray(p, p + l), next: p + l };
}

function children(v: Buffer): Tlv[] {
  const out: Tlv[] = [];
  for (let off = 0; off < v.length;) {
    const t = readTlv(v, off);
    if (!t) throw new CheckFailure("ldap: truncated element");
    out.push(t);
    off = t.next;
  }
  return out;
}

/** LDAPMessage → { id, op tag, op children }. */
export function parseMessage(m: Tlv): { id: number; op: number; parts: Tlv[] } {
  if (m.tag !== 0x30) throw new CheckFailure("ldap: reply is not an LDAPMessage");
  const [idT, opT] = children(m.value);
  if (!idT || !opT || idT.tag !== 0x02) throw new CheckFailure("ldap: malformed LDAPMessage");
  return { id: idT.value.readUIntBE(0, Math.min(idT.value.length, 4) || 1), op: opT.tag, parts: opT.tag === 0x42 ? [] : children(opT.value) };
}

const RESULTS: Record<number, string> = { 0: "success", 32: "noSuchObject", 34: "invalidDNSyntax", 48: "inappropriateAuthentication", 49: "invalidCredentials", 50: "insufficientAccessRights", 51: "busy", 52: "unavailable", 53: "unwillingToPerform" };
const resultText = (code: number) => `${RESULTS[code] ?? "resultCode"} (${code})`;

/** Reads LDAPMessages until `want(op)` says stop; collects them. */
function reader(sock: Socket, signal: AbortSignal) {
  let buf: Buffer = Buffer.alloc(0);
  let waiting: { resolve: (m: ReturnType<typeof parseMessage>) => void; reject: (e: Error) => void } | null = null;
  let ended: Error | null = null;
  const queue: ReturnType<typeof parseMessage>[] = [];
  const pump = () => {
    try {
      for (;;) {
        const t = readTlv(buf, 0);
        if (!t) break;
        buf = buf.subarray(t.next);
        queue.push(parseMessage(t));
      }
    } catch (e) { ended = e as Error; sock.destroy(); }
    if (waiting && queue.length) { const w = waiting; waiting = null; w.resolve(queue.shift()!); }
    else if (waiting && ended) { const w = waiting; waiting = null; w.reject(ended); }
  };
  sock.on("data", (d: Buffer) => { buf = buf.length ? Buffer.concat([buf, d]) : d; pump(); });
  sock.on("close", () => { ended ??= new CheckFailure(signal.aborted ? `ldap: ${reasonText(signal)}` : "ldap: connection closed by the server"); pump(); });
  return () => new Promise<ReturnType<typeof parseMessage>>((resolve, reject) => { waiting = { resolve, reject }; pump(); });
}

export async function ldapCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const tls = ctx.check.service === "ldaps";
  const sock = await openSocket({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, tls: tls ? tlsFor(ctx) : null, label: ctx.check.service });
  try {
    const next = reader(sock, ctx.signal);
    // Bind: anonymous unless a login (a DN) is configured.
    sock.write(bindRequest(1, ctx.check.login ?? "", ctx.check.passwd ?? ""));
    const bound = await next();
    if (bound.id !== 1 || bound.op !== 0x61) throw new CheckFailure("ldap: unexpected reply to bind");
    const code = bound.parts[0]?.value[0] ?? 255;
    if (code !== 0) return fail(`ldap bind${ctx.check.login ? ` as ${JSON.stringify(ctx.check.login)}` : " (anonymous)"} refused: ${resultText(code)}`);
    const base = ctx.request.replace(/^\/+/, "");
    sock.write(searchRequest(2, base, ctx.timeoutMs / 1000));
    let dn: string | null = null;
    for (let i = 0; i < 100; i++) {
      const m = await next();
      if (m.id !== 2) continue;
      if (m.op === 0x64 && dn === null) dn = m.parts[0]?.value.toString("utf8") ?? "";
      else if (m.op === 0x65) {
        const rc = m.parts[0]?.value[0] ?? 255;
        if (rc !== 0 && dn === null) return fail(`ldap search of ${JSON.stringify(base)}: ${resultText(rc)}`);
        break;
      }
    }
    sock.write(unbind(3));
    if (dn === null) return fail(`ldap search of ${JSON.stringify(base)}: no entry`);
    if (!ctx.receive) return pass({ matched: dn.slice(0, 200) });
    const m = receiveMatcher(ctx.receive)(dn);
    return m === null ? fail(`ldap entry ${JSON.stringify(dn.slice(0, 120))} does not match ${JSON.stringify(ctx.receive)}`) : pass({ matched: dn.slice(0, 200) });
  } finally {
    sock.destroy();
  }
}
