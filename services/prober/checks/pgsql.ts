// service pgsql (ldirectord: DBI connect with login/passwd/database, then the request as a query;
// up if it returns at least one row). PostgreSQL's frontend/backend protocol 3.0 over TCP:
// startup, authentication (trust, cleartext, md5, SCRAM-SHA-256), one simple Query, Terminate.
// Unlike ldirectord's SQL checks this one has a deadline like every other check.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { openSocket } from "./session.ts";
import { CheckFailure, fail, pass, reasonText, type ProbeContext, type ProtoResult } from "./types.ts";

const MAX_MESSAGE = 1024 * 1024;

function msg(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, "latin1");
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
const cstr = (s: string) => Buffer.from(s + "\0", "utf8");

export function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), cstr("user"), cstr(user), cstr("database"), cstr(database), cstr("application_name"), cstr("lvsflow-prober"), Buffer.from([0])]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4);
  return Buffer.concat([len, body]);
}

/** PostgreSQL's md5 password answer: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(Buffer.concat([Buffer.from(inner), salt])).digest("hex");
}

/** The SCRAM-SHA-256 client (RFC 5802 / 7677), without channel binding. */
export class Scram {
  readonly nonce = randomBytes(18).toString("base64");
  readonly clientFirstBare = `n=,r=${this.nonce}`;
  private serverSignature: Buffer | null = null;
  constructor(private readonly password: string) {}

  first(): string { return `n,,${this.clientFirstBare}`; }

  final(serverFirst: string): string {
    const a = Object.fromEntries(serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
    if (!a.r?.startsWith(this.nonce) || !a.s || !a.i) throw new CheckFailure("pgsql: malformed SCRAM server-first message");
    const iterations = Number(a.i);
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > 1_000_000) throw new CheckFailure("pgsql: SCRAM iteration count out of range");
    const salted = pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(a.s, "base64"), iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const withoutProof = `c=biws,r=${a.r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    this.serverSignature = createHmac("sha256", serverKey).update(authMessage).digest();
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  /** The server proves it knew the password too. */
  verify(serverFinal: string): boolean {
    const v = /(?:^|,)v=([^,]+)/.exec(serverFinal)?.[1];
    return !!v && !!this.serverSignature && Buffer.from(v, "base64").equals(this.serverSignature);
  }
}

interface Message { type: string; body: Buffer }

function reader(sock: Socket, signal: AbortSignal) {
  let buf: Buffer = Buffer.alloc(0);
  const queue: Message[] = [];
  let waiting: { resolve: (m: Message) => void; reject: (e: Error) => void } | null = null;
  let ended: Error | null = null;
  const pump = () => {
    while (buf.length >= 5) {
      const n = buf.readInt32BE(1);
      if (n < 4 || n > MAX_MESSAGE) { ended = new CheckFailure("pgsql: malformed or oversized message"); sock.destroy(); break; }
      if (buf.length < n + 1) break;
      queue.push({ type: String.fromCharCode(buf[0]), body: buf.subarray(5, n + 1) });
      buf = buf.subarray(n + 1);
    }
    if (waiting && queue.length) { const w = waiting; waiting = null; w.resolve(queue.shift()!); }
    else if (waiting && ended) { const w = waiting; waiting = null; w.reject(ended); }
  };
  sock.on("data", (d: Buffer) => { buf = buf.length ? Buffer.concat([buf, d]) : d; pump(); });
  sock.on("close", () => { ended ??= new CheckFailure(signal.aborted ? `pgsql: ${reasonText(signal)}` : "pgsql: connection closed by the server"); pump(); });
  return () => new Promise<Message>((resolve, reject) => { waiting = { resolve, reject }; pump(); });
}

/** An ErrorResponse's SQLSTATE and message (the server's text is trimmed and stripped of control characters). */
export function errorText(body: Buffer): string {
  const f: Record<string, string> = {};
  for (const part of body.toString("utf8").split("\0")) if (part) f[part[0]] = part.slice(1);
  return `${f.C ?? "?"} ${(f.M ?? "error").replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, 200)}`;
}

export async function pgsqlCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const { login, passwd, database } = ctx.check;
  const query = ctx.request.replace(/^\/+/, "").trim();
  if (!login || !database) return fail("pgsql check needs login and database");
  if (!query) return fail("pgsql check needs a query as request (e.g. SELECT 1)");
  const sock = await openSocket({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "pgsql" });
  try {
    const next = reader(sock, ctx.signal);
    sock.write(startupMessage(login, database));
    let scram: Scram | null = null;
    for (let i = 0; i < 50; i++) {
      const m = await next();
      if (m.type === "E") return fail(`pgsql: ${errorText(m.body)}`);
      if (m.type !== "R") continue;
      const code = m.body.readInt32BE(0);
      if (code === 0) break; // AuthenticationOk
      if (code === 3) sock.write(msg("p", cstr(passwd ?? "")));
      else if (code === 5) sock.write(msg("p", cstr(md5Password(login, passwd ?? "", m.body.subarray(4, 8)))));
      else if (code === 10) {
        const mechs = m.body.subarray(4).toString("utf8").split("\0");
        if (!mechs.includes("SCRAM-SHA-256")) return fail(`pgsql: no supported SASL mechanism (${mechs.filter(Boolean).join(", ").slice(0, 80)})`);
        scram = new Scram(passwd ?? "");
        const first = Buffer.from(scram.first(), "utf8");
        const len = Buffer.alloc(4);
        len.writeInt32BE(first.length);
        sock.write(msg("p", Buffer.concat([cstr("SCRAM-SHA-256"), len, first])));
      } else if (code === 11 && scram) sock.write(msg("p", Buffer.from(scram.final(m.body.subarray(4).toString("utf8")), "utf8")));
      else if (code === 12 && scram) { if (!scram.verify(m.body.subarray(4).toString("utf8"))) return fail("pgsql: the server's SCRAM signature is wrong"); }
      else return fail(`pgsql: unsupported authentication method ${code}`);
    }
    // Wait for ReadyForQuery, then run the request.
    for (let m = await next(); m.type !== "Z"; m = await next()) if (m.type === "E") return fail(`pgsql: ${errorText(m.body)}`);
    sock.write(msg("Q", cstr(query)));
    let rows = 0, error: string | null = null;
    for (let m = await next(); m.type !== "Z"; m = await next()) {
      if (m.type === "D") rows++;
      else if (m.type === "E") error = errorText(m.body);
    }
    sock.write(msg("X", Buffer.alloc(0)));
    if (error) return fail(`pgsql query: ${error}`);
    return rows > 0 ? pass({ matched: `${rows} row${rows === 1 ? "" : "s"}` }) : fail("pgsql query returned no rows");
  } finally {
    sock.destroy();
  }
}
