// Pure tests of the nftables mapping and the reconcile planner (no kernel, no root).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PoolSpec } from "../shared/schemas/events.ts";
import { EMPTY_STATE, parseNftJson, planReconcile, summarize, type KernelState } from "../services/executor/nft/driver.ts";
import { affSetName, commentParts, epChainName, needsRouteLocalnet, NftValidationError, renderDesired, svcChainName } from "../services/executor/nft/render.ts";
import { Transaction, checkComment } from "../services/executor/nft/objects.ts";
import { runCmd } from "../services/executor/run.ts";
import { garpSchedule } from "../services/executor/addresses.ts";

const VIP = "198.51.100.50";
function seedPool(port: number, over: Partial<PoolSpec> = {}): PoolSpec {
  return {
    vs: `tcp:${VIP}:${port}`, protocol: "tcp", family: "ipv4", address: VIP, port, fwmark: null, scheduler: "wlc",
    persistence: { timeout: 120, netmask: "255.255.255.0" },
    reals: ["203.0.113.11", "203.0.113.12"].map((address) => ({ address, port, forwarding: "masq" as const, weight: 1, lowerThreshold: null, upperThreshold: null })),
    fallback: { address: "127.0.0.1", port, forwarding: "masq" },
    ...over,
  };
}
const seed = () => [seedPool(80), seedPool(443)];

/** A tiny model of the kernel: applies a planned script to a KernelState, as nft would. */
function simulate(state: KernelState, script: string): KernelState {
  const st: KernelState = structuredClone(state);
  let handle = 1000;
  for (const line of script.split("\n").filter(Boolean)) {
    const w = line.split(" ");
    const [verb, kind, , , name] = w;
    if (verb === "add" && kind === "table") st.table = true;
    else if (verb === "add" && kind === "chain") st.chains[name] ??= { name, handle: handle++, hook: /hook (\w+)/.exec(line)?.[1] ?? null, rules: [] };
    else if (verb === "add" && kind === "set") {
      const t = Number(/timeout (\d+)s/.exec(line)![1]);
      if (st.sets[name]) st.sets[name].timeoutS = t;
      else st.sets[name] = { name, handle: handle++, type: "ipv4_addr", timeoutS: t, elements: 0 };
    } else if (verb === "add" && kind === "rule") {
      assert.ok(st.chains[name], `rule added to missing chain: ${line}`);
      const refs = [...line.matchAll(/goto ([\w-]+)/g)].map((m) => m[1]).concat([...line.matchAll(/(@[\w-]+)/g)].map((m) => m[1]));
      st.chains[name].rules.push({ handle: handle++, ...commentParts(/comment "([^"]*)"$/.exec(line)?.[1]), refs });
    } else if (verb === "flush") st.chains[name].rules = [];
    else if (verb === "delete" && kind === "chain") delete st.chains[name];
    else if (verb === "delete" && kind === "set") delete st.sets[name];
    else assert.fail(`unexpected statement ${line}`);
  }
  return st;
}

const ep = (port: number, last: number) => epChainName(`tcp:${VIP}:${port}`, `203.0.113.${last}:${port}`);
const aff = (port: number, last: number) => affSetName(`tcp:${VIP}:${port}`, `203.0.113.${last}:${port}`);
const svc = (port: number) => svcChainName(`tcp:${VIP}:${port}`);

test("seed on an empty kernel: one transaction with table, chains, sets and rules", () => {
  const p = planReconcile(seed(), EMPTY_STATE);
  const lines = p.script.trim().split("\n");
  assert.equal(p.changes, lines.length);
  assert.deepEqual(p.ops, lines);
  assert.equal(lines[0], "add table ip lvsflow");
  assert.ok(lines.includes("add chain ip lvsflow prerouting { type nat hook prerouting priority dstnat; policy accept; }"));
  assert.ok(lines.includes("add chain ip lvsflow output { type nat hook output priority -100; policy accept; }"));
  assert.equal(lines.filter((l) => l.startsWith("add set")).length, 4);
  assert.ok(lines.includes(`add set ip lvsflow ${aff(80, 11)} { type ipv4_addr; flags dynamic,timeout; timeout 120s; comment "tcp:${VIP}:80 203.0.113.11:80"; }`));
  assert.match(p.script, new RegExp(`add rule ip lvsflow prerouting ip daddr ${VIP} tcp dport 443 goto ${svc(443)} comment "tcp:${VIP}:443 #[0-9a-f]{12}"`));
  assert.match(p.script, new RegExp(`add rule ip lvsflow ${svc(80)} ip saddr & 255.255.255.0 @${aff(80, 12)} goto ${ep(80, 12)} `));
  assert.match(p.script, new RegExp(`add rule ip lvsflow ${svc(80)} numgen random mod 2 vmap \\{ 0 : goto ${ep(80, 11)}, 1 : goto ${ep(80, 12)} \\}`));
  assert.match(p.script, new RegExp(`add rule ip lvsflow ${svc(80)} meta l4proto tcp counter dnat to 127.0.0.1:80 comment "fallback #`));
  assert.match(p.script, new RegExp(`add rule ip lvsflow ${ep(443, 11)} update @${aff(443, 11)} \\{ ip saddr & 255.255.255.0 \\}`));
  assert.match(p.script, new RegExp(`add rule ip lvsflow ${ep(443, 11)} meta l4proto tcp counter dnat to 203.0.113.11:443 comment "203.0.113.11:443 #`));
  // names are short and stable
  assert.match(svc(80), /^svc-[0-9a-f]{8}$/);
  assert.match(ep(80, 11), /^ep-[0-9a-f]{8}-[0-9a-f]{8}$/);
  assert.equal(svc(80), svcChainName("tcp:198.51.100.50:80"));
  assert.equal(needsRouteLocalnet(seed()), true);
  assert.equal(needsRouteLocalnet([seedPool(80, { fallback: null })]), false);
});

test("plan against the state it just produced is empty", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const again = planReconcile(seed(), st);
  assert.deepEqual(again, { script: "", ops: [], changes: 0, reasons: [] });
  assert.equal(summarize(st), "2 services, 4 reals, 2 fallbacks, 0 affinity entries");
  // the order of pools and reals does not matter
  const shuffled = seed().reverse().map((p) => ({ ...p, reals: [...p.reals].reverse() }));
  assert.equal(planReconcile(shuffled, st).changes, 0);
});

