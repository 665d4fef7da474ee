#!/usr/bin/env node
// An out-of-process health checker: any program, in any language, may publish health results on
// the bus; the controllers treat them like the prober's own. This one is plain Node with the NATS
// client. It TCP-connects to each real every interval and publishes a `health.result` event:
//
//   subject  lvsflow.<site>.health.<prober>.<vs>.<real>   (tokens: "." → "_", ":" → "-")
//   payload  the event envelope + data, JSON Schema: `lvsflow schema events health.result`
//
// Usage: node examples/external-publisher.mjs --nats nats://127.0.0.1:4222 --site lab
//          --name ext1 --vs tcp:198.51.100.50:80 --real 203.0.113.11:80 [--real …] [--interval 1] [--count N]
import { connect as natsConnect } from "@nats-io/transport-node";
import { connect as tcpConnect } from "node:net";
import { randomUUID } from "node:crypto";

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
const all = (k) => args.flatMap((a, i) => (a === `--${k}` ? [args[i + 1]] : []));
const site = opt("site", "default"), name = opt("name", "external"), vs = opt("vs");
const reals = all("real"), intervalMs = Number(opt("interval", "1")) * 1000, count = Number(opt("count", "0"));
if (!vs || reals.length === 0) { console.error("need --vs and at least one --real"); process.exit(2); }

/** The subject token encoding lvsflow uses for addresses (README: subjects). */
const token = (s) => s.replace(/[^A-Za-z0-9_-]/g, (c) => (c === "." ? "_" : c === ":" ? "-" : "~" + c.charCodeAt(0).toString(16)));

function check(real, timeoutMs) {
  const i = real.lastIndexOf(":");
  const host = real.slice(0, i).replace(/^\[|\]$/g, ""), port = Number(real.slice(i + 1));
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const done = (error) => { clearTimeout(timer); s.destroy(); resolve({ ok: error === null, error, latencyMs: Math.round((performance.now() - t0) * 10) / 10 }); };
    const timer = setTimeout(() => done(`timeout after ${timeoutMs} ms`), timeoutMs);
    s.once("connect", () => done(null));
    s.on("error", (e) => done(e.code ?? e.message));
  });
}

const nc = await natsConnect({ servers: opt("nats", "nats://127.0.0.1:4222").split(","), name });
const streaks = new Map();
for (let round = 0; count === 0 || round < count; round++) {
  const started = Date.now();
  await Promise.all(reals.map(async (real) => {
    const r = await check(real, Math.min(intervalMs, 3000));
    const prev = streaks.get(real);
    const streak = prev && prev.ok === r.ok ? prev.streak + 1 : 1;
    streaks.set(real, { ok: r.ok, streak });
    const ev = {
      schemaVersion: 1, id: randomUUID(), time: new Date().toISOString(),
      source: { service: "external", node: name }, causationId: null, correlationId: null, configVersion: null,
      type: "health.result",
      data: { vs, real, prober: name, ok: r.ok, streak, check: "external/tcp", latencyMs: r.latencyMs, error: r.error, httpStatus: null, matched: null },
    };
    nc.publish(`lvsflow.${site}.health.${token(name)}.${token(vs)}.${token(real)}`, JSON.stringify(ev));
  }));
  await nc.flush();
  if (count === 0 || round + 1 < count) await new Promise((r) => setTimeout(r, Math.max(0, started + intervalMs - Date.now())));
}
await nc.drain();
