// Pure tests of consistent real selection for the nftables driver: every node renders the same
// rules, the weighted Maglev table balances and moves few flows on pool changes, persistence keys
// on the client network, and the reply-first pickup rule maps each real back to its VIP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { maglevTable, tableRanges, MAGLEV_SIZE } from "../services/executor/nft/maglev.ts";
import { renderDesired, svcChainName } from "../services/executor/nft/render.ts";
import type { PoolSpec } from "../shared/schemas/events.ts";

const CONSISTENT = { selection: "consistent" as const, seed: 0x5eed };

function pool(over: Partial<PoolSpec> = {}): PoolSpec {
  return {
    vs: "tcp:198.51.100.50:80", protocol: "tcp", family: "ipv4", address: "198.51.100.50", port: 80, fwmark: null, scheduler: "wlc", persistence: null,
    reals: [{ address: "203.0.113.11", port: 80, forwarding: "masq", weight: 1, lowerThreshold: null, upperThreshold: null }, { address: "203.0.113.12", port: 80, forwarding: "masq", weight: 1, lowerThreshold: null, upperThreshold: null }],
    fallback: null, ...over,
  };
}
const real = (n: number, weight = 1) => ({ address: `203.0.113.${n}`, port: 80, forwarding: "masq" as const, weight, lowerThreshold: null, upperThreshold: null });
const count = (t: number[], n: number) => t.filter((x) => x === n).length;

test("maglev: same table whatever the order the reals come in; every slot filled", () => {
  const a = maglevTable([{ key: "203.0.113.11:80", weight: 1 }, { key: "203.0.113.12:80", weight: 1 }, { key: "203.0.113.13:80", weight: 1 }]);
  const b = maglevTable([{ key: "203.0.113.13:80", weight: 1 }, { key: "203.0.113.11:80", weight: 1 }, { key: "203.0.113.12:80", weight: 1 }]);
  const keyed = (t: number[], keys: string[]) => t.map((i) => keys[i]);
  assert.deepEqual(keyed(a, ["11", "12", "13"]), keyed(b, ["13", "11", "12"]));
  assert.equal(a.length, MAGLEV_SIZE);
  assert.ok(a.every((x) => x >= 0));
});

test("maglev: balance within 2 % for equal weights and proportional for 7:3", () => {
  const eq = maglevTable([1, 2, 3, 4, 5].map((i) => ({ key: `203.0.113.${i}:80`, weight: 1 })));
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(count(eq, i) / MAGLEV_SIZE - 0.2) < 0.02, `real ${i}: ${count(eq, i)}`);
  const w = maglevTable([{ key: "a", weight: 7 }, { key: "b", weight: 3 }]);
  assert.ok(Math.abs(count(w, 0) / MAGLEV_SIZE - 0.7) < 0.02, `7:3 gives ${count(w, 0)}:${count(w, 1)}`);
});

test("maglev: removing a real moves only its slots (+ <2 % collateral); adding one moves about 1/(N+1)", () => {
  const keys = [1, 2, 3, 4, 5].map((i) => `r${i}`);
  const five = maglevTable(keys.map((key) => ({ key, weight: 1 }))).map((i) => keys[i]);
  const fourKeys = keys.filter((k) => k !== "r3");
  const four = maglevTable(fourKeys.map((key) => ({ key, weight: 1 }))).map((i) => fourKeys[i]);
  const collateral = five.filter((k, s) => k !== "r3" && four[s] !== k).length;
  assert.ok(collateral / MAGLEV_SIZE < 0.02, `collateral ${collateral} slots`);
  const sixKeys = [...keys, "r6"];
  const six = maglevTable(sixKeys.map((key) => ({ key, weight: 1 }))).map((i) => sixKeys[i]);
  const moved = five.filter((k, s) => six[s] !== k).length / MAGLEV_SIZE;
  assert.ok(moved > 0.12 && moved < 0.22, `moved ${(moved * 100).toFixed(1)} % (1/6 = 16.7 %)`);
  assert.deepEqual(tableRanges([0, 0, 1, 0]), [{ from: 0, to: 1, backend: 0 }, { from: 2, to: 2, backend: 1 }, { from: 3, to: 3, backend: 0 }]);
});

