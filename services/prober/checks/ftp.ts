// service ftp (ldirectord: Net::FTP login, then `get <request>`; the file must match receive).
// Passive mode; the data connection goes to the real's own address whatever PASV names, so a
// misconfigured or hostile server cannot point the prober elsewhere.
import { hostname } from "node:os";
import { LineSession, openSocket } from "./session.ts";
import { CheckFailure, fail, pass, receiveMatcher, type ProbeContext, type ProtoResult } from "./types.ts";

const MAX_FILE = 64 * 1024;
const short = (s: string) => JSON.stringify(s.slice(0, 120));

export function parsePasv(line: string): number | null {
  const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(line) ?? /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(line);
  if (!m) return null;
  const port = Number(m[5]) * 256 + Number(m[6]);
  return port > 0 && port < 65536 ? port : null;
}

export async function ftpCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const s = await LineSession.open({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "ftp" });
  try {
    const greet = await s.readReply();
    if (greet.code !== 220) return fail(`greeting ${short(greet.lines.join(" "))}`);
    // ldirectord's defaults for service=ftp: anonymous, password ldirectord@<host>.
    const login = ctx.check.login || "anonymous";
    const passwd = ctx.check.passwd ?? `lvsflow@${hostname()}`;
    if (/[\r\n]/.test(login + passwd)) throw new CheckFailure("login/passwd may not contain CR or LF");
    s.write(`USER ${login}\r\n`);
    let r = await s.readReply();
    if (r.code === 331) {
      s.write(`PASS ${passwd}\r\n`);
      r = await s.readReply();
    }
    if (r.code !== 230) return fail(`login as ${JSON.stringify(login)} refused: ${short(r.lines.join(" "))}`);
    // No file to fetch: a successful login is the check.
    const path = ctx.request === "/" ? "" : ctx.request;
    if (!path) { s.write("QUIT\r\n"); return pass(); }
    if (/[\r\n]/.test(path)) throw new CheckFailure("request may not contain CR or LF");
    s.write("TYPE I\r\n");
    r = await s.readReply();
    if (r.code !== 200) return fail(`TYPE I refused (${r.code})`);
    s.write("PASV\r\n");
    r = await s.readReply();
    const dataPort = r.code === 227 ? parsePasv(r.lines.at(-1)!) : null;
    if (dataPort === null) return fail(`PASV refused or unreadable: ${short(r.lines.join(" "))}`);
    const data = await openSocket({ host: ctx.host, port: dataPort, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "ftp data" });
    try {
      const body = LineSession.readAll(data, MAX_FILE, ctx.signal);
      body.catch(() => {}); // awaited below only when RETR is accepted
      s.write(`RETR ${path}\r\n`);
      r = await s.readReply();
      if (r.code !== 150 && r.code !== 125) return fail(`RETR ${path}: ${short(r.lines.join(" "))}`);
      const content = (await body).toString("latin1");
      const done = await s.readReply();
      if (done.code !== 226 && done.code !== 250) return fail(`transfer of ${path} failed: ${short(done.lines.join(" "))}`);
      s.write("QUIT\r\n");
      if (!ctx.receive) return pass();
      const m = receiveMatcher(ctx.receive)(content);
      return m === null ? fail(`receive ${short(ctx.receive)} not found in ${path}`) : pass({ matched: m.slice(0, 200) });
    } finally {
      data.destroy();
    }
  } finally {
    s.close();
  }
}
