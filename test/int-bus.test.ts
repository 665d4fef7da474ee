// The bus against a real nats-server: invalid messages are rejected, counted, reported and
// never reach a handler or crash the subscriber; valid ones still flow afterwards.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { Bus } from "../shared/bus.ts";
import { makeEvent, Event } from "../shared/schemas/events.ts";
import { registry } from "../shared/metrics.ts";
import { startServers, sleep } from "./harness.ts";

const servers = await startServers();
after(() => servers.stop());

test("invalid events are rejected, counted and reported; valid ones are delivered", async () => {
  const bus = await new Bus({ servers: [servers.natsUrl], name: "t", site: "t", node: "n1", service: "controller", log: pino({ level: "silent" }) }).connect();
  const raw = await connect({ servers: servers.natsUrl });
  try {
    const got: string[] = [];
    const rejected: Event[] = [];
    bus.subscribe("lvsflow.t.heartbeat.*", ["node.heartbeat"], (ev) => void got.push(ev.id));
    const rs = raw.subscribe("lvsflow.t.rejected.>");
    void (async () => { for await (const m of rs) rejected.push(Event.parse(m.json())); })();
    await raw.flush();
    const hb = (node: string) => makeEvent("node.heartbeat", { node, priority: 1, seq: 1, startedAt: new Date().toISOString(), appliedGeneration: 0, owned: [], faults: [], driver: "nftables" }, { source: { service: "executor", node } });
    raw.publish("lvsflow.t.heartbeat.x", "not json {");
    raw.publish("lvsflow.t.heartbeat.x", JSON.stringify({ ...hb("x"), schemaVersion: 99 }));
    raw.publish("lvsflow.t.heartbeat.x", JSON.stringify({ ...hb("x"), data: { node: "x" } }));
    raw.publish("lvsflow.t.heartbeat.x", JSON.stringify(makeEvent("peer.state", { observer: "a", peer: "b", alive: true, lastSeenMsAgo: 0 }, { source: { service: "controller", node: "a" } })));
    raw.publish("lvsflow.t.heartbeat.x", new Uint8Array([0xff, 0xfe, 0x00]));
    const good = hb("lb1");
    raw.publish("lvsflow.t.heartbeat.lb1", JSON.stringify(good));
    await raw.flush();
    for (let i = 0; i < 50 && (got.length < 1 || rejected.length < 5); i++) await sleep(20);
    assert.deepEqual(got, [good.id], "only the valid heartbeat reached the handler");
    assert.equal(rejected.length, 5, "each invalid message reported once");
    assert.ok(rejected.every((r) => r.type === "bus.rejected" && r.data.subject === "lvsflow.t.heartbeat.x"));
    assert.match(JSON.stringify(rejected.map((r) => r.type === "bus.rejected" && r.data.reason)), /not JSON.*schemaVersion.*unexpected event type/s);
    const metric = (await registry.getSingleMetricAsString("lvsflow_events_rejected_total"));
    assert.match(metric, /lvsflow_events_rejected_total\{subject="lvsflow\.t\.heartbeat"\} 5/);
  } finally {
    await raw.close();
    await bus.close();
  }
});
