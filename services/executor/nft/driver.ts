// nftables driver: reconciles table `ip lvsflow` with the desired pools.
// Reconcile, don't replay: only chains whose rules differ are flushed and re-filled, affinity sets
// of reals that stay are never recreated (persistence survives pool edits), and when the kernel
// already matches, no nft runs at all. Every change is ONE `nft -f -` transaction (atomic).
import { readFile, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import { runCmd } from "../run.ts";
import { FAMILY, TABLE, Transaction } from "./objects.ts";
import { commentParts, needsRouteLocalnet, renderDesired, type RenderOptions } from "./render.ts";

/** refs: chains it jumps to and "@sets" it uses, so a misfit object can be unhooked before it is replaced. */
export interface KernelRule { handle: number; label: string; hash: string | null; refs: string[] }
export interface KernelChain { name: string; handle: number; hook: string | null; rules: KernelRule[] }
export interface KernelSet { name: string; handle: number; type: string; timeoutS: number | null; elements: number }
export interface KernelState { table: boolean; chains: Record<string, KernelChain>; sets: Record<string, KernelSet> }

export const EMPTY_STATE: KernelState = Object.freeze({ table: false, chains: {}, sets: {} }) as KernelState;

export interface Plan { script: string; ops: string[]; changes: number; reasons: string[] }
export interface ApplyResult {
  ok: boolean; ops: string[]; error: string | null; readback: string; durationMs: number; changes: number;
}

type Json = Record<string, any>;

/** Parses `nft -j list table ip lvsflow`. Only what reconciliation needs is kept. */
export function parseNftJson(text: string): KernelState {
  let items: Json[];
  try {
    items = (JSON.parse(text) as { nftables?: Json[] }).nftables ?? [];
  } catch (e) {
    // Seen with nft 1.0.6: a table with `flags owner` is listed as truncated JSON.
    throw new Error(`nft -j output is not valid JSON (${(e as Error).message}): ${text.slice(0, 200)}`);
  }
  const st: KernelState = { table: false, chains: {}, sets: {} };
  for (const it of items) {
    if (it.table?.name === TABLE) st.table = true;
    if (it.chain && it.chain.table === TABLE) {
      const c = it.chain;
      st.chains[c.name] = { name: c.name, handle: c.handle, hook: c.hook ?? null, rules: st.chains[c.name]?.rules ?? [] };
    }
    if (it.set && it.set.table === TABLE) {
      const s = it.set;
      st.sets[s.name] = { name: s.name, handle: s.handle, type: String(s.type), timeoutS: typeof s.timeout === "number" ? s.timeout : null, elements: Array.isArray(s.elem) ? s.elem.length : 0 };
    }
    if (it.rule && it.rule.table === TABLE) {
      const r = it.rule;
      const c = (st.chains[r.chain] ??= { name: r.chain, handle: -1, hook: null, rules: [] });
      const e = JSON.stringify(r.expr ?? []);
      const refs = [...e.matchAll(/"target":"([^"]+)"/g), ...e.matchAll(/"(@[^"]+)"/g)].map((m) => m[1]);
      c.rules.push({ handle: r.handle, ...commentParts(r.comment), refs });
    }
  }
  return st;
}

/** One line for Applied.readback, e.g. "2 services, 4 reals, 1 fallback". */
export function summarize(st: KernelState): string {
  if (!st.table) return "no table";
  const chains = Object.values(st.chains);
  const svcs = chains.filter((c) => c.name.startsWith("svc-"));
  const fb = svcs.filter((c) => c.rules.some((r) => r.label === "fallback")).length;
  const aff = Object.values(st.sets).reduce((n, s) => n + s.elements, 0);
  const n = (k: number, one: string, many = one + "s") => `${k} ${k === 1 ? one : many}`;
  const reals = chains.filter((c) => c.name.startsWith("ep-")).length;
  return `${n(svcs.length, "service")}, ${n(reals, "real")}, ${n(fb, "fallback")}, ${n(aff, "affinity entry", "affinity entries")}`;
}

/** PURE: the transaction that turns `current` into `desired` (empty when they already match). */
export function planReconcile(desired: PoolSpec[], current: KernelState, opts: RenderOptions = {}): Plan {
  const want = renderDesired(desired, opts);
  const tx = new Transaction();
  const reasons: string[] = [];
  const cur: KernelState = { table: current.table, chains: { ...current.chains }, sets: { ...current.sets } };
  const flushed = new Set<string>();
  const flush = (name: string) => {
    if (flushed.has(name)) return;
    tx.flush(name);
    flushed.add(name);
    cur.chains[name] = { ...cur.chains[name], rules: [] };
  };
  if (!cur.table) { tx.add({ kind: "table" }); reasons.push(`table ${FAMILY} ${TABLE} missing`); }

  // 0. misfits: an object with a desired name but the wrong kind (a set of another type, a chain
  //    with another hook) cannot be fixed by `add`. Drop every reference to it, then delete it;
  //    the steps below then treat it as missing and recreate it.
  const badChains = want.chains.filter((d) => cur.chains[d.chain.name] && cur.chains[d.chain.name].hook !== (d.chain.base?.hook ?? null)).map((d) => d.chain.name);
  const badSets = want.sets.filter((w) => cur.sets[w.name] && (cur.sets[w.name].type !== w.type || cur.sets[w.name].timeoutS === null)).map((w) => w.name);
  if (badChains.length || badSets.length) {
    const refs = new Set([...badChains, ...badSets.map((n) => "@" + n)]);
    for (const c of Object.values(current.chains)) if (badChains.includes(c.name) || c.rules.some((r) => r.refs.some((x) => refs.has(x)))) flush(c.name);
    for (const n of badChains) { tx.deleteChain(n); delete cur.chains[n]; flushed.delete(n); reasons.push(`chain ${n} has the wrong hook, recreated`); }
    for (const n of badSets) { tx.deleteSet(n); delete cur.sets[n]; reasons.push(`set ${n} has the wrong type or flags, recreated`); }
  }
  // 1. objects (add is idempotent, but we only emit what is missing or different)
  for (const d of want.chains) {
    if (!cur.chains[d.chain.name]) tx.add(d.chain);
  }
  for (const w of want.sets) {
    const k = cur.sets[w.name];
    if (!k) tx.add(w);
    else if (k.timeoutS !== w.timeoutS) { tx.add(w); reasons.push(`set ${w.name} timeout ${k.timeoutS}s, want ${w.timeoutS}s`); }
  }
  // 2. rules: flush + re-add only chains whose rules differ (count, or the hash in the comments)
  for (const d of want.chains) {
    const k = cur.chains[d.chain.name];
    const same = k && k.rules.length === d.rules.length && k.rules.every((r) => r.hash === d.hash);
    if (same) continue;
    if (k && !flushed.has(d.chain.name)) { flush(d.chain.name); reasons.push(`chain ${d.chain.name} rules differ (${d.chain.comment ?? d.chain.name})`); }
    else if (!k) reasons.push(`chain ${d.chain.name} missing (${d.chain.comment ?? d.chain.name})`);
    for (const r of d.rules) tx.add(r);
  }
  // 3. removals last, when the rules that used them are gone. Stale chains are flushed first (they
  //    may jump to each other or use stale sets), then sets go (a stale verdict map may point at a
  //    stale chain), then chains.
  const wantChains = new Set(want.chains.map((c) => c.chain.name));
  const goneChains = Object.keys(cur.chains).filter((n) => !wantChains.has(n)).sort();
  for (const n of goneChains) { flush(n); reasons.push(`chain ${n} not desired`); }
  const wantSets = new Set(want.sets.map((w) => w.name));
  for (const n of Object.keys(cur.sets).filter((n) => !wantSets.has(n)).sort()) {
    tx.deleteSet(n);
    reasons.push(`set ${n} not desired`);
  }
  for (const n of goneChains) tx.deleteChain(n);
  return { script: tx.render(), ops: tx.ops, changes: tx.size, reasons };
}

/** The statement nft complained about: its errors read `/dev/stdin:LINE:COL: Error: …`. */
function failingStatement(script: string, stderr: string): string | null {
  const m = /:(\d+):\d+(?:-\d+)?: Error/.exec(stderr);
  return m ? script.split("\n")[Number(m[1]) - 1] ?? null : null;
}

export class NftablesDriver {
  readonly netns?: string;
  private readonly log?: Logger;
  /** The executor passes { selection: "consistent", seed }: every node picks the same real. */
  readonly render: RenderOptions;

  constructor(opts: { netns?: string; log?: Logger; render?: RenderOptions } = {}) {
    this.netns = opts.netns;
    this.log = opts.log;
    this.render = opts.render ?? {};
  }

  async read(): Promise<KernelState> {
    const r = await runCmd(["nft", "-j", "list", "table", FAMILY, TABLE], { netns: this.netns });
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return { table: false, chains: {}, sets: {} };
      throw new Error(`nft list table failed (${r.code}): ${r.stderr.trim()}`);
    }
    return parseNftJson(r.stdout);
  }

  plan(desired: PoolSpec[], current: KernelState): Plan {
    return planReconcile(desired, current, this.render);
  }

  /** read → plan → one `nft -f -` → read back and verify. Never throws. */
  async apply(desired: PoolSpec[]): Promise<ApplyResult> {
    const t0 = performance.now();
    const done = (r: Omit<ApplyResult, "durationMs">): ApplyResult => {
      const res = { ...r, durationMs: Math.round((performance.now() - t0) * 10) / 10 };
      this.log?.[res.ok ? "info" : "error"]({ ops: res.ops.length, changes: res.changes, readback: res.readback, durationMs: res.durationMs, error: res.error }, res.ok ? "nft apply" : "nft apply failed");
      return res;
    };
    let plan: Plan;
    let current: KernelState;
    try {
      renderDesired(desired, this.render); // validation errors surface before the kernel is touched
      current = await this.read();
      plan = this.plan(desired, current);
    } catch (e) {
      return done({ ok: false, ops: [], error: (e as Error).message, readback: "", changes: 0 });
    }
    if (plan.changes === 0) return done({ ok: true, ops: [], error: null, readback: summarize(current), changes: 0 });

    // Sysctls ride along with real changes only, so an in-sync kernel costs one `nft list`.
    const sysctls = await this.ensureSysctls({ routeLocalnet: needsRouteLocalnet(desired) }).catch((e: Error) => {
      this.log?.warn({ err: e.message }, "sysctl write failed");
      return [] as string[];
    });
    const ops = [...sysctls, ...plan.ops];
    const r = await runCmd(["nft", "-f", "-"], { input: plan.script, netns: this.netns, timeoutMs: 30_000 });
    if (r.code !== 0) {
      const stmt = failingStatement(plan.script, r.stderr);
      const error = `nft -f failed (${r.code}), nothing applied: ${r.stderr.trim()}${stmt ? `\nfailing statement: ${stmt}` : ""}`;
      return done({ ok: false, ops, error, readback: summarize(current), changes: plan.changes });
    }
    try {
      const after = await this.read();
      const left = this.plan(desired, after);
      const readback = summarize(after);
      if (left.changes) return done({ ok: false, ops, error: `read-back differs from desired: ${left.reasons.join("; ")}`, readback, changes: plan.changes });
      return done({ ok: true, ops, error: null, readback, changes: plan.changes });
    } catch (e) {
      return done({ ok: false, ops, error: `read-back failed: ${(e as Error).message}`, readback: "", changes: plan.changes });
    }
  }

  /**
   * ip_forward=1 (LVS-NAT forwards) and, for a 127.0.0.0/8 fallback, route_localnet=1 (otherwise
   * the kernel drops DNATed packets to loopback as martians). Never turns route_localnet off:
   * something else may rely on it. Returns the writes done.
   */
  async ensureSysctls(opts: { routeLocalnet: boolean }): Promise<string[]> {
    const want: [string, string][] = [["net.ipv4.ip_forward", "1"]];
    if (opts.routeLocalnet) want.push(["net.ipv4.conf.all.route_localnet", "1"]);
    // Consistent selection: flows move between nodes and back. A node's old conntrack entry for a
    // flow that came back has a stale TCP window; strict tracking would mark its packets INVALID,
    // they would skip NAT and reach the local VIP, which answers with a reset.
    if (this.render.selection === "consistent") want.push(["net.netfilter.nf_conntrack_tcp_be_liberal", "1"]);
    const ops: string[] = [];
    for (const [key, value] of want) {
      if ((await this.readSysctl(key)) === value) continue;
      await this.writeSysctl(key, value);
      ops.push(`sysctl ${key}=${value}`);
    }
    return ops;
  }

  private async readSysctl(key: string): Promise<string> {
    if (!this.netns) return (await readFile(`/proc/sys/${key.replaceAll(".", "/")}`, "utf8")).trim();
    const r = await runCmd(["sysctl", "-n", key], { netns: this.netns });
    if (r.code !== 0) throw new Error(`sysctl -n ${key}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  private async writeSysctl(key: string, value: string): Promise<void> {
    if (!this.netns) return writeFile(`/proc/sys/${key.replaceAll(".", "/")}`, value);
    const r = await runCmd(["sysctl", "-qw", `${key}=${value}`], { netns: this.netns });
    if (r.code !== 0) throw new Error(`sysctl -w ${key}=${value}: ${r.stderr.trim()}`);
  }
}
