// Secrets: read from files (never from argv, which every local user can see in /proc), and kept
// out of logs, events, the audit history and `config check --json` output.
//
// Two layers of redaction:
//  - by key: values under keys such as passwd, password, secret, login, token, seed are replaced
//    wherever they sit in an object (redactSecrets);
//  - by value: every secret read through this module is registered, and scrubKnownSecrets()
//    replaces it in any text (a log line, a serialized event), whatever key or message carries it.
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import type { Authenticator, TlsOptions } from "@nats-io/nats-core";
import { nkeyAuthenticator, nkeys } from "@nats-io/nats-core";

export const REDACTED = "[redacted]";

/** Shorter values are not scrubbed from free text: replacing "ab" everywhere would garble logs. */
export const MIN_SCRUB_LENGTH = 6;

export class SecretError extends Error {}

// ---- the registry of known secret values -------------------------------------------------

const known = new Set<string>();
let pattern: RegExp | null = null;

/** Registers a secret value so scrubKnownSecrets() removes it from logs and events. */
export function registerSecret(value: string | null | undefined): void {
  if (!value || value.length < MIN_SCRUB_LENGTH || known.has(value)) return;
  known.add(value);
  // Also its JSON-escaped form, so a secret with quotes or backslashes is found inside JSON text.
  const escaped = JSON.stringify(value).slice(1, -1);
  if (escaped !== value) known.add(escaped);
  // Longest first: a secret that contains another is replaced whole.
  const alts = [...known].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  pattern = new RegExp(alts.join("|"), "g");
}

/** How many secret values are registered (for tests and diagnostics; never the values). */
export function knownSecretCount(): number {
  return known.size;
}

/** Replaces every registered secret value in `text`. Cheap when none is registered. */
export function scrubKnownSecrets(text: string): string {
  if (!pattern) return text;
  pattern.lastIndex = 0;
  return pattern.test(text) ? text.replace(pattern, REDACTED) : text;
}

// ---- reading secrets ----------------------------------------------------------------------

/** Reads a secret from a file: its content without the final newline. Missing or empty: a clear error. */
export function readSecretFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new SecretError(`cannot read secret file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (!value.trim()) throw new SecretError(`secret file ${path} is empty`);
  registerSecret(value);
  return value;
}

/** A warning when a secret file is readable by group or others (as ssh says of private keys), else null. */
export function secretFileWarning(path: string): string | null {
  try {
    const mode = statSync(path).mode & 0o777;
    return mode & 0o077 ? `secret file ${path} is readable by group or others (mode ${mode.toString(8)}); chmod 600 it` : null;
  } catch {
    return null;
  }
}

type Env = Record<string, string | undefined>;

/** A secret from the environment: `NAME_FILE` (a path to read) wins over `NAME` (the value itself). */
export function envSecret(env: Env, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readSecretFile(file);
  const v = env[name];
  if (v) registerSecret(v);
  return v || undefined;
}

// ---- NATS ---------------------------------------------------------------------------------

/** What a NATS client needs to authenticate, merged into connect() options. */
export interface NatsAuth {
  authenticator?: Authenticator;
  user?: string;
  pass?: string;
  tls?: TlsOptions;
  /** For logs: "nkey UABC…", "user prober-lb1", "none" (never the secret). */
  describe: string;
}

/** Reads an nkey seed file (as `lvsflow security init` writes it) into an authenticator. */
export function nkeyAuthFromFile(path: string): { authenticator: Authenticator; publicKey: string } {
  const seed = readSecretFile(path).trim();
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
  } catch (e) {
    throw new SecretError(`${path} does not hold an nkey seed (SU…): ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!publicKey.startsWith("U")) throw new SecretError(`${path} holds a seed for ${publicKey[0]}-keys; NATS clients need a user seed (SU…)`);
  const bytes = new TextEncoder().encode(seed);
  return { authenticator: nkeyAuthenticator(bytes), publicKey };
}

/**
 * NATS credentials and TLS from the environment:
 *   LVSFLOW_NATS_NKEY_FILE                 nkey seed file (preferred; the server holds only public keys)
 *   LVSFLOW_NATS_USER, LVSFLOW_NATS_PASS[_FILE]   user and password
 *   LVSFLOW_NATS_TLS_CA, LVSFLOW_NATS_TLS_CERT, LVSFLOW_NATS_TLS_KEY   TLS (CA to verify the server; cert+key for mutual TLS)
 */
export function natsAuthFromEnv(env: Env = process.env): NatsAuth {
  const auth: NatsAuth = { describe: "none" };
  if (env.LVSFLOW_NATS_NKEY_FILE) {
    const { authenticator, publicKey } = nkeyAuthFromFile(env.LVSFLOW_NATS_NKEY_FILE);
    auth.authenticator = authenticator;
    auth.describe = `nkey ${publicKey}`;
  } else if (env.LVSFLOW_NATS_USER) {
    auth.user = env.LVSFLOW_NATS_USER;
    auth.pass = envSecret(env, "LVSFLOW_NATS_PASS");
    auth.describe = `user ${auth.user}`;
  }
  const tls = tlsFiles(env, "LVSFLOW_NATS_TLS");
  if (tls) auth.tls = { ...(tls.ca ? { caFile: tls.ca } : {}), ...(tls.cert ? { certFile: tls.cert } : {}), ...(tls.key ? { keyFile: tls.key } : {}) };
  if (tls) auth.describe += " over TLS";
  return auth;
}

