// service radius (ldirectord: Authen::Radius check_pwd(login, passwd) with `secret`): an
// Access-Request; any correctly signed reply counts as up, an Access-Reject too (the server
// answered); no reply, or a reply signed with another secret, is down.
import { createHash, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { udpRequest } from "./udp.ts";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

const CODES: Record<number, string> = { 2: "Access-Accept", 3: "Access-Reject", 11: "Access-Challenge" };

function attr(type: number, value: Buffer): Buffer {
  if (value.length > 253) throw new CheckFailure(`radius attribute ${type} too long`);
  return Buffer.concat([Buffer.from([type, value.length + 2]), value]);
}

/** RFC 2865 §5.2 User-Password hiding. */
export function hidePassword(passwd: string, secret: string, authenticator: Buffer): Buffer {
  let p = Buffer.from(passwd, "utf8");
  if (p.length > 128) throw new CheckFailure("radius passwd longer than 128 bytes");
  const padded = Buffer.alloc(Math.max(16, Math.ceil(p.length / 16) * 16));
  p.copy(padded);
  const out = Buffer.alloc(padded.length);
  let prev = authenticator;
  for (let i = 0; i < padded.length; i += 16) {
    const b = createHash("md5").update(secret, "utf8").update(prev).digest();
    for (let j = 0; j < 16; j++) out[i + j] = padded[i + j] ^ b[j];
    prev = out.subarray(i, i + 16);
  }
  p = out;
  return p;
}

export function accessRequest(id: number, authenticator: Buffer, login: string, passwd: string, secret: string, nasIp: string | null): Buffer {
  const attrs = [attr(1, Buffer.from(login, "utf8")), attr(2, hidePassword(passwd, secret, authenticator))];
  if (nasIp && isIP(nasIp) === 4) attrs.push(attr(4, Buffer.from(nasIp.split(".").map(Number))));
  const body = Buffer.concat(attrs);
  const hdr = Buffer.alloc(20);
  hdr[0] = 1;
  hdr[1] = id;
  hdr.writeUInt16BE(20 + body.length, 2);
  authenticator.copy(hdr, 4);
  return Buffer.concat([hdr, body]);
}

/** The reply's authenticator must be MD5(code+id+length+request authenticator+attributes+secret). */
export function replySigned(reply: Buffer, requestAuth: Buffer, secret: string): boolean {
  if (reply.length < 20) return false;
  const len = reply.readUInt16BE(2);
  if (len < 20 || len > reply.length) return false;
  const expect = createHash("md5").update(reply.subarray(0, 4)).update(requestAuth).update(reply.subarray(20, len)).update(secret, "utf8").digest();
  return expect.equals(reply.subarray(4, 20));
}

export async function radiusCheck(ctx: ProbeContext): Promise<ProtoResult> {
  const secret = ctx.check.secret;
  if (!secret) return fail("radius check needs a secret");
  const id = randomBytes(1)[0];
  const auth = randomBytes(16);
  const req = accessRequest(id, auth, ctx.check.login ?? "", ctx.check.passwd ?? "", secret, null);
  let unsigned = false;
  const reply = await udpRequest(ctx.host, ctx.port, req, ctx.signal, "radius", (m) => {
    if (m.length < 20 || m[1] !== id) return false;
    if (!replySigned(m, auth, secret)) { unsigned = true; return false; }
    return true;
  }).catch((e: unknown) => {
    // Keep waiting for a signed reply until the deadline, then say why there was none.
    if (unsigned && e instanceof CheckFailure) throw new CheckFailure(`${e.message}; a reply came with a wrong authenticator (check the secret)`);
    throw e;
  });
  return pass({ matched: CODES[reply[0]] ?? `code ${reply[0]}` });
}
