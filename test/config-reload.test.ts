// The pure parts of live reload: the model difference a reload applies (and `config diff`
// shows), loading a stored version from its own sources, and draining the reals a configuration
// change removed (per quiescent). The I/O path is in int-reload and e2e-reload.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfigSources, versionOf } from "../shared/config/load.ts";
import { describeDiff, diffModels, isEmptyDiff, summarizeDiff } from "../shared/config/diff.ts";
import { loadStored } from "../shared/config/versions.ts";
import { drainMs, expired, nextDrains, withDrains } from "../services/executor/drain.ts";
import type { PoolSpec } from "../shared/schemas/events.ts";

const cf = (extra = "", w2 = 1) => `checkinterval=2\nvirtual=192.0.2.10:80\n    real=192.0.2.21:80 masq\n    real=192.0.2.22:80 masq ${w2}\n    scheduler=wlc\n${extra}`;
const model = (text: string, yaml = "site: s1\ngroups:\n  - name: web\n    addresses: [{ address: 192.0.2.10, prefix: 24, interface: eth0 }]\n") =>
  loadConfigSources([{ path: "/c/l.yaml", text: `${yaml}include: l.cf\n` }], { readFile: () => text }).model;

test("diff: nothing changed is an empty diff, even when blocks move in the file", () => {
  const a = model(cf());
  const b = model(`# a comment\n\n${cf()}`);
  assert.equal(isEmptyDiff(diffModels(a, b)), true);
  assert.deepEqual(describeDiff(diffModels(a, b)), []);
});

test("diff: added/removed virtual services, real weight, check fields, settings, groups", () => {
  const a = model(cf("virtual=192.0.2.10:443\n    real=192.0.2.21 masq\n"));
  const b = model(cf("virtual=192.0.2.10:8080\n    real=192.0.2.23 masq\nautoreload=yes\n", 4).replace("checkinterval=2", "checkinterval=3").replace("    real=192.0.2.21:80 masq\n", "    real=192.0.2.24:80 masq\n"),
    "site: s1\ngroups:\n  - name: web\n    preempt: false\n    addresses: [{ address: 192.0.2.10, prefix: 24, interface: eth0 }]\n");
  const d = diffModels(a, b);
  assert.deepEqual(describeDiff(d), [
    "+ virtual service tcp:192.0.2.10:8080",
    "- virtual service tcp:192.0.2.10:443",
    "~ tcp:192.0.2.10:80: check.interval 2 -> 3",
    "+ tcp:192.0.2.10:80: real 192.0.2.24:80",
    "- tcp:192.0.2.10:80: real 192.0.2.21:80",
    "~ tcp:192.0.2.10:80: real 192.0.2.22:80 (weight)",
    "~ group web",
    "~ global.autoreload",
  ]);
  const s = summarizeDiff(d);
  assert.deepEqual([s.virtualServicesAdded, s.virtualServicesRemoved, s.virtualServicesChanged, s.realsAdded, s.realsRemoved, s.groupsChanged],
    [["tcp:192.0.2.10:8080"], ["tcp:192.0.2.10:443"], ["tcp:192.0.2.10:80"], ["tcp:192.0.2.10:80 192.0.2.24:80"], ["tcp:192.0.2.10:80 192.0.2.21:80"], ["web"]]);
});

test("diff: a changed secret is shown as changed, never by value", () => {
  const a = model(cf('    service=mysql\n    login="lb"\n    passwd="old-pw-123"\n    database="app"\n'));
  const b = model(cf('    service=mysql\n    login="lb"\n    passwd="new-pw-456"\n    database="app"\n'));
  const lines = describeDiff(diffModels(a, b));
  assert.deepEqual(lines, ["~ tcp:192.0.2.10:80: check.passwd changed"]);
});

