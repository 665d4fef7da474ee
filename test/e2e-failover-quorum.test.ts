// End to end in namespaces, quorum mode: two LB nodes and a witness (`lvsflow run witness`),
// each voter with its own clustered nats-server on point-to-point links. A partition between the
// LBs alone changes nothing (the witness still votes for lb1); lb1 cut off from both others lets
// go before lb2 takes over; healing hands the group back. The VIP is watched on both LBs through
// `ip monitor address` and the timeline sampled every 10 ms: never two owners.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ClusterLab, VipWatch, waitFor, untilServing, probeLoop } from "../bench/failover/cluster-lab.ts";

import { tearDownLab } from "./lab-client.ts";

// Behaviour, not speed (bench/failover measures speed): generous timers keep these tests steady
// on a loaded, shared machine.
const TIMERS = { heartbeatMs: 100, deadMs: 1000 };
const dir = mkdtempSync(join(tmpdir(), "lvsflow-e2e-quorum-"));
const lab = new ClusterLab({ dir, prefix: `eq${randomBytes(2).toString("hex")}-`, system: "lvsflow", timers: TIMERS, witness: true });
const watch = new VipWatch(lab);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const onlyLb1 = async () => (await lab.holds("lb1")) && !(await lab.holds("lb2"));
let t0 = 0;

before(async () => {
  await lab.up();
  await waitFor(onlyLb1, 60_000, "lb1 to own the VIP");
  await untilServing(lab);
  await watch.start();
  t0 = Date.now();
});

after(async () => {
  watch.stop();
  await tearDownLab(() => lab.down(), lab.o.prefix, dir);
});

test("lb1–lb2 link cut, both still reach the witness: lb1 keeps the group, lb2 does not take it", async () => {
  await lab.link("lb1-lb2", false);
  await sleep(2000);
  assert.ok(await onlyLb1(), "no split brain: the witness votes for lb1");
  assert.equal(watch.events.filter((e) => e.t >= t0).length, 0, "no address moved");
  await lab.link("lb1-lb2", true);
  await sleep(500);
});

test("lb1 cut off from lb2 and the witness: the minority lets go first, the majority takes over", async () => {
  const cut = Date.now();
  await lab.link("lb1-lb2", false);
  await lab.link("lb1-w", false);
  await waitFor(async () => (await lab.holds("lb2")) && !(await lab.holds("lb1")), 10_000, "lb2 to own the VIP, lb1 not");
  const released = watch.events.find((e) => e.lb === "lb1" && !e.held && e.t >= cut)!.t;
  const taken = watch.firstAdd("lb2", cut)!;
  console.log(`# isolated owner: lb1 released after ${released - cut} ms, lb2 took over after ${taken - cut} ms`);
  assert.ok(released < taken, "released before the takeover");
  assert.match(readFileSync(join(dir, "logs", "lb1-node.log"), "utf8"), /lost quorum/);
  const rs = await probeLoop(lab, { intervalMs: 20, timeoutMs: 500, count: 20, durationMs: 1000 });
  assert.ok(rs.every((r) => r.ok), "the client is served through lb2");
});

test("healed: lb1 gets the group back by handover (lb2 yields first); never two owners at one instant", async () => {
  const heal = Date.now();
  await lab.link("lb1-lb2", true);
  await lab.link("lb1-w", true);
  await waitFor(onlyLb1, 20_000, "lb1 to take the group back");
  const released = watch.events.find((e) => e.lb === "lb2" && !e.held && e.t >= heal)!.t;
  const taken = watch.firstAdd("lb1", heal)!;
  assert.ok(released <= taken, "lb2 let go before lb1 took over");
  assert.match(readFileSync(join(dir, "logs", "lb2-node.log"), "utf8"), /preempt: yield to lb1/);
  const s = watch.doubleSamples(t0, Date.now(), 10);
  console.log(`# samples every 10 ms: ${s.samples}, two owners: ${s.double}, none: ${s.none}`);
  assert.equal(s.double, 0);
});