test("removing a real deletes its chain and set, keeps everyone else's sets", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const pools = seed();
  pools[0].reals = pools[0].reals.filter((r) => r.address !== "203.0.113.12");
  const p = planReconcile(pools, st);
  assert.ok(p.ops.includes(`delete chain ip lvsflow ${ep(80, 12)}`));
  assert.ok(p.ops.includes(`delete set ip lvsflow ${aff(80, 12)}`));
  assert.ok(p.ops.includes(`flush chain ip lvsflow ${svc(80)}`));
  assert.equal(p.ops.filter((o) => o.startsWith("delete")).length, 2);
  assert.ok(!p.ops.some((o) => o.includes(" set ") && !o.includes(aff(80, 12))), "no other set is added or deleted");
  for (const untouched of [ep(80, 11), svc(443), ep(443, 11), ep(443, 12), "prerouting", "output"]) {
    assert.ok(!p.ops.some((o) => o.split(" ")[4] === untouched), `${untouched} untouched`);
  }
  // the removal comes after the flush that drops the references to it
  assert.ok(p.ops.indexOf(`flush chain ip lvsflow ${svc(80)}`) < p.ops.indexOf(`delete chain ip lvsflow ${ep(80, 12)}`));
  const after = simulate(st, p.script);
  assert.equal(after.sets[aff(80, 11)].handle, st.sets[aff(80, 11)].handle);
  assert.equal(planReconcile(pools, after).changes, 0);
});

