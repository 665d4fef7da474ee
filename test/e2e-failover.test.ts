// End to end in namespaces, two LB nodes without a witness (VRRP mode, the default): takeover
// when the owner dies (its links cut and its lvsflow SIGKILLed) with long-lived connections
// surviving, preempt when it returns, a graceful stop that hands over, and bus loss (every
// nats-server gone): nobody moves, and the nodes say they have no bus. Real nats-servers (one per
// LB namespace, clustered), nftables, ip addresses and TCP traffic (bench/failover/cluster-lab.ts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ClusterLab, VipWatch, waitFor, untilServing, probeLoop, echoClients, largestGap } from "../bench/failover/cluster-lab.ts";

import { tearDownLab } from "./lab-client.ts";

// Behaviour, not speed (bench/failover measures speed): generous timers keep these tests steady
// on a loaded, shared machine.
const TIMERS = { heartbeatMs: 100, deadMs: 1000 };
const dir = mkdtempSync(join(tmpdir(), "lvsflow-e2e-failover-"));
const lab = new ClusterLab({ dir, prefix: `ef${randomBytes(2).toString("hex")}-`, system: "lvsflow", timers: TIMERS });
const watch = new VipWatch(lab);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const onlyLb1 = async () => (await lab.holds("lb1")) && !(await lab.holds("lb2"));

before(async () => {
  await lab.up();
  await waitFor(onlyLb1, 60_000, "lb1 to own the VIP");
  await untilServing(lab);
  await watch.start();
});

after(async () => {
  watch.stop();
  await tearDownLab(() => lab.down(), lab.o.prefix, dir);
});

test("takeover: lb1 dies (links cut, lvsflow SIGKILLed); lb2 serves the VIP and every long-lived connection survives", async () => {
  const echo = echoClients(lab, { conns: 10, intervalMs: 50, durationMs: 6000, graceMs: 7000 });
  await echo.ready;
  const probes = probeLoop(lab, { intervalMs: 20, timeoutMs: 150, count: 175, durationMs: 3500 });
  await probes.ready;
  await sleep(1000);
  const t0 = Date.now();
  await lab.links("lb1", false);
  await lab.kill9("lb1");
  const rs = await probes;
  const moved = watch.firstAdd("lb2", t0);
  const gap = largestGap(rs, 20);
  console.log(`# takeover: VIP on lb2 after ${moved === null ? "never" : moved - t0} ms, client gap ${gap} ms`);
  assert.ok(moved !== null, "lb2 added the VIP");
  assert.ok(rs.slice(-20).every((r) => r.ok), "served through lb2 at the end");
  assert.ok(gap < 2000, `gap ${gap} ms (bounded generously: a shared machine)`);
  const conns = await echo;
  assert.equal(conns.length, 10);
  assert.deepEqual(conns.filter((c) => !c.ok), [], "consistent selection: the same real on lb2, no reset");
});

test("preempt: lb1 returns and takes the group back under a newer term; lb2 lets go", async () => {
  await lab.links("lb1", true);
  await lab.restart("lb1");
  await waitFor(onlyLb1, 30_000, "lb1 to preempt");
  const log = readFileSync(join(dir, "logs", "lb1-node.log"), "utf8");
  assert.match(log, /"role":"owner","term":3,"why":"preempt: priority 150 > lb2's 100"/);
});

test("graceful stop: lb1 hands over (lb2 first holds a newer term, then lb1 lets go); it comes back by preempt", async () => {
  const probes = probeLoop(lab, { intervalMs: 20, timeoutMs: 150, count: 125, durationMs: 2500 });
  await probes.ready;
  await sleep(700);
  const t0 = Date.now();
  await lab.stop("lb1");
  const rs = await probes;
  assert.ok(await lab.holds("lb2"), "lb2 holds the VIP");
  assert.ok(!(await lab.holds("lb1")), "lb1 released it when it stopped (not left stale as after a crash)");
  assert.ok(rs.slice(-10).every((r) => r.ok));
  const added = watch.firstAdd("lb2", t0)!, removed = watch.events.find((e) => e.lb === "lb1" && !e.held && e.t >= t0)!.t;
  console.log(`# graceful: lb2 added the VIP ${added - t0} ms after SIGTERM, lb1 removed it ${removed - t0} ms after; client gap ${largestGap(rs, 20)} ms`);
  assert.ok(added <= removed, "take first, then let go: no instant without an owner");
  await lab.restart("lb1");
  await waitFor(onlyLb1, 30_000, "lb1 back");
});

test("bus loss: every nats-server killed; both nodes keep their roles (lb1 the VIP) and log that they lost the bus", async () => {
  const t0 = Date.now();
  for (const v of ["lb1", "lb2"] as const) lab.killNats(v);
  await sleep(2500);
  assert.ok(await onlyLb1(), "no node moved while no bus existed");
  assert.equal(watch.events.filter((e) => e.t >= t0).length, 0, "no address change at all");
  for (const lb of ["lb1", "lb2"]) assert.match(readFileSync(join(dir, "logs", `${lb}-node.log`), "utf8"), /bus disconnected; keeping last state/);
  const rs = await probeLoop(lab, { intervalMs: 20, timeoutMs: 500, count: 20, durationMs: 1000 });
  assert.ok(rs.every((r) => r.ok), "the data plane kept serving (fail static)");
  for (const v of ["lb1", "lb2"] as const) await lab.restartNats(v);
  await sleep(2000);
  assert.ok(await onlyLb1(), "still lb1 after the bus came back: no flap");
});
