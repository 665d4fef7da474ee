// Security, pure parts: the NATS permission matrix against an independent expectation table,
// nats-server and Redis ACL rendering, secrets read from files, redaction by key and by value
// (also through the real logger in a child process), and `lvsflow security init`'s files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { nkeys } from "@nats-io/nats-core";
import { identityId, permissionsFor, permits, siteIdentities, subjectMatches, parseIdentityId, type Identity } from "../infra/nats/roles.ts";
import { renderNatsServerConf } from "../infra/nats/server-conf.ts";
import { renderAclFile, passwordHash } from "../infra/redis/acl.ts";
import { initSecurity } from "../services/cli/security.ts";
import {
  readSecretFile, envSecret, isSecretKey, redactSecrets, redactUrl, registerSecret, scrubKnownSecrets, registerModelSecrets,
  natsAuthFromEnv, redisAuthFromEnv, secretFileWarning, SecretError, REDACTED,
} from "../shared/secrets.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = () => mkdtempSync(join(tmpdir(), "lvsflow-sec-"));

// ---- the permission matrix -----------------------------------------------------------------

const SITE = "s";
const IDS = siteIdentities(["lb1", "lb2"], { witnesses: ["w1"] });
const ID = (s: string) => { const i = parseIdentityId(s); assert.ok(i, s); return i; };
const who = (op: "publish" | "subscribe", subject: string) =>
  IDS.filter((i) => permits(permissionsFor(SITE, i), op, subject)).map(identityId).sort();