test("quiescent real (weight 0) keeps its endpoint chain and affinity set but leaves the vmap", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const pools = seed();
  pools[0].reals[1].weight = 0;
  const p = planReconcile(pools, st);
  assert.deepEqual(p.ops.filter((o) => !o.includes(svc(80))), [], "only the service chain changes");
  assert.ok(p.ops.some((o) => o.includes(`@${aff(80, 12)} goto ${ep(80, 12)}`)), "affinity lookup stays");
  assert.ok(p.ops.some((o) => o.includes(`numgen random mod 1 vmap { 0 : goto ${ep(80, 11)} }`)));
  assert.ok(!p.ops.some((o) => o.startsWith("delete")));
});

test("persistence: timeout change updates the set in place, netmask /32 uses plain saddr, none drops sets", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const longer = seed().map((p) => ({ ...p, persistence: { timeout: 300, netmask: "255.255.255.0" } }));
  const p = planReconcile(longer, st);
  assert.equal(p.ops.length, 4);
  assert.ok(p.ops.every((o) => o.startsWith("add set") && o.includes("timeout 300s")));
  const host = renderDesired([seedPool(80, { persistence: { timeout: 60, netmask: "255.255.255.255" } })]);
  const rules = host.chains.flatMap((c) => c.rules.map((r) => r.expr));
  assert.ok(rules.includes(`ip saddr @${aff(80, 11)} goto ${ep(80, 11)}`));
  assert.ok(rules.includes(`update @${aff(80, 11)} { ip saddr }`));
  const off = planReconcile(seed().map((x) => ({ ...x, persistence: null })), st);
  assert.equal(off.ops.filter((o) => o.startsWith("delete set")).length, 4);
});

test("schedulers: wrr exact weights (gcd-reduced), sh source hash, fo highest weight", () => {
  const w = (scheduler: string, weights: number[]) => {
    const p = seedPool(80, { scheduler, persistence: null });
    p.reals.forEach((r, i) => (r.weight = weights[i]));
    return renderDesired([p]).chains.find((c) => c.chain.name === svc(80))!.rules.map((r) => r.expr);
  };
  assert.equal(w("wrr", [7, 3])[0], `numgen inc mod 10 vmap { 0-6 : goto ${ep(80, 11)}, 7-9 : goto ${ep(80, 12)} }`);
  assert.equal(w("rr", [200, 100])[0], `numgen inc mod 3 vmap { 0-1 : goto ${ep(80, 11)}, 2 : goto ${ep(80, 12)} }`);
  assert.match(w("sh", [1, 1])[0], /^jhash ip saddr mod 2 vmap/);
  assert.equal(w("fo", [1, 5])[0], `goto ${ep(80, 12)}`);
  assert.match(w("lc", [1, 1])[0], /^numgen random mod 2 vmap/);
});

test("empty pool: fallback when set, otherwise reject (tcp reset / icmp) so clients fail fast", () => {
  const rules = (p: PoolSpec) => renderDesired([p]).chains.find((c) => c.chain.name === svcChainName(p.vs))!.rules.map((r) => r.expr);
  assert.deepEqual(rules(seedPool(80, { reals: [], persistence: null })), ["meta l4proto tcp counter dnat to 127.0.0.1:80"]);
  assert.deepEqual(rules(seedPool(80, { reals: [], persistence: null, fallback: null })), ["meta l4proto tcp reject with tcp reset"]);
  assert.deepEqual(rules(seedPool(53, { protocol: "udp", vs: `udp:${VIP}:53`, reals: [], persistence: null, fallback: null })), ["reject"]);
  const fwm = seedPool(0, { protocol: "fwm", vs: "fwm:7", fwmark: 7, address: null, persistence: null, fallback: null });
  const d = renderDesired([fwm]);
  assert.equal(d.chains[0].rules[0].expr, `meta mark 7 goto ${svcChainName("fwm:7")}`);
  assert.ok(d.chains.some((c) => c.rules.some((r) => r.expr === "counter dnat to 203.0.113.11")));
});