/** The connect() options of a NatsAuth (without its description). */
export function natsConnectOptions(auth: NatsAuth | undefined): { authenticator?: Authenticator; user?: string; pass?: string; tls?: TlsOptions } {
  if (!auth) return {};
  const { describe: _d, ...rest } = auth;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

// ---- Redis --------------------------------------------------------------------------------

export interface RedisAuth { username?: string; password?: string; tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer } }

/**
 * Redis ACL user and TLS from the environment:
 *   LVSFLOW_REDIS_USER, LVSFLOW_REDIS_PASS[_FILE]
 *   LVSFLOW_REDIS_TLS_CA, LVSFLOW_REDIS_TLS_CERT, LVSFLOW_REDIS_TLS_KEY  (or a rediss:// URL for TLS with system CAs)
 */
export function redisAuthFromEnv(env: Env = process.env): RedisAuth {
  const auth: RedisAuth = {};
  if (env.LVSFLOW_REDIS_USER) auth.username = env.LVSFLOW_REDIS_USER;
  const pass = envSecret(env, "LVSFLOW_REDIS_PASS");
  if (pass) auth.password = pass;
  const tls = tlsFiles(env, "LVSFLOW_REDIS_TLS");
  if (tls) {
    auth.tls = {};
    if (tls.ca) auth.tls.ca = readFileSync(tls.ca);
    if (tls.cert) auth.tls.cert = readFileSync(tls.cert);
    if (tls.key) auth.tls.key = readFileSync(tls.key);
  }
  return auth;
}

function tlsFiles(env: Env, prefix: string): { ca?: string; cert?: string; key?: string } | null {
  const ca = env[`${prefix}_CA`], cert = env[`${prefix}_CERT`], key = env[`${prefix}_KEY`];
  if (!ca && !cert && !key) return null;
  if (!!cert !== !!key) throw new SecretError(`${prefix}_CERT and ${prefix}_KEY go together (client certificate and its key)`);
  return { ca, cert, key };
}

// ---- redaction by key ---------------------------------------------------------------------

const SECRET_WORDS = new Set(["passwd", "password", "pass", "secret", "login", "token", "seed", "credential", "credentials", "apikey"]);

/**
 * Whether a key names a secret: its last word is passwd/password/pass/secret/login/token/seed/…
 * (`radiusSecret`, `auth_pass`, `LVSFLOW_NATS_PASS`), or it ends in "private key". A key such as
 * `passwdFile` (a path) or `user` is not secret.
 */
export function isSecretKey(key: string): boolean {
  const words = key.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  const last = words.at(-1) ?? "";
  if (SECRET_WORDS.has(last)) return true;
  const two = words.slice(-2).join("");
  return two === "privatekey" || two === "apikey" || two === "authpass";
}

/** `scheme://user:password@host` → `scheme://user:[redacted]@host`; other text unchanged. */
export function redactUrl(url: string): string {
  return url.replace(/([a-z][a-z0-9+.-]*:\/\/[^/:@\s]*):[^@/\s]*@/gi, `$1:${REDACTED}@`);
}

/**
 * A deep copy of `value` with secret-keyed values replaced, passwords in URLs masked and known
 * secret values scrubbed from every string. For `config check --json`, events and diagnostics.
 */
export function redactSecrets<T>(value: T): T {
  return walk(value, 0) as T;
}

function walk(v: unknown, depth: number): unknown {
  if (depth > 64) return REDACTED; // a cyclic or absurdly deep object: nothing to print safely
  if (typeof v === "string") return scrubKnownSecrets(redactUrl(v));
  if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    // Secrets are strings: a number under such a key (global.hashSeed) is not one.
    for (const [k, x] of Object.entries(v)) out[k] = isSecretKey(k) && typeof x === "string" && x !== "" ? REDACTED : walk(x, depth + 1);
    return out;
  }
  return v;
}

/** Registers every string under a secret key of `value` (a configuration model: probe passwords, RADIUS secrets). */
export function registerModelSecrets(value: unknown, depth = 0): void {
  if (depth > 64 || !value || typeof value !== "object") return;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "string" && isSecretKey(k)) registerSecret(v);
    else registerModelSecrets(v, depth + 1);
  }
}

/** A problem with a credential file of a virtual service's check, for a configuration diagnostic. */
export interface CredentialFileProblem { file: string; line: number; directive: string; message: string }

/**
 * Fills check.login/passwd/secret from check.loginFile/passwdFile/secretFile (relative paths are
 * relative to the file that defines the virtual service). Giving both forms is a problem, and so is
 * a file that cannot be read or is empty. Mutates the checks; returns the problems.
 */
export function resolveCredentialFiles(vss: { id: string; check: Record<string, unknown>; source?: { file: string; line: number } | null }[]): CredentialFileProblem[] {
  const problems: CredentialFileProblem[] = [];
  for (const vs of vss) {
    for (const key of ["login", "passwd", "secret"] as const) {
      const path = vs.check[`${key}File`];
      if (typeof path !== "string" || !path) continue;
      const at = { file: vs.source?.file ?? "(configuration)", line: vs.source?.line ?? 1, directive: `${vs.id} check.${key}File` };
      if (typeof vs.check[key] === "string") { problems.push({ ...at, message: `give ${key} or ${key}File, not both` }); continue; }
      const full = isAbsolute(path) || !vs.source ? path : join(dirname(vs.source.file), path);
      try {
        vs.check[key] = readSecretFile(full);
      } catch (e) {
        problems.push({ ...at, message: e instanceof Error ? e.message : String(e) });
      }
    }
  }
  return problems;
}

/** pino `redact` paths for the secret keys, at the top level and two levels down. */
export const LOG_REDACT_PATHS: string[] = ["passwd", "password", "pass", "secret", "login", "token", "seed", "authPass", "auth_pass"]
  .flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);
