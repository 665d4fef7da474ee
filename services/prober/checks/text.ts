// The text protocols ldirectord negotiates with a plain session (reference §1.6):
// smtp/submission (Net::SMTP), pop/pops (Net::POP3), imap/imaps (Mail::IMAPClient), nntp (banner;
// lvsflow: GROUP <request> when a request is set),
// simpletcp (request → a line matching receive). pops and imaps use TLS from the first byte.
import { LineSession, type TlsOptions } from "./session.ts";
import { CheckFailure, fail, pass, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";
import { hostname } from "node:os";
import { isIP } from "node:net";

/** TLS for pops/imaps/ldaps: verification as configured (ldirectord: none), SNI from virtualhost. */
export function tlsFor(ctx: ProbeContext): TlsOptions {
  const vh = ctx.check.virtualhost?.replace(/^\[(.*)\]$/, "$1").replace(/:\d+$/, "") ?? "";
  return { rejectUnauthorized: ctx.check.tlsVerify, servername: vh && isIP(vh) === 0 ? vh : undefined };
}

function open(ctx: ProbeContext, label: string, tls: boolean): Promise<LineSession> {
  return LineSession.open({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, tls: tls ? tlsFor(ctx) : null, label });
}

const short = (s: string) => JSON.stringify(s.slice(0, 120));

/**
 * Ends the session the polite way and waits for the answer (errors ignored): servers that see a
 * client vanish mid-session may keep per-user locks for a while (dovecot's pop3 does).
 */
async function quit(s: LineSession, command: string): Promise<void> {
  s.write(command);
  try { await s.readLine(); } catch { /* the server closed first: fine */ }
}

/** SMTP: a 220 greeting and a 250 answer to EHLO (HELO if EHLO is refused), then QUIT. */
export async function smtpCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const s = await open(ctx, ctx.check.service, false);
  try {
    const greet = await s.readReply();
    if (greet.code !== 220) return fail(`greeting ${short(greet.lines.join(" "))}`);
    const name = hostname().replace(/[^A-Za-z0-9.-]/g, "") || "lvsflow-prober";
    s.write(`EHLO ${name}\r\n`);
    let hello = await s.readReply();
    if (hello.code >= 500) {
      s.write(`HELO ${name}\r\n`);
      hello = await s.readReply();
    }
    if (hello.code !== 250) return fail(`EHLO/HELO refused: ${short(hello.lines.join(" "))}`);
    await quit(s, "QUIT\r\n");
    return pass({ matched: greet.lines[0].slice(0, 200) });
  } finally {
    s.close();
  }
}

/** POP3: +OK greeting, and USER/PASS accepted when a login is configured. */
export async function popCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const s = await open(ctx, ctx.check.service, ctx.check.service === "pops");
  try {
    const greet = await s.readLine();
    if (!greet.startsWith("+OK")) return fail(`greeting ${short(greet)}`);
    const { login, passwd } = ctx.check;
    if (login) {
      s.write(`USER ${login}\r\n`);
      const u = await s.readLine();
      if (!u.startsWith("+OK")) return fail("USER refused");
      s.write(`PASS ${passwd ?? ""}\r\n`);
      const p = await s.readLine();
      // The server's text may echo the user; never the password. Keep it short anyway.
      if (!p.startsWith("+OK")) return fail(`login as ${JSON.stringify(login)} refused`);
    }
    await quit(s, "QUIT\r\n");
    return pass({ matched: greet.slice(0, 200) });
  } finally {
    s.close();
  }
}

/** An IMAP quoted string (RFC 3501): backslash and double quote escaped. */
export function imapQuote(v: string): string {
  if (/[\r\n\0]/.test(v)) throw new CheckFailure("login/passwd may not contain CR, LF or NUL for IMAP");
  return `"${v.replace(/["\\]/g, (c) => "\\" + c)}"`;
}