test("validation: unsupported forwarding, IPv6, bad addresses and names are rejected before any nft text", () => {
  const bad = (p: PoolSpec | PoolSpec[], re: RegExp) =>
    assert.throws(() => planReconcile(Array.isArray(p) ? p : [p], EMPTY_STATE), (e: Error) => e instanceof NftValidationError && re.test(e.message));
  const gate = seedPool(80);
  gate.reals[0].forwarding = "gate";
  bad(gate, /forwarding "gate" \(LVS-DR\) is not supported .* only masq/);
  const ipip = seedPool(80);
  ipip.reals[1].forwarding = "ipip";
  bad(ipip, /"ipip"/);
  bad(seedPool(80, { family: "ipv6", address: "2001:db8::1" }), /ipv6 is not supported/);
  bad(seedPool(80, { address: "198.51.100.300" }), /not an IPv4 address/);
  const badReal = seedPool(80);
  badReal.reals[0].address = "203.0.113.11; flush ruleset";
  bad(badReal, /not an IPv4 address/);
  bad(seedPool(80, { vs: 'tcp:x" ; flush ruleset ; "' }), /invalid virtual service id/);
  bad(seedPool(80, { persistence: { timeout: 120, netmask: "255.0.255.0" } }), /not contiguous/);
  bad(seedPool(80, { scheduler: "magic" }), /unknown scheduler/);
  bad(seedPool(80, { fallback: { address: "192.0.2.80", port: 80, forwarding: "gate" } }), /fallback forwarding/);
  const dup = seedPool(80);
  dup.reals[1].address = dup.reals[0].address;
  bad(dup, /listed twice/);
  bad([seedPool(80), seedPool(80, { vs: "web-again" })], /both claim tcp:198.51.100.50:80/);
  // ldirectord's classic local fallback with "gate" is accepted (IPVS serves it locally anyway)
  assert.doesNotThrow(() => renderDesired([seedPool(80, { fallback: { address: "127.0.0.1", port: 80, forwarding: "gate" } })]));
  assert.throws(() => checkComment('a"b'));
  assert.throws(() => new Transaction().add({ kind: "rule", chain: "x", expr: "counter; flush ruleset" }));
});

test("drift: a hand-deleted rule or a stranger's chain is found and only that is repaired", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const drifted = structuredClone(st);
  drifted.chains[svc(443)].rules.splice(1, 1);
  drifted.chains["intruder"] = { name: "intruder", handle: 5, hook: null, rules: [{ handle: 6, label: "", hash: null, refs: [] }] };
  const p = planReconcile(seed(), drifted);
  assert.deepEqual(p.ops.filter((o) => /^(flush|delete)/.test(o)), [
    `flush chain ip lvsflow ${svc(443)}`, "flush chain ip lvsflow intruder", "delete chain ip lvsflow intruder",
  ]);
  assert.equal(p.reasons.length, 2);
  assert.equal(planReconcile(seed(), simulate(drifted, p.script)).changes, 0);
});

test("parseNftJson reads chains, sets, rule comments; absent pieces default", () => {
  const json = JSON.stringify({ nftables: [
    { metainfo: { version: "1.0.6" } },
    { table: { family: "ip", name: "lvsflow", handle: 1 } },
    { set: { family: "ip", name: "aff-1", table: "lvsflow", type: "ipv4_addr", handle: 5, flags: ["timeout"], timeout: 120, elem: [{ elem: { val: "198.51.100.0", timeout: 120, expires: 100 } }] } },
    { chain: { family: "ip", table: "lvsflow", name: "prerouting", handle: 1, type: "nat", hook: "prerouting", prio: -100, policy: "accept" } },
    { chain: { family: "ip", table: "lvsflow", name: "svc-1", handle: 3 } },
    { rule: { family: "ip", table: "lvsflow", chain: "svc-1", handle: 8, comment: "fallback #0123456789ab", expr: [] } },
    { rule: { family: "ip", table: "lvsflow", chain: "svc-1", handle: 9, expr: [
      { match: { op: "==", left: { payload: { protocol: "ip", field: "saddr" } }, right: "@aff-1" } },
      { vmap: { key: { numgen: { mode: "inc", mod: 1, offset: 0 } }, data: { set: [[0, { goto: { target: "ep-1" } }]] } } },
    ] } },
  ] });
  const st = parseNftJson(json);
  assert.equal(st.table, true);
  assert.equal(st.chains.prerouting.hook, "prerouting");
  assert.deepEqual(st.chains["svc-1"].rules, [
    { handle: 8, label: "fallback", hash: "0123456789ab", refs: [] },
    { handle: 9, label: "", hash: null, refs: ["ep-1", "@aff-1"] },
  ]);
  assert.deepEqual(st.sets["aff-1"], { name: "aff-1", handle: 5, type: "ipv4_addr", timeoutS: 120, elements: 1 });
  assert.equal(summarize(st), "1 service, 0 reals, 1 fallback, 1 affinity entry");
});

