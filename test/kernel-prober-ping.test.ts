// ping and connect where a real does not answer at all: inside a private network namespace with a
// veth pair on 192.0.2.0/24, 192.0.2.1 is the namespace's own address (answers) and
// 192.0.2.99 is nobody (no ARP reply, so no ICMP reply and no SYN-ACK). The checks run in a child
// process inside the namespace; the namespace is removed afterwards, also on failure.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const isRoot = process.getuid?.() === 0;
const hasPing = spawnSync("ping", ["-V"], { stdio: "ignore" }).status === 0;

test("ping and connect against an address nobody answers: down at the timeout, the ping process gone", { skip: !isRoot ? "needs root" : !hasPing ? "ping not installed" : false }, (t) => {
  const ns = `lvsp${randomBytes(3).toString("hex")}`;
  const ip = (...a: string[]) => { const r = spawnSync("ip", a, { encoding: "utf8" }); if (r.status !== 0) throw new Error(`ip ${a.join(" ")}: ${r.stderr}`); };
  ip("netns", "add", ns);
  t.after(() => { spawnSync("ip", ["netns", "del", ns]); });
  ip("-n", ns, "link", "set", "lo", "up");
  // A veth pair inside the namespace: v0 holds 192.0.2.1, v1 has no address, so .99 never answers ARP.
  ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1");
  ip("-n", ns, "addr", "add", "192.0.2.1/24", "dev", "v0");
  ip("-n", ns, "link", "set", "v0", "up");
  ip("-n", ns, "link", "set", "v1", "up");
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-ping-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, "checks.mts"); // .mts: an ES module outside the package, for top-level await
  writeFileSync(script, `
import { VirtualService } from ${JSON.stringify(join(root, "shared/schemas/config.ts"))};
import { runCheck } from ${JSON.stringify(join(root, "services/prober/checks.ts"))};
const run = async (type: string, address: string, port: number) => {
  const v = VirtualService.parse({ id: "tcp:198.51.100.50:80", protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false, fallback: null,
    check: { type, service: "none", request: "", receive: "", port: null, interval: 1, timeout: 0.5, failureCount: 1 }, reals: [{ address, port, forwarding: "masq", weight: 1 }] });
  const t0 = performance.now();
  const o = await runCheck({ vs: v, real: v.reals[0] }, new AbortController().signal);
  return { type, address, port, ok: o.ok, error: o.error, ms: Math.round(performance.now() - t0) };
};
const out = [await run("ping", "192.0.2.1", 0), await run("ping", "192.0.2.99", 0), await run("connect", "192.0.2.99", 80), await run("connect", "192.0.2.1", 1)];
process.stdout.write(JSON.stringify(out));
`);
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", script], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const [pingUp, pingDown, connectDown, refused] = JSON.parse(r.stdout) as { ok: boolean; error: string | null; ms: number }[];
  assert.equal(pingUp.ok, true, pingUp.error ?? "");
  assert.equal(pingDown.ok, false);
  assert.match(pingDown.error ?? "", /no reply|killed at the deadline|timeout/);
  assert.ok(pingDown.ms < 500 + 400, `ping took ${pingDown.ms} ms`);
  assert.equal(connectDown.ok, false);
  assert.match(connectDown.error ?? "", /timeout after 0.5s|EHOSTUNREACH/);
  assert.ok(connectDown.ms < 500 + 300, `connect took ${connectDown.ms} ms`);
  assert.match(refused.error ?? "", /ECONNREFUSED/);
  // No ping left running in the namespace.
  const left = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout.trim();
  assert.equal(left, "", `processes left in the namespace: ${left}`);
});
