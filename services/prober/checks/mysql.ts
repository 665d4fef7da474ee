// service mysql (ldirectord: DBI connect with login/passwd/database, then the request as a query;
// up if it returns at least one row). The MySQL/MariaDB client protocol over TCP: the server's
// handshake, HandshakeResponse41 with mysql_native_password (also after an auth switch), one
// COM_QUERY counting rows, COM_QUIT. With a deadline, unlike ldirectord's SQL checks.
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { openSocket } from "./session.ts";
import { CheckFailure, fail, pass, reasonText, type ProbeContext, type ProtoResult } from "./types.ts";

const CLIENT_LONG_PASSWORD = 0x1, CLIENT_CONNECT_WITH_DB = 0x8, CLIENT_PROTOCOL_41 = 0x200, CLIENT_TRANSACTIONS = 0x2000,
  CLIENT_SECURE_CONNECTION = 0x8000, CLIENT_PLUGIN_AUTH = 0x80000;

/** mysql_native_password: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty for no password. */
export function nativePassword(password: string, scramble: Buffer): Buffer {
  if (!password) return Buffer.alloc(0);
  const sha1 = (b: Buffer | string) => createHash("sha1").update(b).digest();
  const p1 = sha1(password);
  const p2 = sha1(Buffer.concat([scramble.subarray(0, 20), sha1(p1)]));
  return Buffer.from(p1.map((b, i) => b ^ p2[i]));
}

interface Packet { seq: number; body: Buffer }

function reader(sock: Socket, signal: AbortSignal) {
  let buf: Buffer = Buffer.alloc(0);
  const queue: Packet[] = [];
  let waiting: { resolve: (p: Packet) => void; reject: (e: Error) => void } | null = null;
  let ended: Error | null = null;
  const pump = () => {
    while (buf.length >= 4) {
      const n = buf.readUIntLE(0, 3);
      if (buf.length < 4 + n) break;
      queue.push({ seq: buf[3], body: buf.subarray(4, 4 + n) });
      buf = buf.subarray(4 + n);
    }
    if (buf.length > 1024 * 1024) { ended = new CheckFailure("mysql: oversized packet"); sock.destroy(); }
    if (waiting && queue.length) { const w = waiting; waiting = null; w.resolve(queue.shift()!); }
    else if (waiting && ended) { const w = waiting; waiting = null; w.reject(ended); }
  };
  sock.on("data", (d: Buffer) => { buf = buf.length ? Buffer.concat([buf, d]) : d; pump(); });
  sock.on("close", () => { ended ??= new CheckFailure(signal.aborted ? `mysql: ${reasonText(signal)}` : "mysql: connection closed by the server"); pump(); });
  return () => new Promise<Packet>((resolve, reject) => { waiting = { resolve, reject }; pump(); });
}

function packet(seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUIntLE(body.length, 0, 3);
  h[3] = seq & 0xff;
  return Buffer.concat([h, body]);
}

/** An ERR packet's code and message, without control characters. */
export function errText(body: Buffer): string {
  const code = body.length >= 3 ? body.readUInt16LE(1) : 0;
  const msg = body.subarray(body[3] === 0x23 ? 9 : 3).toString("utf8").replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, 200);
  return `${code} ${msg}`;
}

/** The server's initial handshake (protocol 10): its scramble and auth plugin. */
export function parseHandshake(b: Buffer): { scramble: Buffer; plugin: string } {
  if (b[0] === 0xff) throw new CheckFailure(`mysql: ${errText(b)}`);
  if (b[0] !== 10) throw new CheckFailure("mysql: not a MySQL protocol 10 handshake");
  let p = b.indexOf(0, 1) + 1; // server version
  if (p <= 0 || p + 13 > b.length) throw new CheckFailure("mysql: truncated handshake");
  p += 4; // thread id
  const part1 = b.subarray(p, p + 8);
  p += 9; // + filler
  p += 2 + 1 + 2 + 2; // capabilities low, charset, status, capabilities high
  const authLen = b[p];
  p += 1 + 10;
  const len2 = Math.max(13, authLen - 8);
  const part2 = b.subarray(p, p + len2 - 1); // without its trailing NUL
  p += len2;
  const end = b.indexOf(0, p);
  const plugin = p < b.length ? b.subarray(p, end < 0 ? b.length : end).toString("latin1") : "mysql_native_password";
  return { scramble: Buffer.concat([part1, part2]), plugin };
}

export async function mysqlCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const { login, passwd, database } = ctx.check;
  const query = ctx.request.replace(/^\/+/, "").trim();
  if (!login || !database) return fail("mysql check needs login and database");
  if (!query) return fail("mysql check needs a query as request (e.g. SELECT 1)");
  const sock = await openSocket({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "mysql" });
  try {
    const next = reader(sock, ctx.signal);
    const hs = parseHandshake((await next()).body);
    const caps = CLIENT_LONG_PASSWORD | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    const auth = hs.plugin === "mysql_native_password" ? nativePassword(passwd ?? "", hs.scramble) : Buffer.alloc(0);
    const head = Buffer.alloc(32);
    head.writeUInt32LE(caps, 0);
    head.writeUInt32LE(16 * 1024 * 1024, 4);
    head[8] = 45; // utf8mb4_general_ci
    sock.write(packet(1, Buffer.concat([head, Buffer.from(login + "\0", "utf8"), Buffer.from([auth.length]), auth,
      Buffer.from(database + "\0", "utf8"), Buffer.from("mysql_native_password\0", "latin1")])));
    let seq = 2;
    for (let i = 0; i < 5; i++) {
      const r = await next();
      seq = r.seq + 1;
      if (r.body[0] === 0x00) break; // OK
      if (r.body[0] === 0xff) return fail(`mysql: ${errText(r.body)}`);
      if (r.body[0] === 0xfe) {
        // Auth switch: only mysql_native_password is spoken here.
        const end = r.body.indexOf(0, 1);
        const plugin = r.body.subarray(1, end).toString("latin1");
        if (plugin !== "mysql_native_password") return fail(`mysql: unsupported authentication plugin ${JSON.stringify(plugin.slice(0, 40))}`);
        sock.write(packet(seq, nativePassword(passwd ?? "", r.body.subarray(end + 1))));
        continue;
      }
      return fail("mysql: unexpected reply during authentication");
    }
    sock.write(packet(0, Buffer.concat([Buffer.from([0x03]), Buffer.from(query, "utf8")])));
    const first = await next();
    if (first.body[0] === 0xff) return fail(`mysql query: ${errText(first.body)}`);
    if (first.body[0] === 0x00) return fail("mysql query returned no result set");
    // Column definitions up to an EOF, then rows up to the next EOF (or an ERR).
    let eofs = 0, rows = 0;
    for (let i = 0; i < 100_000 && eofs < 2; i++) {
      const p = await next();
      if (p.body[0] === 0xff) return fail(`mysql query: ${errText(p.body)}`);
      if (p.body[0] === 0xfe && p.body.length < 9) eofs++;
      else if (eofs === 1) rows++;
    }
    sock.write(packet(0, Buffer.from([0x01]))); // COM_QUIT
    return rows > 0 ? pass({ matched: `${rows} row${rows === 1 ? "" : "s"}` }) : fail("mysql query returned no rows");
  } finally {
    sock.destroy();
  }
}