test("a stored version loads from its own sources (includes too), not from the disk", () => {
  const files = { "/etc/lvsflow/l.yaml": "site: s1\ninclude: l.cf\n", "/etc/lvsflow/l.cf": cf() };
  const loaded = loadConfigSources([{ path: "/etc/lvsflow/l.yaml", text: files["/etc/lvsflow/l.yaml"] }], { readFile: (p) => files[p as keyof typeof files] });
  const again = loadStored({ version: loaded.version, files: ["/etc/lvsflow/l.yaml"], sources: loaded.sources, format: null, strict: false });
  assert.equal(again.version, loaded.version);
  assert.deepEqual(again.model, loaded.model);
  // The version is the sources' content hash: the same texts elsewhere are the same version.
  assert.equal(versionOf(loaded.sources), loaded.version);
  assert.equal(versionOf([{ text: "ab" }, { text: "c" }]) === versionOf([{ text: "a" }, { text: "bc" }]), false);
});

// ---------------------------------------------------------------------------------------------
// Draining a real removed by configuration (services/executor/drain.ts)

const spec = (reals: [string, number][], persistence: number | null = 120): PoolSpec => ({
  vs: "tcp:192.0.2.10:80", protocol: "tcp", family: "ipv4", address: "192.0.2.10", port: 80, fwmark: null, scheduler: "wlc",
  persistence: persistence ? { timeout: persistence, netmask: "255.255.255.0" } : null,
  reals: reals.map(([address, weight]) => ({ address, port: 80, forwarding: "masq" as const, weight, lowerThreshold: null, upperThreshold: null })),
  fallback: null,
});

test("drain: quiescent = yes keeps a removed real at weight 0 for one persistence timeout, then drops it", () => {
  const before = spec([["192.0.2.21", 1], ["192.0.2.22", 1]]);
  const after = spec([["192.0.2.21", 1]]);
  assert.equal(drainMs(true, after), 120_000);
  const d = nextDrains(before, after, new Map(), drainMs(true, after), 1000);
  assert.deepEqual([...d.keys()], ["192.0.2.22:80"]);
  const applied = withDrains(after, d, 2000);
  assert.deepEqual(applied.reals.map((r) => [r.address, r.weight]), [["192.0.2.21", 1], ["192.0.2.22", 0]]);
  assert.equal(expired(d, 121_000), true);
  assert.deepEqual(withDrains(after, d, 121_000).reals.map((r) => r.address), ["192.0.2.21"]);
  // The next decision (e.g. a re-sent one) keeps the drain running, not restarted.
  const d2 = nextDrains(after, after, d, drainMs(true, after), 60_000);
  assert.equal(d2.get("192.0.2.22:80")!.until, 121_000);
  // It comes back (added again): the drain ends at once.
  assert.equal(nextDrains(after, before, d2, 120_000, 70_000).size, 0);
});

test("drain: quiescent = no (or no persistence) removes it at once, as ldirectord's reload does", () => {
  const before = spec([["192.0.2.21", 1], ["192.0.2.22", 1]]);
  const after = spec([["192.0.2.21", 1]]);
  assert.equal(drainMs(false, after), 0);
  assert.equal(drainMs(true, spec([["192.0.2.21", 1]], null)), 0);
  assert.equal(nextDrains(before, after, new Map(), 0, 1000).size, 0);
  assert.equal(withDrains(after, undefined, 1000), after);
});

test("drain: a real that stays at weight 0 (quiesced for health) is not a removal", () => {
  const before = spec([["192.0.2.21", 1], ["192.0.2.22", 1]]);
  const quiesced = spec([["192.0.2.21", 1], ["192.0.2.22", 0]]);
  assert.equal(nextDrains(before, quiesced, new Map(), 120_000, 1000).size, 0);
});

test("CLI: config diff of two files needs no Redis", async () => {
  const { configCommand } = await import("../services/cli/config.ts");
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "diff-"));
  try {
    writeFileSync(join(dir, "a.cf"), cf());
    writeFileSync(join(dir, "b.cf"), cf("", 3));
    const o = { out: "", err: "" };
    const code = await configCommand(["diff", join(dir, "a.cf"), join(dir, "b.cf"), "--redis", "redis://127.0.0.1:1"], { out: (s) => void (o.out += s), err: (s) => void (o.err += s) });
    assert.equal(code, 0, o.err);
    assert.match(o.out, /~ tcp:192\.0\.2\.10:80: real 192\.0\.2\.22:80 \(weight\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
