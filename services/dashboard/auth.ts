// Dashboard sessions: one shared operator password (from a file or the environment), a session
// cookie (HttpOnly, SameSite=Strict) plus a per-session token every state-changing request must
// echo in a header, and a limit on failed logins per client address. No clock of its own.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export interface Session { id: string; user: string; csrf: string; ip: string; expires: number }

export const COOKIE = "lvsflow_session";
/** Operator names are recorded in the audit history: keep them plain. */
export const USER_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export interface AuthOptions { password: string; ttlMs?: number; maxFailures?: number; failureWindowMs?: number; maxSessions?: number }

export class Auth {
  private sessions = new Map<string, Session>();
  private failures = new Map<string, number[]>();
  private readonly want: Buffer;
  private readonly ttlMs: number;
  private readonly maxFailures: number;
  private readonly windowMs: number;
  private readonly maxSessions: number;

  constructor(o: AuthOptions) {
    if (!o.password || o.password.length < 8) throw new Error("the dashboard password must have at least 8 characters");
    this.want = digest(o.password);
    this.ttlMs = o.ttlMs ?? 8 * 3600_000;
    this.maxFailures = o.maxFailures ?? 10;
    this.windowMs = o.failureWindowMs ?? 5 * 60_000;
    this.maxSessions = o.maxSessions ?? 1000;
  }

  /** Seconds to wait before this address may try again, or 0. */
  blockedFor(ip: string, now: number): number {
    const f = (this.failures.get(ip) ?? []).filter((t) => now - t < this.windowMs);
    this.failures.set(ip, f);
    return f.length >= this.maxFailures ? Math.ceil((f[0]! + this.windowMs - now) / 1000) : 0;
  }

  /** A new session, or why not. Comparing digests keeps the comparison's time independent of the input. */
  login(user: unknown, password: unknown, ip: string, now: number): Session | { error: string; status: number } {
    const wait = this.blockedFor(ip, now);
    if (wait) return { error: `too many failed logins from ${ip}: try again in ${wait} s`, status: 429 };
    if (typeof user !== "string" || !USER_RE.test(user)) return { error: "give your name (letters, digits, . _ @ -; it goes into the audit history)", status: 400 };
    if (typeof password !== "string" || !timingSafeEqual(digest(password), this.want)) {
      this.failures.get(ip)!.push(now);
      return { error: "wrong password", status: 401 };
    }
    this.failures.delete(ip);
    this.expire(now);
    if (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    const s: Session = { id: randomBytes(32).toString("base64url"), user, csrf: randomBytes(24).toString("base64url"), ip, expires: now + this.ttlMs };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The session a request's cookie names, still valid (and extended), or null. */
  session(cookieHeader: string | undefined, now: number): Session | null {
    const id = parseCookies(cookieHeader)[COOKIE];
    const s = id ? this.sessions.get(id) : undefined;
    if (!s) return null;
    if (s.expires <= now) { this.sessions.delete(s.id); return null; }
    s.expires = now + this.ttlMs;
    return s;
  }

  /** State-changing requests must echo the session's token: a cross-site form cannot. */
  csrfOk(s: Session, header: string | string[] | undefined): boolean {
    if (typeof header !== "string") return false;
    const a = digest(header), b = digest(s.csrf);
    return timingSafeEqual(a, b);
  }

  logout(s: Session): void { this.sessions.delete(s.id); }

  private expire(now: number): void {
    for (const [id, s] of this.sessions) if (s.expires <= now) this.sessions.delete(id);
  }
}

export function parseCookies(h: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (h ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export function sessionCookie(s: Session | null, ttlMs = 8 * 3600_000): string {
  return s ? `${COOKIE}=${s.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(ttlMs / 1000)}` : `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
}
