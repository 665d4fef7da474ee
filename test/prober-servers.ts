// Real protocol servers for the prober's negotiate tests, started on 127.0.0.1 free ports with
// throw-away configurations and stopped by PID: dnsmasq (dns), vsftpd (ftp), dovecot (pop, pops,
// imap, imaps), tinyproxy (http_proxy), all from Debian (infra/install-deps.sh). Each returns null
// when its program is not installed, so the caller can say what it skipped.
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startProc, waitForPort, type Proc } from "./harness.ts";

export interface Daemon { ports: Record<string, number>; stop(): Promise<void>; log(): string }

const which = (p: string) => ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map((d) => join(d, p)).find((f) => existsSync(f)) ?? null;

function workdir(name: string): string {
  const d = mkdtempSync(join(tmpdir(), `lvsflow-${name}-`));
  chmodSync(d, 0o755); // daemons drop privileges and must still reach their files
  return d;
}

async function started(proc: Proc, dir: string, ports: Record<string, number>, logFile: string | null): Promise<Daemon> {
  const d: Daemon = {
    ports,
    async stop() { await proc.stop(); rmSync(dir, { recursive: true, force: true }); },
    log: () => (logFile && existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-2000) : ""),
  };
  try {
    for (const p of Object.values(ports)) await waitForPort(p, "127.0.0.1", 10_000);
  } catch (e) {
    const log = d.log();
    await d.stop();
    throw new Error(`${(e as Error).message}\n${log}`);
  }
  return d;
}

/** dnsmasq answering www.example.test → 192.0.2.7 (and its PTR), over udp and tcp. */
export async function startDnsmasq(): Promise<Daemon | null> {
  const bin = which("dnsmasq");
  if (!bin) return null;
  const dir = workdir("dns");
  const port = await freePort();
  const proc = startProc(bin, ["-k", "--conf-file=/dev/null", `--port=${port}`, "--listen-address=127.0.0.1", "--bind-interfaces",
    "--no-resolv", "--no-hosts", "--user=root", "--group=root", `--pid-file=${join(dir, "pid")}`,
    "--host-record=www.example.test,192.0.2.7", "--host-record=mail.example.test,192.0.2.8"]);
  return started(proc, dir, { dns: port }, null);
}

/** vsftpd with anonymous read-only access to a directory holding health.txt (anonymous maps to the
 * system user daemon, whose home exists; nobody's /nonexistent makes vsftpd refuse). */
export async function startVsftpd(): Promise<Daemon | null> {
  const bin = which("vsftpd");
  if (!bin) return null;
  const dir = workdir("ftp");
  const root = join(dir, "root"), empty = join(dir, "empty");
  mkdirSync(root, { mode: 0o755 });
  mkdirSync(empty, { mode: 0o755 });
  writeFileSync(join(root, "health.txt"), "status: all good\n", { mode: 0o644 });
  const port = await freePort();
  const pasv = await freePort();
  const conf = join(dir, "vsftpd.conf");
  writeFileSync(conf, [
    "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", `listen_port=${port}`, "background=NO",
    "anonymous_enable=YES", "no_anon_password=YES", `anon_root=${root}`, "ftp_username=daemon", "nopriv_user=nobody",
    "local_enable=NO", "write_enable=NO", "pasv_enable=YES", "pasv_address=127.0.0.1", `pasv_min_port=${pasv}`, `pasv_max_port=${pasv}`,
    `secure_chroot_dir=${empty}`, "seccomp_sandbox=NO", "xferlog_enable=NO", "dirmessage_enable=NO", "connect_from_port_20=NO",
    `vsftpd_log_file=${join(dir, "log")}`, "",
  ].join("\n"), { mode: 0o600 });
  return started(startProc(bin, [conf]), dir, { ftp: port }, join(dir, "log"));
}

/** dovecot: imap, imaps, pop3, pop3s with one user (probe / s3cret), TLS with the given pair. */
export async function startDovecot(tls: { key: Buffer; cert: Buffer }): Promise<Daemon | null> {
  const bin = which("dovecot");
  if (!bin) return null;
  const dir = workdir("dovecot");
  const home = join(dir, "home");
  mkdirSync(home, { mode: 0o777 });
  chmodSync(home, 0o777);
  writeFileSync(join(dir, "cert.pem"), tls.cert);
  writeFileSync(join(dir, "key.pem"), tls.key, { mode: 0o600 });
  writeFileSync(join(dir, "passwd"), "probe:{PLAIN}s3cret::::::\n", { mode: 0o644 });
  const ports = { imap: await freePort(), imaps: await freePort(), pop: await freePort(), pops: await freePort() };
  const conf = join(dir, "dovecot.conf");
  writeFileSync(conf, `
protocols = imap pop3
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/log
ssl = yes
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:${home}/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=${home}/%u
}
service imap-login {
  inet_listener imap {
    port = ${ports.imap}
  }
  inet_listener imaps {
    port = ${ports.imaps}
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = ${ports.pop}
  }
  inet_listener pop3s {
    port = ${ports.pops}
    ssl = yes
  }
}
`);
  return started(startProc(bin, ["-F", "-c", conf]), dir, ports, join(dir, "log"));
}