test("misfits: a squatting set of another type or a chain with the wrong hook is unhooked, deleted and recreated", () => {
  const st = simulate(EMPTY_STATE, planReconcile(seed(), EMPTY_STATE).script);
  const bad = structuredClone(st);
  bad.sets[aff(80, 12)].type = "ipv6_addr";
  bad.chains[ep(443, 11)].hook = "input";
  const p = planReconcile(seed(), bad);
  const i = (o: string) => p.ops.indexOf(o);
  for (const c of [svc(80), ep(80, 12), svc(443), ep(443, 11)]) assert.ok(i(`flush chain ip lvsflow ${c}`) >= 0, `${c} flushed`);
  assert.ok(i(`flush chain ip lvsflow ${svc(80)}`) < i(`delete set ip lvsflow ${aff(80, 12)}`));
  assert.ok(i(`delete set ip lvsflow ${aff(80, 12)}`) < p.ops.findIndex((o) => o.startsWith(`add set ip lvsflow ${aff(80, 12)} `)));
  assert.ok(i(`delete chain ip lvsflow ${ep(443, 11)}`) < i(`add chain ip lvsflow ${ep(443, 11)} { comment "tcp:${VIP}:443 203.0.113.11:443"; }`));
  assert.equal(p.ops.filter((o) => o.startsWith("flush")).length, 4, "each chain flushed once");
  for (const n of [aff(443, 12), aff(80, 11), ep(80, 11), ep(443, 12)]) assert.ok(!p.ops.some((o) => o.split(" ")[4] === n), `${n} untouched`);
  const fixed = simulate(bad, p.script);
  fixed.sets[aff(80, 12)].type = "ipv4_addr"; // the simulator keeps no types: the re-added set has the right one
  fixed.chains[ep(443, 11)].hook = null;
  assert.equal(planReconcile(seed(), fixed).changes, 0);
});

test("runCmd: argv without a shell, stdin input, timeout kills, bad netns names refused", async () => {
  const echo = await runCmd([process.execPath, "-e", "process.stdin.pipe(process.stdout); console.error(process.argv[1])", "$(id) ; `x`"], { input: "in\n" });
  assert.deepEqual(echo, { code: 0, stdout: "in\n", stderr: "$(id) ; `x`\n" });
  const t0 = Date.now();
  const slow = await runCmd([process.execPath, "-e", "setTimeout(() => {}, 10000)"], { timeoutMs: 200 });
  assert.equal(slow.code, 124);
  assert.ok(Date.now() - t0 < 3000);
  assert.equal((await runCmd(["/nonexistent/tool"])).code, 127);
  await assert.rejects(runCmd(["true"], { netns: "x; reboot" }), /invalid network namespace/);
  await assert.rejects(runCmd(["true"], { netns: ".." }), /invalid network namespace/);
});

test("garpSchedule fires at the offsets and can be cancelled", async () => {
  const fired: number[] = [];
  const t0 = Date.now();
  garpSchedule([0, 30], () => fired.push(Date.now() - t0));
  const cancel = garpSchedule([20, 60], () => fired.push(-1));
  setTimeout(cancel, 40);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(fired.filter((f) => f >= 0).length, 2);
  assert.equal(fired.filter((f) => f === -1).length, 1, "the 60 ms GARP was cancelled");
  assert.throws(() => garpSchedule([-5], () => {}));
});
