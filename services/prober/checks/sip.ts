// service sip (ldirectord check_sip): an OPTIONS request to sip:<login> over udp (udp virtual
// service) or tcp; up on a "SIP/2.0 200 OK" status line. login defaults to lvsflow@<hostname>.
import { hostname } from "node:os";
import { isIP } from "node:net";
import { randomBytes } from "node:crypto";
import { LineSession } from "./session.ts";
import { udpRequest } from "./udp.ts";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

export function sipOptions(login: string, local: string, localPort: number, transport: "UDP" | "TCP"): string {
  const host = isIP(local) === 6 ? `[${local}]` : local;
  const tag = randomBytes(6).toString("hex");
  return [
    `OPTIONS sip:${login} SIP/2.0`,
    `Via: SIP/2.0/${transport} ${host}:${localPort};branch=z9hG4bK${randomBytes(8).toString("hex")};rport`,
    "Max-Forwards: 70",
    `To: <sip:${login}>`,
    `From: <sip:${login}>;tag=${tag}`,
    `Call-ID: ${randomBytes(12).toString("hex")}@${host}`,
    "CSeq: 1 OPTIONS",
    `Contact: <sip:${login}>`,
    "Accept: application/sdp",
    "Content-Length: 0",
    "", "",
  ].join("\r\n");
}

export async function sipCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const login = ctx.check.login || `lvsflow@${hostname()}`;
  if (/[\s<>]/.test(login)) throw new CheckFailure("sip login may not contain spaces or angle brackets");
  let status: string;
  if (ctx.target.vs.protocol === "udp") {
    const reply = await udpRequest(ctx.host, ctx.port, Buffer.alloc(0), ctx.signal, "sip",
      (m) => m.subarray(0, 8).toString("latin1") === "SIP/2.0 ",
      (addr, port) => Buffer.from(sipOptions(login, addr, port, "UDP"), "latin1"));
    status = reply.toString("latin1").split("\r\n", 1)[0];
  } else {
    const s = await LineSession.open({ host: ctx.host, port: ctx.port, connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: ctx.timeoutMs, signal: ctx.signal, label: "sip" });
    try {
      s.write(sipOptions(login, "0.0.0.0", 0, "TCP"));
      status = await s.readLine();
    } finally {
      s.close();
    }
  }
  return /^SIP\/2\.0 200 OK/.test(status) ? pass({ matched: status.slice(0, 200) }) : fail(`OPTIONS sip:${login}: ${JSON.stringify(status.slice(0, 120))}`);
}
