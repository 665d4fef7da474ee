// Heartbeat inter-arrival gaps as one node's controller sees them (run inside that node's
// namespace, against its nats-server). usage: hb-observer.ts NATS_URL SITE DURATION_MS
// Prints one JSON line: node → { n, p50, p99, p999, max, over: {150, 200, 300, 500} } in ms.
import { connect } from "@nats-io/transport-node";

const [url, site, dur] = process.argv.slice(2);
const durationMs = Math.min(Number(dur), 3_600_000);
const nc = await connect({ servers: url!, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
const last = new Map<string, number>();
const gaps = new Map<string, number[]>();
const sub = nc.subscribe(`lvsflow.${site}.heartbeat.*`);
void (async () => {
  for await (const m of sub) {
    const t = performance.now();
    const node = m.subject.split(".").at(-1)!;
    const l = last.get(node);
    if (l !== undefined) { if (!gaps.has(node)) gaps.set(node, []); gaps.get(node)!.push(t - l); }
    last.set(node, t);
  }
})();
await new Promise((r) => setTimeout(r, durationMs));
const q = (a: number[], p: number) => a[Math.min(a.length - 1, Math.floor(p * a.length))] ?? 0;
const out: Record<string, unknown> = {};
for (const [node, g] of gaps) {
  g.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  out[node] = { n: g.length, p50: r(q(g, 0.5)), p99: r(q(g, 0.99)), p999: r(q(g, 0.999)), max: r(g.at(-1) ?? 0), over: Object.fromEntries([150, 200, 300, 500].map((x) => [x, g.filter((v) => v > x).length])) };
}
process.stdout.write(JSON.stringify(out) + "\n");
await nc.close();
process.exit(0);