test("consistent selection: two nodes render identical rules, independent of pool order; the seed is explicit", () => {
  const p = pool();
  const q = pool({ reals: [...p.reals].reverse() });
  const r1 = renderDesired([p], CONSISTENT), r2 = renderDesired([q], CONSISTENT);
  assert.deepEqual(r1, r2);
  const svc = r1.chains.find((c) => c.chain.name === svcChainName(p.vs))!;
  const sel = svc.rules.find((r) => r.expr.startsWith("jhash"))!;
  assert.match(sel.expr, /^jhash ip saddr \. tcp sport mod 1021 seed 0x5eed vmap \{ 0(-\d+)? : goto ep-/, "per connection, seeded");
  assert.ok(!svc.rules.some((r) => /numgen/.test(r.expr)), "no per-node random or round robin left");
  assert.notDeepEqual(renderDesired([p], { ...CONSISTENT, seed: 7 }), r1, "the seed is part of the rules");
});

test("consistent selection: persistence keys on the client network (ldirectord netmask), /0 pins one real", () => {
  const sel = (netmask: string) => renderDesired([pool({ persistence: { timeout: 120, netmask } })], CONSISTENT).chains.find((c) => c.chain.name.startsWith("svc-"))!.rules;
  assert.match(sel("255.255.255.255").find((r) => r.expr.startsWith("jhash"))!.expr, /^jhash ip saddr mod 1021 seed/);
  assert.match(sel("255.255.255.0").find((r) => r.expr.startsWith("jhash"))!.expr, /^jhash @nh,96,24 mod 1021 seed/);
  assert.match(sel("255.255.240.0").find((r) => r.expr.startsWith("jhash"))!.expr, /^jhash @nh,96,16 mod 1021/, "/20 hashes the /16: same /20, same real");
  const zero = sel("0.0.0.0");
  assert.ok(zero.some((r) => /^goto ep-/.test(r.expr)) && !zero.some((r) => r.expr.startsWith("jhash")));
  // The affinity sets (timeout semantics on the node that saw the client) are still looked up first.
  assert.match(sel("255.255.255.0")[0]!.expr, /^ip saddr & 255\.255\.255\.0 @aff-/);
  assert.match(renderDesired([pool({ scheduler: "sh" })], CONSISTENT).chains.find((c) => c.chain.name.startsWith("svc-"))!.rules[0]!.expr, /^jhash ip saddr mod/, "sh: source hashing");
});

test("consistent selection: reply-first pickup maps each real back to its VIP; ambiguous or portless reals are skipped", () => {
  const a = pool();
  const b = pool({ vs: "tcp:198.51.100.51:80", address: "198.51.100.51", reals: [real(12), real(13)] });
  const c = pool({ vs: "tcp:198.51.100.52:443", address: "198.51.100.52", port: 443, reals: [{ ...real(14), port: 0 }] });
  const post = renderDesired([a, b, c], CONSISTENT).chains.find((x) => x.chain.name === "postrouting")!;
  assert.deepEqual(post.chain.base, { type: "nat", hook: "postrouting", priority: "srcnat" });
  assert.deepEqual(post.rules.map((r) => r.expr), [
    "ip saddr 203.0.113.11 tcp sport 80 counter snat to 198.51.100.50:80",
    "ip saddr 203.0.113.13 tcp sport 80 counter snat to 198.51.100.51:80",
  ], "203.0.113.12:80 serves two VIPs: no pickup; port 0: no pickup");
  assert.ok(!renderDesired([a]).chains.some((x) => x.chain.name === "postrouting"), "per-node selection has no pickup chain");
});