// Written from the README's subject table, not from roles.ts: who may publish what.
const PUBLISH: [string, string[]][] = [
  ["lvsflow.s.health.lb1.tcp-198_51_100_50-80.203_0_113_11-80", ["node-lb1", "prober-lb1"]],
  ["lvsflow.s.health.lb1.summary", ["node-lb1", "prober-lb1"]],
  ["lvsflow.s.probers.checks.lb1", ["node-lb1", "prober-lb1"]],
  ["lvsflow.s.decision.lb1.pool.tcp-198_51_100_50-80", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.decision.lb2.owner.web", ["controller-lb2", "node-lb2"]],
  ["lvsflow.s.heartbeat.lb1", ["executor-lb1", "node-lb1"]],
  ["lvsflow.s.peer.lb1.lb2", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.report.lb2.pool", ["executor-lb2", "node-lb2"]],
  ["lvsflow.s.report.lb1.connections", ["executor-lb1", "node-lb1"]],
  ["lvsflow.s.rejected.executor.lb1", ["executor-lb1", "node-lb1"]],
  ["lvsflow.s.rejected.recorder.recorder", ["recorder-recorder"]],
  ["lvsflow.s.command.request.drain", ["operator-operator"]],
  ["lvsflow.s.command.ack.lb1", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.command.state.lb2", ["controller-lb2", "node-lb2"]],
  ["lvsflow.s.query.view", ["operator-operator"]],
  ["lvsflow.s.view.lb1", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.view.w1", ["witness-w1"]],
  ["lvsflow.s.lease.lb1.web", ["controller-lb1", "node-lb1"]],
  ["lvsflow.s.inputs.lb2", ["controller-lb2", "node-lb2"]],
  ["lvsflow.other.decision.lb1.pool.x", []],
  ["lvsflow.s.decision.lb1", []],
  ["$JS.API.STREAM.INFO.LVSFLOW_RECORD_s", ["recorder-recorder"]],
  ["$JS.API.STREAM.INFO.OTHER", []],
  ["$JS.API.STREAM.DELETE.LVSFLOW_RECORD_s", []],
  ["lvsflow.s.config.push", ["operator-operator"]],
  ["lvsflow.s.config.applied.lb1", ["controller-lb1", "executor-lb1", "node-lb1", "prober-lb1"]],
  ["lvsflow.s.config.rejected.recorder", ["recorder-recorder"]],
];
// …and who may read what.
const SUBSCRIBE: [string, string[]][] = [
  ["lvsflow.s.decision.lb1.pool.x", ["executor-lb1", "node-lb1", "operator-operator", "recorder-recorder"]],
  ["lvsflow.s.decision.lb2.owner.web", ["executor-lb2", "node-lb2", "operator-operator", "recorder-recorder"]],
  ["lvsflow.s.lease.lb1.web", ["executor-lb1", "node-lb1", "operator-operator", "recorder-recorder"]],
  ["lvsflow.s.health.lb2.summary", ["controller-lb1", "controller-lb2", "node-lb1", "node-lb2", "operator-operator", "recorder-recorder"]],
  ["lvsflow.s.heartbeat.lb2", ["controller-lb1", "controller-lb2", "executor-lb1", "executor-lb2", "node-lb1", "node-lb2", "operator-operator", "recorder-recorder", "witness-w1"]],
  ["lvsflow.s.command.request.drain", ["controller-lb1", "controller-lb2", "node-lb1", "node-lb2", "operator-operator", "recorder-recorder"]],
  ["lvsflow.s.rejected.prober.lb1", ["operator-operator", "recorder-recorder"]],
  ["lvsflow.s.config.push", IDS.map(identityId)],
  ["lvsflow.s.probers.checks.lb2", ["node-lb1", "node-lb2", "operator-operator", "prober-lb1", "prober-lb2", "recorder-recorder"]],
  ["_INBOX.abc.def", ["operator-operator", "recorder-recorder"]],
  ["lvsflow.other.heartbeat.lb1", []],
];

test("permission matrix: who may publish each subject of the README's table", () => {
  for (const [subject, expected] of PUBLISH) assert.deepEqual(who("publish", subject), expected.sort(), subject);
});

test("permission matrix: who may read each subject", () => {
  for (const [subject, expected] of SUBSCRIBE) assert.deepEqual(who("subscribe", subject), expected.sort(), subject);
});

test("a prober reads only its prober group and pushed configurations; an executor reads only its own node's decisions and leases", () => {
  assert.deepEqual(permissionsFor(SITE, ID("prober-lb1")).subscribe, ["lvsflow.s.probers.*.*", "lvsflow.s.config.push"]);
  const ex = permissionsFor(SITE, ID("executor-lb1"));
  assert.equal(permits(ex, "subscribe", "lvsflow.s.decision.lb2.pool.x"), false);
  assert.equal(permits(ex, "subscribe", "lvsflow.s.decision.*.pool.x"), false, "a wildcard across nodes is not inside decision.lb1.>");
  assert.equal(permits(ex, "subscribe", "lvsflow.s.>"), false);
});

test("subject matching follows NATS: * is one token, > is one or more at the end", () => {
  assert.equal(subjectMatches("a.*.c", "a.b.c"), true);
  assert.equal(subjectMatches("a.*.c", "a.b.d.c"), false);
  assert.equal(subjectMatches("a.>", "a"), false);
  assert.equal(subjectMatches("a.>", "a.b.c"), true);
  assert.equal(subjectMatches("a.b", "a.b.c"), false);
});

test("names that could escape a subject or a file are refused", () => {
  for (const bad of ["lb1.>", "LB1", "a b", "../x", "*", ""]) {
    assert.throws(() => permissionsFor(SITE, { role: "executor", name: bad }), /invalid/, bad);
    assert.throws(() => initSecurity({ dir: join(tmpdir(), "never-written"), site: "s", nodes: [bad] }), /invalid name/, bad);
  }
  assert.throws(() => permissionsFor("s.>", ID("executor-lb1")), /invalid site/);
});

test("nats-server.conf: one nkey user per identity with exactly its permissions", () => {
  const users = IDS.map((identity) => ({ identity, publicKey: nkeys.createUser().getPublicKey() }));
  const conf = renderNatsServerConf({ site: SITE, users, listen: "127.0.0.1:4222" });
  assert.equal((conf.match(/\{ nkey: "U[A-Z2-7]{55}"/g) ?? []).length, IDS.length);
  const prober = conf.slice(conf.indexOf("# prober-lb1"), conf.indexOf("# controller-lb1"));
  assert.match(prober, /publish: \{ allow: \["lvsflow\.s\.health\.lb1\.>", "lvsflow\.s\.probers\.\*\.lb1", "lvsflow\.s\.rejected\.prober\.lb1", "lvsflow\.s\.config\.applied\.lb1", "lvsflow\.s\.config\.rejected\.lb1"\] \}/);
  assert.match(prober, /subscribe: \{ allow: \["lvsflow\.s\.probers\.\*\.\*", "lvsflow\.s\.config\.push"\] \}/);
  assert.doesNotMatch(conf, /password|SU[A-Z2-7]{50}/i, "no seed or password in the server configuration");
  assert.throws(() => renderNatsServerConf({ site: SITE, users: [{ identity: ID("executor-lb1"), publicKey: "SUAAAA" }] }), /not a user public nkey/);
  assert.match(renderNatsServerConf({ site: SITE, users, tls: { certFile: "/c", keyFile: "/k", caFile: "/ca", verify: true } }), /tls \{\n  cert_file: "\/c"[^}]*verify: true/);
});

test("Redis ACL file: default user off, hashed passwords, recorder appends, cli reads the site's keys, services keep config versions", () => {
  const acl = renderAclFile("s", [{ name: "recorder", role: "recorder", password: "p".repeat(20) }, { name: "cli", role: "cli", password: "q".repeat(20) },
    { name: "controller-lb1", role: "service", password: "r".repeat(20), snapshotNode: "lb1" }]);
  const lines = acl.trim().split("\n");
  assert.equal(lines[0], "user default off resetkeys -@all");
  assert.ok(lines.every((l) => l.startsWith("user ")), "an ACL file has no comments");
  assert.ok(!acl.includes("p".repeat(20)) && acl.includes(`#${passwordHash("p".repeat(20))}`));
  assert.match(lines[1]!, /^user recorder on #[0-9a-f]{64} resetkeys ~lvsflow:s:\* resetchannels -@all .*\+eval .*\+xadd /);
  assert.doesNotMatch(lines[1]!, /\+del|\+@write|\+@all|flush/);
  assert.match(lines[2]!, /^user cli on #[0-9a-f]{64} resetkeys %R~lvsflow:s:\* ~lvsflow:s:config:\* .*\+@read -@dangerous/);
  assert.match(lines[3]!, /^user controller-lb1 on #[0-9a-f]{64} resetkeys ~lvsflow:s:config:\* ~lvsflow:s:snapshot:lb1:\* resetchannels -@all /);
  assert.doesNotMatch(lines[3]!, /\+del|\+@write|\+xtrim|events/);
  assert.throws(() => renderAclFile("s", [{ name: "cli", role: "cli", password: "short" }]), /too short/);
});

// ---- secrets -------------------------------------------------------------------------------

test("secret files: content without the final newline; missing or empty is a clear error; loose modes are flagged", (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "ok"), "s3cret-value-1\n", { mode: 0o600 });
  writeFileSync(join(dir, "empty"), "\n", { mode: 0o600 });
  writeFileSync(join(dir, "loose"), "x", { mode: 0o644 });
  assert.equal(readSecretFile(join(dir, "ok")), "s3cret-value-1");
  assert.throws(() => readSecretFile(join(dir, "empty")), (e: Error) => e instanceof SecretError && /is empty/.test(e.message));
  assert.throws(() => readSecretFile(join(dir, "nope")), /cannot read secret file .*ENOENT/);
  assert.equal(secretFileWarning(join(dir, "ok")), null);
  assert.match(secretFileWarning(join(dir, "loose")) ?? "", /readable by group or others \(mode 644\)/);
  assert.equal(envSecret({ X: "direct-value", X_FILE: join(dir, "ok") }, "X"), "s3cret-value-1", "NAME_FILE wins");
  assert.equal(envSecret({ X: "direct-value" }, "X"), "direct-value");
  assert.equal(envSecret({}, "X"), undefined);
});

test("secret keys: passwords, secrets, logins, tokens, seeds — not paths or user names", () => {
  for (const k of ["passwd", "password", "secret", "radiusSecret", "auth_pass", "LVSFLOW_NATS_PASS", "login", "token", "seed", "privateKey", "apiKey"]) assert.ok(isSecretKey(k), k);
  for (const k of ["passwdFile", "user", "username", "database", "keyFile", "site", "request", "passive"]) assert.ok(!isSecretKey(k), k);
});

test("redactSecrets: by key at any depth, passwords in URLs, registered values in any string; the input is untouched", () => {
  registerSecret("Registered-Secret-42");
  const model = {
    site: "s",
    virtualServices: [{ check: { login: "probe", passwd: "hunter2hunter2", secret: "radius-shared", database: "db", request: "/x?k=Registered-Secret-42", pluginOptions: { nested: { password: "pp" } } } }],
    url: "https://admin:adm1n-pw@host:8443/path",
    empty: { passwd: "" },
    global: { hashSeed: 24301 },
  };
  const r = redactSecrets(model);
  const c = r.virtualServices[0]!.check;
  assert.equal(c.passwd, REDACTED); assert.equal(c.secret, REDACTED); assert.equal(c.login, REDACTED);
  assert.equal(c.database, "db");
  assert.equal(c.request, `/x?k=${REDACTED}`);
  assert.equal(c.pluginOptions.nested.password, REDACTED);
  assert.equal(r.url, `https://admin:${REDACTED}@host:8443/path`);
  assert.equal(r.empty.passwd, "", "an absent secret stays visibly absent");
  assert.equal(r.global.hashSeed, 24301, "a number under a secret-looking key is not a secret");
  assert.equal(model.virtualServices[0]!.check.passwd, "hunter2hunter2");
  assert.equal(redactUrl("nats://u:p@h:4222,nats://h2:4222"), `nats://u:${REDACTED}@h:4222,nats://h2:4222`);
});

test("scrubKnownSecrets: registered values (and their JSON-escaped form) leave every text; short values are not scrubbed", () => {
  registerSecret('quote"and\\slash-secret');
  registerSecret("abc"); // too short to scrub without garbling everything
  const json = JSON.stringify({ m: 'x quote"and\\slash-secret y' });
  assert.equal(scrubKnownSecrets(json), JSON.stringify({ m: `x ${REDACTED} y` }));
  assert.equal(scrubKnownSecrets("abc abc"), "abc abc");
  registerModelSecrets({ virtualServices: [{ check: { passwd: "model-passwd-1", login: "model-login-1", request: "/not-a-secret" } }] });
  assert.equal(scrubKnownSecrets("a model-passwd-1 b model-login-1 /not-a-secret"), `a ${REDACTED} b ${REDACTED} /not-a-secret`);
});

test("the real logger drops secrets by key and by value (child process, pino JSON on stderr)", (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "pass"), "File-Secret-Value-77\n", { mode: 0o600 });
  const script = join(dir, "log.ts");
  writeFileSync(script, [
    `import { createLogger } from ${JSON.stringify(join(ROOT, "shared/logger.ts"))};`,
    `import { readSecretFile } from ${JSON.stringify(join(ROOT, "shared/secrets.ts"))};`,
    `const s = readSecretFile(${JSON.stringify(join(dir, "pass"))});`,
    `const log = createLogger("t");`,
    `log.info({ passwd: "by-key-secret-1", check: { secret: "by-key-secret-2" }, a: { b: { password: "by-key-secret-3" } } }, "keys");`,
    `log.error({ err: "auth failed for " + s }, "message with " + s);`,
  ].join("\n"));
  const r = spawnSync(process.execPath, ["--import", "tsx", script], { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, LVSFLOW_LOG_JSON: "1" } });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.msg, `message with ${REDACTED}`);
  for (const s of ["by-key-secret-1", "by-key-secret-2", "by-key-secret-3", "File-Secret-Value-77"]) assert.ok(!r.stderr.includes(s), s);
});

test("NATS and Redis credentials from the environment: nkey seed file, password file, TLS files", (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const kp = nkeys.createUser();
  writeFileSync(join(dir, "u.nk"), new TextDecoder().decode(kp.getSeed()) + "\n", { mode: 0o600 });
  writeFileSync(join(dir, "bad.nk"), "not a seed\n", { mode: 0o600 });
  writeFileSync(join(dir, "acct.nk"), new TextDecoder().decode(nkeys.createAccount().getSeed()) + "\n", { mode: 0o600 });
  writeFileSync(join(dir, "r.pass"), "redis-password-123\n", { mode: 0o600 });
  const a = natsAuthFromEnv({ LVSFLOW_NATS_NKEY_FILE: join(dir, "u.nk"), LVSFLOW_NATS_TLS_CA: "/ca.crt" });
  assert.equal(a.describe, `nkey ${kp.getPublicKey()} over TLS`);
  assert.deepEqual(a.tls, { caFile: "/ca.crt" });
  const signed = a.authenticator!("nonce-1") as { nkey: string; sig: string };
  assert.equal(signed.nkey, kp.getPublicKey());
  assert.ok(kp.verify(new TextEncoder().encode("nonce-1"), new Uint8Array(Buffer.from(signed.sig, "base64url"))), "the authenticator signs the server's nonce with the seed");
  assert.throws(() => natsAuthFromEnv({ LVSFLOW_NATS_NKEY_FILE: join(dir, "bad.nk") }), /does not hold an nkey seed/);
  assert.throws(() => natsAuthFromEnv({ LVSFLOW_NATS_NKEY_FILE: join(dir, "acct.nk") }), /need a user seed/);
  assert.throws(() => natsAuthFromEnv({ LVSFLOW_NATS_TLS_CERT: "/c" }), /go together/);
  assert.deepEqual(natsAuthFromEnv({ LVSFLOW_NATS_USER: "u", LVSFLOW_NATS_PASS_FILE: join(dir, "r.pass") }), { describe: "user u", user: "u", pass: "redis-password-123" });
  assert.deepEqual(natsAuthFromEnv({}), { describe: "none" });
  assert.deepEqual(redisAuthFromEnv({ LVSFLOW_REDIS_USER: "cli", LVSFLOW_REDIS_PASS_FILE: join(dir, "r.pass") }), { username: "cli", password: "redis-password-123" });
});

// ---- lvsflow security init -----------------------------------------------------------------

test("security init: private files, public keys only in the server config, env files hold paths only; re-run keeps keys, --rotate replaces them", (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const l = initSecurity({ dir, site: "lab", nodes: ["lb1", "lb2"], probers: ["outside"] });
  assert.deepEqual(l.identities.map(identityId), ["prober-lb1", "controller-lb1", "executor-lb1", "node-lb1", "prober-lb2", "controller-lb2", "executor-lb2", "node-lb2", "prober-outside", "recorder-recorder", "operator-operator"]);
  const seeds = readdirSync(join(dir, "nats")).filter((f) => f.endsWith(".nk"));
  assert.equal(seeds.length, l.identities.length);
  const passes = readdirSync(join(dir, "redis")).filter((f) => f.endsWith(".pass"));
  assert.equal(passes.length, l.identities.length, "one Redis user per identity");
  for (const f of [...seeds.map((s) => join(dir, "nats", s)), ...passes.map((p) => join(dir, "redis", p)), l.redisAcl]) {
    assert.equal(statSync(f).mode & 0o777, 0o600, f);
  }
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const conf = readFileSync(l.natsConf, "utf8");
  const secrets = [...seeds.map((s) => readFileSync(join(dir, "nats", s), "utf8").trim()), ...passes.map((p) => readFileSync(join(dir, "redis", p), "utf8").trim())];
  for (const id of l.identities) {
    const pub = nkeys.fromSeed(new TextEncoder().encode(readFileSync(l.nkeyFile(id), "utf8").trim())).getPublicKey();
    assert.ok(conf.includes(`# ${identityId(id)}\n    { nkey: "${pub}"`), identityId(id));
    const envText = readFileSync(l.envFile(id), "utf8");
    for (const s of secrets) assert.ok(!envText.includes(s), `${identityId(id)}.env holds paths only`);
  }
  for (const s of secrets) assert.ok(!conf.includes(s) && !readFileSync(l.redisAcl, "utf8").includes(s));
  assert.deepEqual(Object.keys(l.env("recorder-recorder")).sort(), ["LVSFLOW_NATS_NKEY_FILE", "LVSFLOW_REDIS_PASS_FILE", "LVSFLOW_REDIS_USER"]);
  assert.equal(l.env("operator-operator").LVSFLOW_REDIS_USER, "operator-operator");
  const acl = readFileSync(l.redisAcl, "utf8");
  assert.match(acl, /^user executor-lb1 on #[0-9a-f]{64} resetkeys ~lvsflow:lab:config:\* resetchannels/m, "an executor: configuration versions only");
  assert.match(acl, /^user controller-lb2 on #[0-9a-f]{64} resetkeys ~lvsflow:lab:config:\* ~lvsflow:lab:snapshot:lb2:\* /m, "a controller: its own node's snapshots too");

  const before = readFileSync(l.nkeyFile("executor-lb1"), "utf8");
  initSecurity({ dir, site: "lab", nodes: ["lb1", "lb2", "lb3"] });
  assert.equal(readFileSync(l.nkeyFile("executor-lb1"), "utf8"), before, "adding a node keeps the other keys");
  assert.match(readFileSync(l.natsConf, "utf8"), /# executor-lb3/);
  initSecurity({ dir, site: "lab", nodes: ["lb1"], rotate: true });
  assert.notEqual(readFileSync(l.nkeyFile("executor-lb1"), "utf8"), before, "--rotate");
});

test("lvsflow security init (the CLI) from the lab's configuration", (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, "lab.yaml");
  writeFileSync(cfg, readFileSync(join(ROOT, "infra/lab/lvsflow.yaml"), "utf8") + "virtualServices: []\n");
  const r = spawnSync(process.execPath, [join(ROOT, "bin/lvsflow.mjs"), "security", "init", "--out", join(dir, "out"), "--config", cfg], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^site lab: 10 identities/);
  assert.match(r.stdout, /nats-server -c .*nats-server\.conf/);
  const bad = spawnSync(process.execPath, [join(ROOT, "bin/lvsflow.mjs"), "security", "init", "--out", join(dir, "x"), "--site", "lab", "--node", "LB 1"], { encoding: "utf8", timeout: 60_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /invalid name "LB 1"/);
});

test("identities: one prober, controller, executor and node identity per LB node, without duplicates", () => {
  const ids = siteIdentities(["a"], { probers: ["a"], recorders: ["r"], operators: ["o", "o"] });
  assert.deepEqual(ids.map(identityId), ["prober-a", "controller-a", "executor-a", "node-a", "recorder-r", "operator-o"]);
  assert.deepEqual(parseIdentityId("executor-lb-1"), { role: "executor", name: "lb-1" } satisfies Identity);
  assert.equal(parseIdentityId("root-x"), null);
});

test("the example configurations in infra/ are exactly what the generator writes for the lab", () => {
  const example = readFileSync(join(ROOT, "infra/nats/nats-server.lab.example.conf"), "utf8");
  const ids = siteIdentities(["lb1", "lb2"]);
  const keys = [...example.matchAll(/nkey: "(U[A-Z2-7]{55})"/g)].map((m) => m[1]!);
  assert.equal(keys.length, ids.length);
  const rendered = renderNatsServerConf({ site: "lab", users: ids.map((identity, i) => ({ identity, publicKey: keys[i]! })), listen: "127.0.0.1:4222" });
  assert.equal(example.split("\n").filter((l) => !l.startsWith("# EXAMPLE") && !l.startsWith("# for the lab") && !l.startsWith("# generate your own")).join("\n"), rendered);
  const acl = readFileSync(join(ROOT, "infra/redis/users.lab.example.acl"), "utf8");
  const users = ids.map((i) => ({ name: identityId(i), role: i.role === "recorder" ? "recorder" as const : i.role === "operator" ? "cli" as const : "service" as const, password: "x".repeat(20), ...(i.role === "controller" || i.role === "node" ? { snapshotNode: i.name } : {}) }));
  const unhash = (t: string) => t.replace(/#[0-9a-f]{64}/g, "#<hash>");
  assert.equal(unhash(acl), unhash(renderAclFile("lab", users)));
});

test("every subject the code builds (shared/subjects.ts) is allowed to some identity: a new subject needs a line in infra/nats/roles.ts", async () => {
  const { subjects } = await import("../shared/subjects.ts");
  const words = ["lb1", "controller", "executor", "prober", "recorder", "witness", "w1", "applied", "rejected", "drain", "pool", "connections"];
  const tuples = (k: number): string[][] => (k === 0 ? [[]] : tuples(k - 1).flatMap((t) => words.map((w) => [...t, w])));
  const ids = siteIdentities(["lb1", "lb2"], { witnesses: ["w1"] });
  const orphans: string[] = [];
  for (const [name, fn] of Object.entries(subjects) as [string, (...a: string[]) => string][]) {
    const ok = tuples(Math.min(3, Math.max(0, fn.length - 1))).some((args) => {
      const subject = fn(SITE, ...args);
      const op = /(^|\.)(\*|>)(\.|$)/.test(subject) ? "subscribe" : "publish";
      return ids.some((i) => permits(permissionsFor(SITE, i), op, subject));
    });
    if (!ok) orphans.push(`subjects.${name}`);
  }
  assert.deepEqual(orphans, [], "subjects nobody may use: add them to infra/nats/roles.ts (and the tables in docs/security.md)");
});

test("probe credentials from files: check.passwdFile fills passwd at load, stays a reference in convert, and errors name the file", async (t) => {
  const { loadConfig, configToYaml } = await import("../shared/config/load.ts");
  const { ConfigError, formatDiagnostic } = await import("../shared/config/diagnostics.ts");
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "probe.pass"), "From-A-File-Passw0rd\n", { mode: 0o600 });
  writeFileSync(join(dir, "radius.secret"), "From-A-File-Secret\n", { mode: 0o600 });
  const yaml = (check: string) => `site: s\nvirtualServices:\n  - address: 198.51.100.50\n    port: 1812\n    protocol: udp\n    check: { type: negotiate, service: radius, login: probe, ${check} }\n    reals: [{ address: 203.0.113.11, forwarding: masq }]\n`;
  writeFileSync(join(dir, "ok.yaml"), yaml(`passwdFile: probe.pass, secretFile: ${join(dir, "radius.secret")}`));
  const { model, sources } = loadConfig([join(dir, "ok.yaml")]);
  const c = model.virtualServices[0]!.check;
  assert.equal(c.passwd, "From-A-File-Passw0rd");
  assert.equal(c.secret, "From-A-File-Secret");
  assert.ok(!sources.some((s) => s.text.includes("From-A-File")), "the secrets are not in the configuration texts (hashed and stored as versions)");
  assert.equal(scrubKnownSecrets("x From-A-File-Passw0rd y"), `x ${REDACTED} y`, "a secret read from a file is scrubbed from logs and events");
  const converted = configToYaml(model);
  assert.match(converted, /passwdFile: probe\.pass/);
  assert.ok(!converted.includes("From-A-File"), "convert keeps the reference, not the content");
  for (const [check, why] of [["passwd: inline-pw, passwdFile: probe.pass", /check\.passwdFile: give passwd or passwdFile, not both/], ["passwdFile: missing.pass", /check\.passwdFile: cannot read secret file .*missing\.pass: ENOENT/]] as const) {
    writeFileSync(join(dir, "bad.yaml"), yaml(check));
    try { loadConfig([join(dir, "bad.yaml")]); assert.fail("loaded"); } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.match(e.diagnostics.map(formatDiagnostic).join("\n"), why);
      assert.match(formatDiagnostic(e.diagnostics[0]!), /bad\.yaml:3:1: error:/);
    }
  }
});
