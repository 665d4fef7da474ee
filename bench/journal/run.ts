// What the input journal costs: CPU per machine input with and without it, how many inputs it
// keeps (idle ticks are left out), and the bytes it publishes per hour, for the lab's load (two
// nodes heartbeating every 50 ms, owner ticks every 25 ms, pool ticks every 250 ms, two probers'
// summaries every 5 s for two virtual services of two reals) in simulated time, plus the time a
// replay of that journal takes. Run: node --import tsx bench/journal/run.ts [minutes=10]
import { createActor } from "xstate";
import { VirtualService } from "../../shared/schemas/config.ts";
import { makeEvent, type Event } from "../../shared/schemas/events.ts";
import { poolMachine } from "../../services/controller/pool-machine.ts";
import { ownershipMachine } from "../../services/controller/ownership-machine.ts";
import { InputJournal, type InputBatch } from "../../services/controller/journal.ts";
import { replay, type RecordedBatch } from "../../services/controller/replayer.ts";

const minutes = Number(process.argv[2] ?? 10);
const vss = [80, 443].map((port) => VirtualService.parse({
  id: `tcp:198.51.100.50:${port}`, protocol: "tcp", address: "198.51.100.50", port, fwmark: null, family: "ipv4", scheduler: "wlc", persistence: null, quiescent: false,
  check: { type: "connect", service: "none", request: "", receive: "", port: null, interval: 5, timeout: 5, failureCount: 1 },
  fallback: null, reals: [{ address: "203.0.113.11", port, forwarding: "masq", weight: 1 }, { address: "203.0.113.12", port, forwarding: "masq", weight: 1 }],
}));

function run(journaled: boolean) {
  let clock = 1_800_000_000_000;
  const end = clock + minutes * 60_000;
  const batches: RecordedBatch[] = [];
  let bytes = 0;
  const decisions = new Map<string, Event>();
  const journal = journaled ? new InputJournal({ now: () => clock, flushMs: 0, checkpointMs: 0, publish: (b: InputBatch) => { bytes += JSON.stringify(b).length; batches.push({ node: "lb1", ...b }); return true; } }) : null;
  const src = { service: "controller" as const, node: "lb1" };
  const pools = vss.map((vs) => {
    const input = { vs, policy: "all" as const, now: clock };
    const a = createActor(poolMachine, { input });
    journal?.attach(`pool:${vs.id}`, "pool", a as never, input, null);
    a.on("decision", (d) => { const ev = makeEvent("decision.pool", { node: "lb1", generation: decisions.size + 1, pool: d.pool, changes: d.changes, fallbackActive: d.fallbackActive }, { source: src, causationId: d.causationId }); journal?.decided(ev.id); decisions.set(ev.id, ev); });
    a.start();
    return a;
  });
  const oInput = { self: "lb1", group: "web", priority: 150, preempt: true, preemptDelayMs: 0, deadMs: 300, now: clock };
  const owner = createActor(ownershipMachine, { input: oInput });
  journal?.attach("owner:web", "owner", owner as never, oInput, null);
  owner.on("decision", (d) => { const ev = makeEvent("decision.owner", { node: "lb1", generation: decisions.size + 1, group: "web", role: d.role, term: d.term, owner: d.owner, addresses: [], garpScheduleMs: [], why: d.why }, { source: src, causationId: d.causationId }); journal?.decided(ev.id); decisions.set(ev.id, ev); });
  owner.start();
  let inputs = 0;
  let n = 0;
  const t0 = process.hrtime.bigint();
  for (let t = clock; t < end; t += 25) {
    clock = t;
    owner.send({ type: "TICK", now: t }); inputs++;
    if (t % 50 === 0) for (const node of ["lb1", "lb2"]) { owner.send({ type: "HEARTBEAT", now: t, node, priority: node === "lb1" ? 150 : 100, holds: node === "lb1" && owner.getSnapshot().context.s.role === "owner" ? owner.getSnapshot().context.s.term : null, faults: [], eventId: `hb-${++n}` }); inputs++; }
    if (t % 250 === 0) for (const p of pools) { p.send({ type: "TICK", now: t }); inputs++; }
    if (t % 5000 === 0) for (const prober of ["lb1", "lb2"]) for (const [i, p] of pools.entries()) for (const real of vss[i]!.reals) { p.send({ type: "HEALTH", now: t, eventId: `sum-${++n}`, real: `${real.address}:${real.port}`, prober, ok: true, streak: 3, at: t, error: null, check: "summary" }); inputs++; }
    if (journal && t % 1000 === 0) journal.flush();
    if (journal && t % 60_000 === 0) journal.checkpoint();
  }
  journal?.stop();
  const ns = Number(process.hrtime.bigint() - t0);
  return { inputs, ns, bytes, batches, decisions, recorded: journal?.recorded ?? 0, start: 1_800_000_000_000, end };
}

run(false); run(true); // warm-up
const plain = run(false);
const withJ = run(true);
const perHour = (withJ.bytes / minutes) * 60;
console.log(`simulated ${minutes} min of the lab's load: ${withJ.inputs} machine inputs (${(withJ.inputs / minutes / 60).toFixed(0)}/s)`);
console.log(`CPU per input: ${(plain.ns / plain.inputs / 1000).toFixed(2)} µs plain, ${(withJ.ns / withJ.inputs / 1000).toFixed(2)} µs journaled (×${(withJ.ns / plain.ns).toFixed(2)})`);
console.log(`journaled ${withJ.recorded} of ${withJ.inputs} inputs (${((100 * withJ.recorded) / withJ.inputs).toFixed(1)} %: idle ticks left out), ${withJ.batches.length} batches`);
console.log(`journal volume: ${(perHour / 1024 / 1024).toFixed(2)} MiB/hour per controller on the bus (events as JSON, entries deflated), ${(perHour * 24 / 1024 / 1024).toFixed(0)} MiB/day`);
const r0 = process.hrtime.bigint();
const rep = replay(withJ.batches, withJ.decisions, withJ.start, withJ.end);
const replayMs = Number(process.hrtime.bigint() - r0) / 1e6;
console.log(`replay of the ${minutes} min: ${replayMs.toFixed(0)} ms (${((minutes * 60_000) / replayMs).toFixed(0)}× real time), ${rep.identical}/${rep.compared} decisions identical, ok=${rep.ok}`);