/** IMAP: an untagged OK/PREAUTH greeting, and LOGIN accepted when a login is configured. */
export async function imapCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const s = await open(ctx, ctx.check.service, ctx.check.service === "imaps");
  try {
    const greet = await s.readLine();
    if (!/^\* (OK|PREAUTH)\b/i.test(greet)) return fail(`greeting ${short(greet)}`);
    const { login, passwd } = ctx.check;
    if (login) {
      s.write(`a1 LOGIN ${imapQuote(login)} ${imapQuote(passwd ?? "")}\r\n`);
      let loggedIn = false;
      for (let i = 0; i < 1000 && !loggedIn; i++) {
        const line = await s.readLine();
        if (line.startsWith("*")) continue; // untagged data (capabilities) before the tagged answer
        if (!/^a1 OK\b/i.test(line)) return fail(`login as ${JSON.stringify(login)} refused`);
        loggedIn = true;
      }
      // Only a tagged OK is a login; a server that never sends one has not let us in.
      if (!loggedIn) return fail(`login as ${JSON.stringify(login)}: no tagged answer in 1000 lines`);
    }
    await quit(s, "a2 LOGOUT\r\n");
    return pass({ matched: greet.slice(0, 200) });
  } finally {
    s.close();
  }
}

/** An NNTP newsgroup name as GROUP takes it (RFC 3977 §4.1: printable US-ASCII, no spaces). */
export function nntpGroupName(request: string): string {
  if (!/^[\x21-\x7e]{1,504}$/.test(request)) throw new CheckFailure(`request ${short(request)} is not a newsgroup name (printable ASCII, no spaces)`);
  return request;
}

/**
 * NNTP: the greeting starts with 2 (200 posting allowed, 201 not; 400/502 mean no service), as in
 * ldirectord. With a request (a newsgroup name; leading slashes dropped), that group must also be
 * selectable (GROUP → 211): a server whose spool or backend is broken still greets with 200.
 */
export async function nntpCheck(ctx: ProbeContext): Promise<ProtoResult> {
  // ldirectord's config puts a "/" before every request: "/" alone is its default, "no request".
  const name = ctx.request.replace(/^\/+/, "");
  const group = name ? nntpGroupName(name) : null;
  const s = await open(ctx, "nntp", false);
  try {
    const greet = await s.readLine();
    if (!greet.startsWith("2")) return fail(`greeting ${short(greet)}`);
    let matched = greet;
    if (group) {
      s.write(`GROUP ${group}\r\n`);
      matched = await s.readLine();
      if (!matched.startsWith("211 ")) return fail(`GROUP ${group}: ${short(matched)}`);
    }
    await quit(s, "QUIT\r\n");
    return pass({ matched: matched.slice(0, 200) });
  } finally {
    s.close();
  }
}

/** ldirectord expands the two characters \n in a simpletcp request into a newline. */
export function expandNewlines(request: string): string {
  return request.replace(/\\n/g, "\n");
}

/** simpletcp: send the request (if any), then some line of the reply must match receive. */
export async function simpletcpCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const s = await open(ctx, "simpletcp", false);
  try {
    // ldirectord's default request "/" means "nothing configured": send nothing then.
    const req = ctx.request === "/" ? "" : expandNewlines(ctx.request);
    if (req) s.write(req);
    const match = receiveMatcher(ctx.receive);
    for (let i = 0; i < 1000; i++) {
      let line: string;
      try {
        line = await s.readLine();
      } catch (e) {
        if (i > 0 && e instanceof CheckFailure && /closed by the server/.test(e.message)) return fail(`no reply line matches ${short(ctx.receive)}`);
        throw e;
      }
      if (!ctx.receive) return pass({ matched: line.slice(0, 200) });
      const m = match(line);
      if (m !== null) return pass({ matched: m.slice(0, 200) });
    }
    return fail(`no reply line matches ${short(ctx.receive)} in 1000 lines`);
  } finally {
    s.close();
  }
}
