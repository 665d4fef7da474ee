// `lvsflow status`: listens to the bus for a moment and shows, per floating group, who holds it
// under which term, and per virtual service the pool each node's controller decided.
import { connect } from "@nats-io/transport-node";
import { Event, type EventOf } from "../../shared/schemas/events.ts";
import { parseCommon } from "./options.ts";
import { natsAuthFromEnv, natsConnectOptions, type NatsAuth } from "../../shared/secrets.ts";

export interface ClusterView {
  nodes: Record<string, { priority: number; owned: { group: string; term: number }[]; faults: string[]; ageMs: number; appliedGeneration: number }>;
  pools: Record<string, Record<string, { reals: string[]; fallback: string | null; generation: number }>>;
  owners: Record<string, Record<string, { role: string; term: number; why: string }>>;
  health: Record<string, Record<string, { ok: boolean; streak: number; ageMs: number; prober: string }[]>>;
}

export async function collectStatus(servers: string[], site: string, listenMs: number, auth: NatsAuth = natsAuthFromEnv()): Promise<ClusterView> {
  const nc = await connect({ servers, name: "lvsflow-status", timeout: 3000, ...natsConnectOptions(auth) });
  const view: ClusterView = { nodes: {}, pools: {}, owners: {}, health: {} };
  const seen = new Map<string, number>();
  const sub = nc.subscribe(`lvsflow.${site}.>`);
  const done = (async () => {
    for await (const m of sub) {
      const p = Event.safeParse(JSON.parse(new TextDecoder().decode(m.data)));
      if (!p.success) continue;
      const ev = p.data;
      if (ev.type === "node.heartbeat") { const h = ev.data; seen.set(h.node, Date.now()); view.nodes[h.node] = { priority: h.priority, owned: h.owned, faults: h.faults, ageMs: 0, appliedGeneration: h.appliedGeneration }; }
      if (ev.type === "decision.pool") addPool(view, ev);
      if (ev.type === "decision.owner") (view.owners[ev.data.group] ??= {})[ev.data.node] = { role: ev.data.role, term: ev.data.term, why: ev.data.why };
      if (ev.type === "health.summary") for (const r of ev.data.results) {
        const list = ((view.health[r.vs] ??= {})[r.real] ??= []).filter((x) => x.prober !== ev.data.prober);
        list.push({ ok: r.ok, streak: r.streak, ageMs: r.ageMs, prober: ev.data.prober });
        view.health[r.vs]![r.real] = list;
      }
    }
  })();
  await new Promise((r) => setTimeout(r, listenMs));
  sub.unsubscribe();
  await done;
  await nc.close();
  for (const [n, t] of seen) view.nodes[n]!.ageMs = Date.now() - t;
  return view;
}

function addPool(view: ClusterView, ev: EventOf<"decision.pool">) {
  const d = ev.data;
  const cur = view.pools[d.pool.vs]?.[d.node];
  if (cur && cur.generation > d.generation) return;
  (view.pools[d.pool.vs] ??= {})[d.node] = {
    reals: d.pool.reals.map((r) => `${r.address}:${r.port}${r.weight === 0 ? " (quiescent)" : ` w${r.weight}`}`),
    fallback: d.pool.fallback ? `${d.pool.fallback.address}:${d.pool.fallback.port}` : null,
    generation: d.generation,
  };
}

export function renderStatus(v: ClusterView): string {
  const out: string[] = [];
  out.push("LB nodes:");
  for (const [n, s] of Object.entries(v.nodes).sort()) out.push(`  ${n.padEnd(8)} priority ${s.priority}  holds ${s.owned.map((o) => `${o.group}@term${o.term}`).join(", ") || "-"}${s.faults.length ? `  FAULTS: ${s.faults.join(", ")}` : ""}`);
  out.push("Floating groups:");
  for (const [g, nodes] of Object.entries(v.owners)) {
    const holder = Object.entries(v.nodes).filter(([, s]) => s.owned.some((o) => o.group === g)).map(([n]) => n);
    out.push(`  ${g}: owner ${holder.join(" + ") || "none"}${holder.length > 1 ? "  ** more than one holder **" : ""}`);
    for (const [n, o] of Object.entries(nodes)) out.push(`    ${n}: ${o.role} term ${o.term} (${o.why})`);
  }
  out.push("Virtual services:");
  for (const [vs, nodes] of Object.entries(v.pools)) {
    out.push(`  ${vs}`);
    for (const [n, p] of Object.entries(nodes)) out.push(`    ${n}: ${p.reals.join(", ") || "no reals"}${p.fallback ? `  FALLBACK ${p.fallback}` : ""}`);
    for (const [real, hs] of Object.entries(v.health[vs] ?? {})) out.push(`    real ${real}: ${hs.map((h) => `${h.prober} ${h.ok ? "ok" : "FAIL"} x${h.streak} (${(h.ageMs / 1000).toFixed(1)} s ago)`).join(", ")}`);
  }
  return out.join("\n") + "\n";
}

export async function statusCommand(args: string[]): Promise<number> {
  const { opts, values } = parseCommon(args, { watch: { type: "boolean" } });
  const site = opts.site ?? "default";
  do {
    try {
      const v = await collectStatus(opts.nats, site, 1200);
      process.stdout.write(values.json ? JSON.stringify(v) + "\n" : (values.watch ? "\x1b[2J\x1b[H" : "") + renderStatus(v));
    } catch (e) {
      process.stderr.write(`lvsflow status: cannot reach NATS at ${opts.nats.join(",")}: ${e instanceof Error ? e.message : String(e)}\n`);
      if (!values.watch) return 1;
    }
  } while (values.watch);
  return 0;
}