/** tinyproxy on 127.0.0.1 allowing only 127.0.0.1. */
export async function startTinyproxy(): Promise<Daemon | null> {
  const bin = which("tinyproxy");
  if (!bin) return null;
  const dir = workdir("proxy");
  chmodSync(dir, 0o777);
  const port = await freePort();
  const conf = join(dir, "tinyproxy.conf");
  writeFileSync(conf, [`Port ${port}`, "Listen 127.0.0.1", "Timeout 10", "MaxClients 16", "Allow 127.0.0.1", "User nobody", "Group nogroup",
    `LogFile "${join(dir, "log")}"`, "LogLevel Info", "DisableViaHeader Yes", ""].join("\n"), { mode: 0o644 });
  return started(startProc(bin, ["-d", "-c", conf]), dir, { proxy: port }, join(dir, "log"));
}

/**
 * PostgreSQL (Debian's postgresql-15): a throw-away cluster whose superuser is probe / s3cret with
 * SCRAM-SHA-256 on 127.0.0.1, run as the postgres system user (PostgreSQL refuses root) through
 * setpriv, which execs, so the PID we stop is the postmaster's.
 */
export async function startPostgres(): Promise<Daemon | null> {
  const base = "/usr/lib/postgresql";
  const ver = existsSync(base) ? readdirSync(base).sort().at(-1) : undefined;
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  if (!ver || uid.status !== 0) return null;
  const bin = join(base, ver, "bin");
  const pg = { uid: Number(uid.stdout.trim()), gid: Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim()) };
  const dir = workdir("pg");
  chownSync(dir, pg.uid, pg.gid);
  writeFileSync(join(dir, "pw"), "s3cret\n");
  chownSync(join(dir, "pw"), pg.uid, pg.gid);
  const asPg = ["--reuid=postgres", "--regid=postgres", "--init-groups", "--"];
  const init = spawnSync("setpriv", [...asPg, join(bin, "initdb"), "-D", join(dir, "data"), "-U", "probe", "--auth=scram-sha-256", `--pwfile=${join(dir, "pw")}`, "-E", "UTF8", "--no-sync"], { encoding: "utf8", timeout: 60_000 });
  if (init.status !== 0) { rmSync(dir, { recursive: true, force: true }); throw new Error(`initdb failed: ${init.stderr}`); }
  const port = await freePort();
  const proc = startProc("setpriv", [...asPg, join(bin, "postgres"), "-D", join(dir, "data"), "-k", dir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", `log_directory=${dir}`, "-c", "logging_collector=off"]);
  return started(proc, dir, { pgsql: port }, null);
}

/**
 * MariaDB (Debian's mariadb-server): a throw-away data directory from mariadb-install-db, a user
 * probe / s3cret (mysql_native_password) created by an init file, listening on 127.0.0.1 only.
 */
export async function startMariadb(): Promise<Daemon | null> {
  const bin = which("mariadbd"), install = which("mariadb-install-db");
  if (!bin || !install || spawnSync("id", ["-u", "mysql"], { stdio: "ignore" }).status !== 0) return null;
  const dir = workdir("mdb");
  spawnSync("chown", ["mysql:mysql", dir]);
  const init = spawnSync(install, ["--no-defaults", `--datadir=${join(dir, "data")}`, "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"], { encoding: "utf8", timeout: 60_000 });
  if (init.status !== 0) { rmSync(dir, { recursive: true, force: true }); throw new Error(`mariadb-install-db failed: ${init.stderr}`); }
  writeFileSync(join(dir, "init.sql"), "CREATE USER 'probe'@'%' IDENTIFIED BY 's3cret';\nGRANT SELECT ON *.* TO 'probe'@'%';\n", { mode: 0o644 });
  const port = await freePort();
  const proc = startProc(bin, ["--no-defaults", `--datadir=${join(dir, "data")}`, `--socket=${join(dir, "sock")}`, `--pid-file=${join(dir, "pid")}`,
    `--port=${port}`, "--bind-address=127.0.0.1", "--user=mysql", `--init-file=${join(dir, "init.sql")}`, "--skip-log-bin", "--skip-name-resolve",
    `--log-error=${join(dir, "log")}`]);
  return started(proc, dir, { mysql: port }, join(dir, "log"));
}

/** A self-signed pair from openssl (CN www.example.test), else the committed test fixture. */
export function tlsPair(fixtureDir: string): { key: Buffer; cert: Buffer } {
  if (spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0) {
    const dir = mkdtempSync(join(tmpdir(), "lvsflow-tls-"));
    try {
      const r = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
        "-days", "2", "-subj", "/CN=www.example.test", "-addext", "subjectAltName=DNS:www.example.test,IP:127.0.0.1"], { stdio: "ignore", timeout: 30_000 });
      if (r.status === 0) return { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { key: readFileSync(join(fixtureDir, "key.pem")), cert: readFileSync(join(fixtureDir, "cert.pem")) };
}
