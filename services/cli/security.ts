// `lvsflow security init`: generates every credential a site needs and the server configurations
// that enforce them — an nkey per NATS identity (infra/nats/roles.ts), a password per Redis ACL
// user (infra/redis/acl.ts), optionally a CA and TLS certificates — plus one environment file per
// identity for the service that uses it. Existing keys are kept (adding a node does not rotate
// the others) unless --rotate.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, rmSync } from "node:fs";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { nkeys } from "@nats-io/nats-core";
import { identityId, siteIdentities, IDENTITY_NAME, type Identity } from "../../infra/nats/roles.ts";
import { renderNatsServerConf, type NatsTlsFiles } from "../../infra/nats/server-conf.ts";
import { renderAclFile, type RedisRole } from "../../infra/redis/acl.ts";

export interface SecurityInitOptions {
  /** Output directory (created 0700). */
  dir: string;
  site: string;
  /** LB node names: each gets a prober, controller, executor and node identity. */
  nodes: string[];
  probers?: string[];
  recorders?: string[];
  operators?: string[];
  /** Quorum witnesses (global.witnesses). */
  witnesses?: string[];
  /** nats-server listen address written into its configuration ("host:port"). */
  listen?: string;
  /** Generate a CA and a server certificate for these host names / addresses (and client certificates when verify). */
  tls?: { hosts: string[]; verify: boolean } | null;
  /** New keys and passwords even where some exist. */
  rotate?: boolean;
}

export interface RedisCredential { name: string; role: RedisRole; passFile: string; snapshotNode?: string }

/** The Redis role of a NATS identity: the recorder writes the history, operators read it, services keep configuration versions. */
export function redisRoleOf(i: Identity): RedisRole {
  return i.role === "recorder" ? "recorder" : i.role === "operator" ? "cli" : "service";
}

export interface SecurityLayout {
  dir: string;
  site: string;
  identities: Identity[];
  natsConf: string;
  redisAcl: string;
  redisUsers: RedisCredential[];
  tls: { ca: string; cert: string; key: string; verify: boolean } | null;
  nkeyFile(id: Identity | string): string;
  /** Environment of the service that runs as `id`: NATS nkey (and TLS), Redis user where its role uses Redis. */
  env(id: Identity | string): Record<string, string>;
  envFile(id: Identity | string): string;
}

const idOf = (id: Identity | string) => (typeof id === "string" ? id : identityId(id));

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600); // writeFileSync keeps the mode of an existing file
}

/** Host names and addresses go into an OpenSSL extension file: allow nothing else. */
function checkHost(h: string): string {
  if (isIP(h) || /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(h)) return h;
  throw new Error(`not a host name or IP address: ${JSON.stringify(h)}`);
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
}

