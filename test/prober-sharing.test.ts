// Probe-group sharing without I/O: rendezvous hashing spreads targets evenly, moves only what it
// must when members come and go, and membership follows heartbeats, silence and clean leaves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Membership, ownerOf, heartbeatPeriodMs, MISSED_HEARTBEATS } from "../services/prober/sharing.ts";

const keys = Array.from({ length: 10_000 }, (_, i) => `tcp:198.51.100.50:80|203.0.113.${i % 250}:${8000 + Math.floor(i / 250)}`);

function share(members: string[]): Map<string, string> {
  return new Map(keys.map((k) => [k, ownerOf(k, members)!]));
}

test("rendezvous hashing: every target has exactly one owner, spread evenly", () => {
  const a = share(["p1", "p2", "p3"]);
  const counts: Record<string, number> = {};
  for (const o of a.values()) counts[o] = (counts[o] ?? 0) + 1;
  assert.deepEqual(Object.keys(counts).sort(), ["p1", "p2", "p3"]);
  for (const n of Object.values(counts)) assert.ok(Math.abs(n - keys.length / 3) < keys.length * 0.03, JSON.stringify(counts));
  assert.equal(ownerOf("x", []), null);
  // Order of the member list does not matter: every prober computes the same answer.
  assert.deepEqual([...share(["p3", "p1", "p2"]).values()], [...a.values()]);
});

test("rendezvous hashing: a member leaving moves only its own targets; a member joining takes ~1/n", () => {
  const before = share(["p1", "p2", "p3"]);
  const after = share(["p1", "p3"]);
  let moved = 0;
  for (const k of keys) {
    if (before.get(k) !== after.get(k)) {
      moved++;
      assert.equal(before.get(k), "p2", "a target of a surviving member moved");
    }
  }
  assert.equal(moved, [...before.values()].filter((o) => o === "p2").length);
  const joined = share(["p1", "p2", "p3", "p4"]);
  let toNew = 0;
  for (const k of keys) {
    if (joined.get(k) !== before.get(k)) { assert.equal(joined.get(k), "p4"); toNew++; }
  }
  assert.ok(Math.abs(toNew - keys.length / 4) < keys.length * 0.03, `p4 took ${toNew}`);
});

test("membership: heartbeats add members, silence and leaving remove them", () => {
  const m = new Membership("p1");
  assert.deepEqual(m.alive(0), ["p1"]);
  assert.equal(m.heard("p2", 0, 100, false), true);
  assert.equal(m.heard("p2", 100, 100, false), false); // no change
  assert.equal(m.heard("p1", 100, 100, false), false); // own echo ignored
  assert.equal(m.heard("p3", 100, 100, false), true);
  assert.deepEqual(m.alive(150), ["p1", "p2", "p3"]);
  // p2 silent: gone after MISSED_HEARTBEATS periods.
  const prev = m.alive(100);
  assert.equal(m.expire(100 + 100 * MISSED_HEARTBEATS, prev), false);
  m.heard("p3", 300, 100, false);
  assert.equal(m.expire(101 + 100 * MISSED_HEARTBEATS, prev), true);
  assert.deepEqual(m.alive(101 + 100 * MISSED_HEARTBEATS), ["p1", "p3"]);
  assert.equal(m.heard("p3", 400, 100, true), true); // clean leave
  assert.deepEqual(m.alive(400), ["p1"]);
  assert.deepEqual([heartbeatPeriodMs(1000), heartbeatPeriodMs(100), heartbeatPeriodMs(10_000)], [250, 100, 1000]);
});
