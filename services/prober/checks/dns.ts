// service dns (ldirectord: Net::DNS search(request) over udp, or tcp for a tcp virtual service):
// up if an A (or AAAA) answer's address or a PTR answer's name matches receive (empty: any answer).
// A request that is an IP address asks for its PTR record, as Net::DNS does.
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { randomInt } from "node:crypto";
import { openSocket } from "./session.ts";
import { CheckFailure, fail, pass, reasonText, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";

const TYPE_A = 1, TYPE_PTR = 12, TYPE_AAAA = 28;
const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

export function queryName(request: string): { name: string; type: number } {
  const r = request.replace(/^\/+/, "").trim();
  if (!r) throw new CheckFailure("dns check needs a request naming a host or an address");
  if (isIP(r) === 4) return { name: r.split(".").reverse().join(".") + ".in-addr.arpa", type: TYPE_PTR };
  if (isIP(r) === 6) {
    const hex = expand6(r);
    return { name: hex.split("").reverse().join(".") + ".ip6.arpa", type: TYPE_PTR };
  }
  return { name: r.replace(/\.$/, ""), type: TYPE_A };
}

function expand6(a: string): string {
  const [head, tail = ""] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = a.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return groups.map((g) => g.padStart(4, "0")).join("");
}

export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.split(".").filter(Boolean);
  const parts: Buffer[] = [];
  const hdr = Buffer.alloc(12);
  hdr.writeUInt16BE(id, 0);
  hdr.writeUInt16BE(0x0100, 2); // RD
  hdr.writeUInt16BE(1, 4);
  parts.push(hdr);
  for (const l of labels) {
    const b = Buffer.from(l, "ascii");
    if (b.length > 63) throw new CheckFailure(`dns label too long in ${JSON.stringify(name)}`);
    parts.push(Buffer.from([b.length]), b);
  }
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(1, 3); // IN
  parts.push(tail);
  return Buffer.concat(parts);
}

/** Reads a (possibly compressed) name at `off`; returns the name and the offset after it. */
function readName(msg: Buffer, off: number): { name: string; next: number } {
  const labels: string[] = [];
  let next = -1;
  for (let hops = 0; hops < 64; hops++) {
    if (off >= msg.length) throw new CheckFailure("truncated dns name");
    const len = msg[off];
    if (len === 0) { if (next < 0) next = off + 1; return { name: labels.join("."), next }; }
    if ((len & 0xc0) === 0xc0) {
      if (next < 0) next = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1];
      continue;
    }
    labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii"));
    off += 1 + len;
  }
  throw new CheckFailure("dns name compression loop");
}

export interface DnsAnswer { type: number; value: string }

export function decodeResponse(msg: Buffer, id: number): { rcode: number; truncated: boolean; answers: DnsAnswer[] } {
  if (msg.length < 12) throw new CheckFailure("dns reply shorter than a header");
  if (msg.readUInt16BE(0) !== id) throw new CheckFailure("dns reply with another id");
  const flags = msg.readUInt16BE(2);
  if (!(flags & 0x8000)) throw new CheckFailure("dns message is not a reply");
  const qd = msg.readUInt16BE(4), an = msg.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qd; i++) off = readName(msg, off).next + 4;
  const answers: DnsAnswer[] = [];
  for (let i = 0; i < an && off < msg.length; i++) {
    const n = readName(msg, off);
    off = n.next;
    const type = msg.readUInt16BE(off), rdlen = msg.readUInt16BE(off + 8);
    const rd = off + 10;
    if (rd + rdlen > msg.length) throw new CheckFailure("truncated dns answer");
    if (type === TYPE_A && rdlen === 4) answers.push({ type, value: [...msg.subarray(rd, rd + 4)].join(".") });
    else if (type === TYPE_AAAA && rdlen === 16) answers.push({ type, value: msg.subarray(rd, rd + 16).toString("hex").match(/.{4}/g)!.join(":") });
    else if (type === TYPE_PTR) answers.push({ type, value: readName(msg, rd).name });
    off = rd + rdlen;
  }
  return { rcode: flags & 0xf, truncated: (flags & 0x0200) !== 0, answers };
}

function udpExchange(ctx: ProbeContext, query: Buffer, id: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(ctx.host) === 6 ? "udp6" : "udp4");
    const stop = (err: Error | null, msg?: Buffer) => {
      ctx.signal.removeEventListener("abort", onAbort);
      try { sock.close(); } catch { /* already closed */ }
      if (err) reject(err); else resolve(msg!);
    };
    const onAbort = () => stop(new CheckFailure(`dns ${ctx.host}:${ctx.port}/udp: ${reasonText(ctx.signal)}`));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    sock.on("error", (e: NodeJS.ErrnoException) => stop(new CheckFailure(`dns ${ctx.host}:${ctx.port}/udp: ${e.code ?? e.message}`)));
    sock.on("message", (msg, rinfo) => {
      // Only the real's own answer to this query counts.
      if (rinfo.port !== ctx.port || msg.length < 2 || msg.readUInt16BE(0) !== id) return;
      stop(null, msg);
    });
    sock.connect(ctx.port, ctx.host, () => sock.send(query));
  });
}

async function tcpExchange(ctx: ProbeContext, query: Buffer): Promise<Buffer> {
  const sock = await openSocket({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "dns/tcp" });
  try {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(query.length);
    sock.write(Buffer.concat([len, query]));
    return await new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      sock.on("data", (b: Buffer) => {
        buf = Buffer.concat([buf, b]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
      sock.once("close", () => reject(new CheckFailure(`dns ${ctx.host}:${ctx.port}/tcp: ${ctx.signal.aborted ? reasonText(ctx.signal) : "closed before a full reply"}`)));
    });
  } finally {
    sock.destroy();
  }
}

export async function dnsCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const q = queryName(ctx.request);
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, q.name, q.type);
  const tcp = ctx.target.vs.protocol === "tcp";
  const reply = decodeResponse(tcp ? await tcpExchange(ctx, query) : await udpExchange(ctx, query, id), id);
  if (reply.rcode !== 0) return fail(`dns ${q.name}: ${RCODES[reply.rcode] ?? `rcode ${reply.rcode}`}`);
  const wanted = reply.answers.filter((a) => (q.type === TYPE_PTR ? a.type === TYPE_PTR : a.type !== TYPE_PTR));
  if (wanted.length === 0) return fail(`dns ${q.name}: no ${q.type === TYPE_PTR ? "PTR" : "A"} answer${reply.truncated ? " (truncated reply over udp)" : ""}`);
  if (!ctx.receive) return pass({ matched: wanted[0].value });
  const match = receiveMatcher(ctx.receive);
  for (const a of wanted) {
    const m = match(a.value);
    if (m !== null) return pass({ matched: a.value });
  }
  return fail(`dns ${q.name}: answers ${wanted.map((a) => a.value).join(", ").slice(0, 120)} do not match ${JSON.stringify(ctx.receive)}`);
}
