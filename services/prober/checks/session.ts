// A line-oriented client session over TCP or TLS for the text protocols (SMTP, POP, IMAP, NNTP,
// FTP, simpletcp). Every wait is bounded: the socket is destroyed when the check's signal fires,
// the connect has its own deadline, and a peer that floods without newlines is cut off.
import { connect as tcpConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { CheckFailure, reasonText } from "./types.ts";

/** Longest line (or unterminated tail) accepted from a server. */
const MAX_LINE = 16 * 1024;

export interface TlsOptions { servername?: string; rejectUnauthorized: boolean }

export interface OpenOptions {
  host: string; port: number; connectTimeoutMs: number; signal: AbortSignal; tls?: TlsOptions | null; label: string;
  /** The attempt's own deadline; no separate connect timer is armed when it is not shorter. */
  timeoutMs?: number;
}

export function where(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** Connects (TCP, or TLS when `tls` is set) within connectTimeoutMs; the socket dies with the signal. */
export function openSocket(o: OpenOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (o.signal.aborted) return reject(new CheckFailure(reasonText(o.signal)));
    const at = `${o.label} ${where(o.host, o.port)}`;
    const sock: Socket = o.tls
      ? tlsConnect({ host: o.host, port: o.port, rejectUnauthorized: o.tls.rejectUnauthorized, ...(o.tls.servername ? { servername: o.tls.servername } : {}) })
      : tcpConnect({ host: o.host, port: o.port });
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { sock.destroy(); reject(err); } else resolve(sock);
    };
    const timer = o.timeoutMs !== undefined && o.connectTimeoutMs >= o.timeoutMs ? undefined
      : setTimeout(() => finish(new CheckFailure(`${at}: connect timeout after ${o.connectTimeoutMs / 1000}s`)), o.connectTimeoutMs);
    // Destroy on the check's deadline whatever phase the session is in.
    const onAbort = () => { sock.destroy(); finish(new CheckFailure(`${at}: ${reasonText(o.signal)}`)); };
    o.signal.addEventListener("abort", onAbort, { once: true });
    sock.once("close", () => o.signal.removeEventListener("abort", onAbort));
    sock.once(o.tls ? "secureConnect" : "connect", () => finish(null));
    // `on`, not `once`: a late second error on a destroyed socket must not become an uncaught one.
    sock.on("error", (e: NodeJS.ErrnoException) => finish(new CheckFailure(`${at}: ${e.code ?? e.message}`)));
  });
}

export class LineSession {
  private buf = "";
  private waiter: { resolve: (l: string) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;

  private constructor(private sock: Socket, private readonly at: string, private readonly signal: AbortSignal) {
    this.attach(sock);
  }

  static async open(o: OpenOptions): Promise<LineSession> {
    const sock = await openSocket(o);
    return new LineSession(sock, `${o.label} ${where(o.host, o.port)}`, o.signal);
  }

  private attach(sock: Socket): void {
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => {
      this.buf += d;
      if (this.buf.length > MAX_LINE && !this.buf.includes("\n")) this.die(new CheckFailure(`${this.at}: line longer than ${MAX_LINE} bytes`));
      this.pump();
    });
    sock.on("error", (e: NodeJS.ErrnoException) => this.die(new CheckFailure(`${this.at}: ${e.code ?? e.message}`)));
    sock.on("close", () => this.die(new CheckFailure(this.signal.aborted ? `${this.at}: ${reasonText(this.signal)}` : `${this.at}: connection closed by the server`)));
  }

  private die(e: Error): void {
    if (!this.ended) this.ended = e;
    this.sock.destroy();
    this.pump();
  }

  private pump(): void {
    if (!this.waiter) return;
    const nl = this.buf.indexOf("\n");
    if (nl >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, "");
      this.buf = this.buf.slice(nl + 1);
      const w = this.waiter;
      this.waiter = null;
      w.resolve(line);
    } else if (this.ended) {
      const w = this.waiter;
      this.waiter = null;
      // An unterminated last line before the close is still a line.
      if (this.buf.length) { const tail = this.buf; this.buf = ""; w.resolve(tail.replace(/\r$/, "")); }
      else w.reject(this.ended);
    }
  }

  /** The next line without its CR LF; rejects when the connection ends first. */
  readLine(): Promise<string> {
    if (this.waiter) return Promise.reject(new Error("readLine while another read is pending"));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.pump();
    });
  }

  /** A reply of the SMTP/FTP/NNTP kind: "250-…" continuation lines up to "250 …"; returns all lines. */
  async readReply(): Promise<{ code: number; lines: string[] }> {
    const lines: string[] = [];
    for (let i = 0; i < 200; i++) {
      const line = await this.readLine();
      lines.push(line);
      const m = /^(\d{3})([ -]?)/.exec(line);
      if (!m) throw new CheckFailure(`${this.at}: unexpected reply ${JSON.stringify(line.slice(0, 80))}`);
      if (m[2] !== "-") return { code: Number(m[1]), lines };
    }
    throw new CheckFailure(`${this.at}: reply longer than 200 lines`);
  }

  write(s: string): void {
    this.sock.write(s, "latin1");
  }

  /** Everything until the server closes (FTP data connection), bounded to `max` bytes. */
  static readAll(sock: Socket, max: number, signal: AbortSignal): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => resolve(Buffer.concat(chunks, Math.min(size, max)));
      sock.on("data", (b: Buffer) => {
        chunks.push(b);
        size += b.length;
        if (size >= max) { sock.destroy(); done(); }
      });
      sock.once("end", done);
      sock.on("error", (e: NodeJS.ErrnoException) => reject(new CheckFailure(`data connection: ${e.code ?? e.message}`)));
      sock.once("close", () => (signal.aborted ? reject(new CheckFailure(reasonText(signal))) : done()));
    });
  }

  /** STARTTLS: wraps the connected socket in TLS and continues the session on it. */
  async startTls(tls: TlsOptions, host: string): Promise<void> {
    const plain = this.sock;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    const secured = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: plain, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername || (isIP(host) ? undefined : host) });
      s.once("secureConnect", () => resolve(s));
      s.on("error", (e: NodeJS.ErrnoException) => reject(new CheckFailure(`${this.at}: STARTTLS: ${e.code ?? e.message}`)));
    });
    this.sock = secured;
    this.buf = "";
    this.signal.addEventListener("abort", () => secured.destroy(), { once: true });
    this.attach(secured);
  }

  close(): void {
    this.sock.destroy();
  }
}