/** A key and certificate signed by the CA (EC P-256), with the given subject alternative names. */
function issue(tlsDir: string, base: string, cn: string, sans: string[], usage: string): void {
  const key = join(tlsDir, `${base}.key`), csr = join(tlsDir, `${base}.csr`), ext = join(tlsDir, `${base}.ext`);
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`]);
  chmodSync(key, 0o600);
  const lines = [`extendedKeyUsage=${usage}`, "basicConstraints=critical,CA:FALSE"];
  if (sans.length) lines.push(`subjectAltName=${sans.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(",")}`);
  writeFileSync(ext, lines.join("\n") + "\n");
  openssl(["x509", "-req", "-in", csr, "-CA", join(tlsDir, "ca.crt"), "-CAkey", join(tlsDir, "ca.key"), "-CAcreateserial",
    "-out", join(tlsDir, `${base}.crt`), "-days", "825", "-sha256", "-extfile", ext]);
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
}

export function initSecurity(o: SecurityInitOptions): SecurityLayout {
  for (const n of [o.site, ...o.nodes, ...(o.probers ?? []), ...(o.recorders ?? []), ...(o.operators ?? []), ...(o.witnesses ?? [])]) {
    if (!IDENTITY_NAME.test(n)) throw new Error(`invalid name ${JSON.stringify(n)}: use lowercase letters, digits, - and _`);
  }
  const dir = resolve(o.dir);
  for (const d of ["", "nats", "redis", "env"]) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const identities = siteIdentities(o.nodes, { probers: o.probers, recorders: o.recorders, operators: o.operators, witnesses: o.witnesses });

  // NATS: one nkey per identity; the seed stays here, the public key goes into the server config.
  const nkeyFile = (id: Identity | string) => join(dir, "nats", `${idOf(id)}.nk`);
  const users = identities.map((identity) => {
    const file = nkeyFile(identity);
    if (o.rotate || !existsSync(file)) writePrivate(file, new TextDecoder().decode(nkeys.createUser().getSeed()) + "\n");
    const publicKey = nkeys.fromSeed(new TextEncoder().encode(readFileSync(file, "utf8").trim())).getPublicKey();
    return { identity, publicKey };
  });

  // TLS: a CA, a server certificate (NATS and Redis may share it), client certificates for mutual TLS.
  let tls: SecurityLayout["tls"] = null;
  if (o.tls) {
    const tlsDir = join(dir, "tls");
    mkdirSync(tlsDir, { recursive: true, mode: 0o700 });
    const hosts = [...new Set(["localhost", "127.0.0.1", ...o.tls.hosts.map(checkHost)])];
    if (o.rotate || !existsSync(join(tlsDir, "ca.crt"))) {
      openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(tlsDir, "ca.key"),
        "-out", join(tlsDir, "ca.crt"), "-days", "3650", "-sha256", "-subj", `/CN=lvsflow ${o.site} CA`]);
      chmodSync(join(tlsDir, "ca.key"), 0o600);
    }
    if (o.rotate || !existsSync(join(tlsDir, "server.crt"))) issue(tlsDir, "server", hosts[0]!, hosts, "serverAuth");
    if (o.tls.verify) for (const i of identities) if (o.rotate || !existsSync(join(tlsDir, `${identityId(i)}.crt`))) issue(tlsDir, identityId(i), identityId(i), [], "clientAuth");
    tls = { ca: join(tlsDir, "ca.crt"), cert: join(tlsDir, "server.crt"), key: join(tlsDir, "server.key"), verify: o.tls.verify };
  }
  const natsTls: NatsTlsFiles | undefined = tls ? { certFile: tls.cert, keyFile: tls.key, caFile: tls.ca, verify: tls.verify } : undefined;
  const natsConf = join(dir, "nats", "nats-server.conf");
  writeFileSync(natsConf, renderNatsServerConf({ site: o.site, users, listen: o.listen, tls: natsTls }), { mode: 0o644 });

  // Redis: one ACL user per identity, named like it (infra/redis/acl.ts says what each role may do).
  const redisUsers: RedisCredential[] = identities.map((i) => ({
    name: identityId(i), role: redisRoleOf(i), passFile: join(dir, "redis", `${identityId(i)}.pass`),
    ...(i.role === "controller" || i.role === "node" ? { snapshotNode: i.name } : {}),
  }));
  const withPasswords = redisUsers.map((u) => {
    if (o.rotate || !existsSync(u.passFile)) writePrivate(u.passFile, randomBytes(24).toString("base64url") + "\n");
    return { ...u, password: readFileSync(u.passFile, "utf8").trim() };
  });
  const redisAcl = join(dir, "redis", "users.acl");
  writePrivate(redisAcl, renderAclFile(o.site, withPasswords));

  const env = (id: Identity | string): Record<string, string> => {
    const key = idOf(id);
    const identity = identities.find((i) => identityId(i) === key);
    if (!identity) throw new Error(`no identity ${key} in ${dir}`);
    const e: Record<string, string> = { LVSFLOW_NATS_NKEY_FILE: nkeyFile(key) };
    if (tls) {
      e.LVSFLOW_NATS_TLS_CA = tls.ca;
      if (tls.verify) { e.LVSFLOW_NATS_TLS_CERT = join(dir, "tls", `${key}.crt`); e.LVSFLOW_NATS_TLS_KEY = join(dir, "tls", `${key}.key`); }
    }
    const redisUser = redisUsers.find((u) => u.name === key)!;
    e.LVSFLOW_REDIS_USER = redisUser.name;
    e.LVSFLOW_REDIS_PASS_FILE = redisUser.passFile;
    if (tls) e.LVSFLOW_REDIS_TLS_CA = tls.ca;
    return e;
  };
  const envFile = (id: Identity | string) => join(dir, "env", `${idOf(id)}.env`);
  // Environment files hold paths only (the secrets stay in their own files), e.g. for systemd's EnvironmentFile=.
  for (const i of identities) writeFileSync(envFile(i), Object.entries(env(i)).map(([k, v]) => `${k}=${v}`).join("\n") + "\n", { mode: 0o644 });

  return { dir, site: o.site, identities, natsConf, redisAcl, redisUsers, tls, nkeyFile, env, envFile };
}

const USAGE = `usage:
  lvsflow security init --out DIR (--config FILE… | --site S --node N…) [options]
      writes DIR/nats/nats-server.conf (permissions per role and node, public nkeys only),
      DIR/nats/<role>-<name>.nk (nkey seeds, mode 600), DIR/redis/users.acl and DIR/redis/*.pass,
      DIR/env/<role>-<name>.env (the environment of each service), and with --tls DIR/tls/*.
  --prober NAME      an extra prober identity (besides one per LB node)   (repeatable)
  --recorder NAME    recorder identity (default: recorder)                 (repeatable)
  --operator NAME    operator identity for status/commands (default: operator) (repeatable)
  --listen HOST:PORT nats-server listen address to write into its configuration
  --tls              create a CA and a server certificate; clients verify the server
  --tls-host NAME    a name or address the server certificate is valid for (repeatable)
  --tls-verify       also issue a client certificate per identity and require it (mutual TLS)
  --rotate           new keys, passwords and certificates even where they exist
`;

export async function securityCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "init") { (sub === "help" || sub === "--help" ? process.stdout : process.stderr).write(USAGE); return sub === "help" || sub === "--help" ? 0 : 2; }
  let v: Record<string, string | string[] | boolean | undefined>;
  try {
    v = parseArgs({ args: rest, strict: true, options: {
      out: { type: "string" }, config: { type: "string", multiple: true }, site: { type: "string" }, node: { type: "string", multiple: true },
      prober: { type: "string", multiple: true }, recorder: { type: "string", multiple: true }, operator: { type: "string", multiple: true },
      listen: { type: "string" }, tls: { type: "boolean" }, "tls-host": { type: "string", multiple: true }, "tls-verify": { type: "boolean" },
      rotate: { type: "boolean" }, help: { type: "boolean", short: "h" },
    } }).values;
  } catch (e) {
    process.stderr.write(`lvsflow security: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  if (v.help) { process.stdout.write(USAGE); return 0; }
  if (!v.out) { process.stderr.write(`lvsflow security init: --out DIR is required\n${USAGE}`); return 2; }
  let site = v.site as string | undefined;
  let nodes = (v.node as string[] | undefined) ?? [];
  let witnesses: string[] = [];
  if (v.config) {
    const { loadConfig } = await import("../../shared/config/load.ts");
    const { ConfigError, formatDiagnostic } = await import("../../shared/config/diagnostics.ts");
    try {
      const { model } = loadConfig((v.config as string[]).flatMap((s) => s.split(",")));
      site ??= model.site;
      if (!nodes.length) nodes = model.nodes.map((n) => n.name);
      witnesses = model.global.witnesses ?? [];
    } catch (e) {
      if (e instanceof ConfigError) { for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n"); return 1; }
      throw e;
    }
  }
  if (!site || !nodes.length) { process.stderr.write(`lvsflow security init: need the site and LB nodes (--config FILE, or --site and --node)\n${USAGE}`); return 2; }
  const layout = initSecurity({
    dir: v.out as string, site, nodes,
    probers: v.prober as string[] | undefined, recorders: v.recorder as string[] | undefined, operators: v.operator as string[] | undefined, witnesses,
    listen: v.listen as string | undefined,
    tls: v.tls || v["tls-verify"] ? { hosts: (v["tls-host"] as string[] | undefined) ?? [], verify: !!v["tls-verify"] } : null,
    rotate: !!v.rotate,
  });
  const out = [
    `site ${site}: ${layout.identities.length} identities (a NATS nkey and a Redis ACL user each)${layout.tls ? `, TLS${layout.tls.verify ? " (mutual)" : ""}` : ""}`,
    `  nats-server -c ${layout.natsConf}`,
    `  redis-server --aclfile ${layout.redisAcl}${layout.tls ? ` --port 0 --tls-port 6379 --tls-cert-file ${layout.tls.cert} --tls-key-file ${layout.tls.key} --tls-ca-cert-file ${layout.tls.ca} --tls-auth-clients no` : ""}`,
    "Each service runs with its identity's environment file (paths only; the secrets stay in their files):",
    ...layout.identities.map((i) => `  ${identityId(i).padEnd(24)} ${layout.envFile(i)}`),
    "Copy to each host only the files of the identities it runs; see docs/security.md.",
  ];
  process.stdout.write(out.join("\n") + "\n");
  return 0;
}
