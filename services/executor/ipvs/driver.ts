// IPVS driver: reconciles the kernel's IPVS table with the desired pools through ipvsadm.
// read (ipvsadm-save -n + ipvsadm -Ln --thresholds) → plan (pure, safe order) → one ipvsadm per
// operation; a failing operation is reported with its stderr and the rest of the plan still runs
// → read back and verify. A kernel that already matches costs two reads and no change.
import type { Logger } from "pino";
import type { Model } from "../../../shared/schemas/config.ts";
import type { PoolSpec } from "../../../shared/schemas/events.ts";
import { renderSave } from "./argv.ts";
import { connectionCounts } from "./connections.ts";
import { desiredTable, fallbackKeys, IpvsSpecError, type PoolInput } from "./desired.ts";
import { drainCaveats, drainingKeys } from "./drain.ts";
import { localHost, type IpvsHost } from "./host.ts";
import { changedSettings, ipvsOptions, type IpvsSettingsOptions } from "./options.ts";
import { mergeThresholds, parseSave, parseThresholds } from "./parse.ts";
import { planIpvs, type IpvsOp } from "./plan.ts";
import { parseDaemons, planStopAll, planSync, type SyncDaemonState, type SyncRole } from "./sync.ts";
import { sysctlName, sysctlTargets } from "./sysctl.ts";
import { checkVersions, missingFeatures, type IpvsVersions } from "./version.ts";
import { destKey, serviceKey, type IpvsTable } from "./table.ts";

export interface IpvsOpFailure { op: string; code: number; stderr: string }

export interface IpvsApplyResult {
  ok: boolean;
  /** The operations run, as command lines (ipvsadm-restore: one entry per line it loaded). */
  ops: string[];
  error: string | null;
  readback: string | null;
  durationMs: number;
  /** Differences found although the desired state had not changed since the last good apply: hand edits. */
  drift: string[];
  failures: IpvsOpFailure[];
  /** `ipvsadm-save -n` after the apply. */
  saved: string | null;
}

export interface IpvsDriverOptions extends IpvsSettingsOptions {
  host?: IpvsHost;
  log?: Logger;
}

const cmdline = (argv: string[]) => argv.join(" ");

export class IpvsUnavailableError extends Error {
  constructor(message: string) { super(message); this.name = "IpvsUnavailableError"; }
}

export class IpvsDriver {
  readonly kind = "ipvs" as const;
  readonly host: IpvsHost;
  private readonly log?: Logger;
  private readonly fallbacks: Set<string>;
  private readonly opts: IpvsDriverOptions;
  private versions: IpvsVersions | null = null;
  private help = "";
  private lastGood: string | null = null;
  /** Last role reported per floating group (onOwnership), so a reloaded sync daemon can follow it. */
  private readonly roles = new Map<string, "owner" | "backup">();
  private lastRole: "owner" | "backup" | null = null;
  /** The sync daemon's settings changed (reload): bring the running daemon in line at the next apply. */
  private syncPending = false;
  private lastCaveats = "";

  constructor(opts: IpvsDriverOptions = {}) {
    this.opts = opts;
    this.host = opts.host ?? localHost();
    this.log = opts.log;
    this.fallbacks = fallbackKeys(opts.fallbacks ?? []);
  }

  /**
   * The version check (once): refuses with IpvsUnavailableError when the kernel has no IPVS or
   * ipvsadm does not match it. ipvsadm itself asks the kernel to load ip_vs when it is missing.
   */
  async check(): Promise<IpvsVersions> {
    if (this.versions) return this.versions;
    let proc = await this.host.readFile("/proc/net/ip_vs");
    let version: string | null = null;
    const v = await this.host.run(["ipvsadm", "--version"]).catch(() => null);
    if (v && v.code !== 127) version = v.stdout + v.stderr;
    proc ??= await this.host.readFile("/proc/net/ip_vs");
    const verdict = checkVersions(proc, version);
    if (!verdict.ok) throw new IpvsUnavailableError(`IPVS driver refused on ${this.host.label}: ${verdict.error}`);
    const h = await this.host.run(["ipvsadm", "-h"]);
    this.help = h.stdout + h.stderr;
    this.versions = verdict.versions;
    this.log?.info({ ...verdict.versions, host: this.host.label }, "IPVS driver: ipvsadm matches the kernel's IPVS");
    return verdict.versions;
  }

  /** The kernel table; read twice more if the table changed between the two listings. */
  async read(): Promise<IpvsTable> {
    for (let attempt = 0; ; attempt++) {
      const [save, th] = [await this.host.run(["ipvsadm-save", "-n"]), await this.host.run(["ipvsadm", "-Ln", "--thresholds"])];
      if (save.code !== 0) throw new Error(`ipvsadm-save -n failed (${save.code}): ${save.stderr.trim()}`);
      if (th.code !== 0) throw new Error(`ipvsadm -Ln --thresholds failed (${th.code}): ${th.stderr.trim()}`);
      const t = mergeThresholds(parseSave(save.stdout), parseThresholds(th.stdout));
      if (t) return t;
      if (attempt >= 2) throw new Error("the IPVS table kept changing while it was read");
    }
  }

  /** `ipvsadm-save -n` as text. */
  async save(): Promise<string> {
    const r = await this.host.run(["ipvsadm-save", "-n"]);
    if (r.code !== 0) throw new Error(`ipvsadm-save -n failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  private withExtras(pools: readonly PoolSpec[]): PoolInput[] {
    return pools.map((p) => {
      const x = this.opts.extras?.get(p.vs);
      const q = p as PoolInput;
      return { ...p, schedFlags: q.schedFlags ?? x?.schedFlags ?? null, onePacket: q.onePacket ?? x?.onePacket ?? false };
    });
  }

  /**
   * New settings (live reload): fallbacks, scheduler flags, sysctls, sync daemon. They are used
   * from the next apply on (the reconcile the executor runs after a reload): the sysctls by the
   * next ensureSysctls, a changed sync daemon restarted (or stopped) for this node's current role.
   * Returns the names of the settings that changed.
   */
  reconfigure(o: IpvsSettingsOptions): string[] {
    const changed = changedSettings(this.opts, o);
    if (changed.includes("sync daemon")) this.syncPending = true;
    Object.assign(this.opts, o);
    for (const k of fallbackKeys(o.fallbacks ?? [])) this.fallbacks.add(k);
    return changed;
  }

  /** reconfigure() from a whole model (the executor's live reload). */
  reload(model: Model): string[] {
    return this.reconfigure(ipvsOptions(model));
  }

  summarize(t: IpvsTable, pools: readonly PoolSpec[] = []): string {
    const fb = new Set([...this.fallbacks, ...fallbackKeys(pools)]);
    let reals = 0, quiescent = 0, fallbacks = 0;
    for (const s of t.services) for (const d of s.dests) {
      if (fb.has(`${serviceKey(s)} ${destKey(d)}`)) fallbacks++;
      else { reals++; if (d.weight === 0) quiescent++; }
    }
    const n = (k: number, w: string) => `${k} ${w}${k === 1 ? "" : "s"}`;
    return `${n(t.services.length, "service")}, ${n(reals, "real")} (${quiescent} quiescent), ${n(fallbacks, "fallback")}`;
  }

  /** read → plan → run each op (continuing past failures) → read back. Never throws. */
  async apply(pools: PoolSpec[]): Promise<IpvsApplyResult> {
    const t0 = performance.now();
    const ops: string[] = [];
    const failures: IpvsOpFailure[] = [];
    let drift: string[] = [];
    const done = (r: Partial<IpvsApplyResult> & { ok: boolean; error: string | null }): IpvsApplyResult => {
      const res: IpvsApplyResult = { readback: null, saved: null, ...r, ops, failures, drift, durationMs: Math.round((performance.now() - t0) * 10) / 10 };
      if (res.ops.length || !res.ok) this.log?.[res.ok ? "info" : "error"]({ ops: res.ops.length, failures: failures.length, drift: drift.length, readback: res.readback, durationMs: res.durationMs, error: res.error }, res.ok ? "ipvs apply" : "ipvs apply failed");
      return res;
    };
    let desired: IpvsTable;
    let current: IpvsTable;
    try {
      await this.check();
      if (this.syncPending) await this.followSync(ops);
      desired = desiredTable(this.withExtras(pools)); // bad input stops here: no command built
      const missing = missingFeatures(desired, this.help);
      if (missing.length) return done({ ok: false, error: `this ipvsadm cannot express the configuration: ${missing.join("; ")}` });
      current = await this.read();
    } catch (e) {
      return done({ ok: false, error: e instanceof IpvsSpecError ? `invalid virtual service, nothing applied: ${e.message}` : (e as Error).message });
    }
    // A fallback once seen stays known (also across a reload that changes the configured one): it
    // is always deleted directly, never drained.
    for (const k of fallbackKeys(pools)) this.fallbacks.add(k);
    const fallbacks = this.fallbacks;
    const caveats = drainCaveats(pools, this.opts.sysctls);
    if (caveats.join("\n") !== this.lastCaveats) {
      this.lastCaveats = caveats.join("\n");
      if (caveats.length) this.log?.warn({ caveats }, "operator drain: persistent clients are not kept away from the draining real");
    }
    const plan = planIpvs(desired, current, { fallbacks, draining: drainingKeys(pools) });
    const key = renderSave(desired) + JSON.stringify(desired.services.map((s) => s.dests.map((d) => [d.upper, d.lower])));
    if (plan.ops.length && this.lastGood === key) {
      drift = plan.reasons;
      this.log?.warn({ found: drift }, "IPVS table drifted from the applied state (hand edit?): repairing");
    }
    if (!plan.ops.length) return done({ ok: true, error: null, readback: this.summarize(current, pools) });

    const okOps = new Set<number>();
    for (const [i, op] of plan.ops.entries()) {
      if (op.after !== undefined && !okOps.has(op.after)) {
        ops.push(`${cmdline(op.argv)} (skipped: ${cmdline(plan.ops[op.after].argv)} failed)`);
        failures.push({ op: cmdline(op.argv), code: -1, stderr: "skipped: its virtual service could not be added" });
        continue;
      }
      if (op.kind === "restore") ops.push(...op.input!.trim().split("\n").map((l) => `ipvsadm-restore: ${l}`));
      else ops.push(cmdline(op.argv));
      const r = await this.runOp(op);
      if (r.code === 0) okOps.add(i);
      else failures.push({ op: op.kind === "restore" ? "ipvsadm-restore" : cmdline(op.argv), code: r.code, stderr: r.stderr.trim() });
    }
    const errors = failures.map((f) => `${f.op} failed (${f.code}): ${f.stderr}`);
    try {
      const saved = await this.save();
      const after = await this.read();
      const left = planIpvs(desired, after, { fallbacks, restore: false });
      if (left.ops.length) errors.push(`read-back differs from desired: ${left.reasons.join("; ")}`);
      const ok = errors.length === 0;
      if (ok) this.lastGood = key;
      return done({ ok, error: ok ? null : errors.join("\n"), readback: this.summarize(after, pools), saved });
    } catch (e) {
      errors.push(`read-back failed: ${(e as Error).message}`);
      return done({ ok: false, error: errors.join("\n") });
    }
  }

  private runOp(op: IpvsOp) {
    return this.host.run(op.argv, { input: op.input, timeoutMs: 30_000 }).catch((e: Error) => ({ code: 125, stdout: "", stderr: e.message }));
  }

  /**
   * Enforces the IPVS sysctls (sysctl.ts); returns the writes done. A sysctl that cannot be read or
   * written is logged and skipped: the virtual services still get applied. routeLocalnet is
   * nftables' concern (IPVS delivers a 127.0.0.1 fallback locally).
   */
  async ensureSysctls(_opts: { routeLocalnet: boolean } = { routeLocalnet: false }): Promise<string[]> {
    const done: string[] = [];
    for (const [path, value] of sysctlTargets(this.opts.sysctls)) {
      try {
        const cur = (await this.host.readFile(path))?.trim();
        if (cur === undefined) throw new Error(`${sysctlName(path)} does not exist on ${this.host.label} (ip_vs not loaded?)`);
        if (cur === value) continue;
        await this.host.writeFile(path, value);
        done.push(`sysctl ${sysctlName(path)}=${value}`);
      } catch (e) {
        this.log?.error({ sysctl: sysctlName(path), want: value, err: (e as Error).message }, "IPVS sysctl not set");
      }
    }
    if (done.length) this.log?.info({ writes: done }, "IPVS sysctls set");
    return done;
  }

  /**
   * After a reload changed the sync daemon: stop it if it left the configuration, else run the
   * role this node has for the configured group (none known yet: the next ownership decision
   * starts it). Successful calls go into `ops`; a failure is logged and reported there, and does
   * not fail the apply of the virtual services (it is retried at the next reload or ownership change).
   */
  private async followSync(ops: string[]): Promise<void> {
    this.syncPending = false;
    const cfg = this.opts.syncDaemon;
    try {
      if (!cfg) {
        for (const argv of planStopAll(await this.syncDaemons())) {
          const r = await this.host.run(argv);
          if (r.code !== 0) throw new Error(`${cmdline(argv)} failed (${r.code}): ${r.stderr.trim()}`);
          ops.push(cmdline(argv));
        }
        return;
      }
      const role = cfg.group === null ? this.lastRole : this.roles.get(cfg.group);
      if (role) ops.push(...await this.setSyncRole(role === "owner" ? "master" : "backup"));
    } catch (e) {
      ops.push(`sync daemon not switched: ${(e as Error).message}`);
      this.log?.error({ err: (e as Error).message }, "IPVS sync daemon: the reloaded settings could not be applied");
    }
  }

  /**
   * Active connections per "vs|real" from IPVS's own counters (connections.ts): what an operator
   * drain waits for. Throws when ipvsadm fails (the counts are then unknown, not zero).
   */
  async countConnections(pools: readonly PoolSpec[]): Promise<Map<string, number>> {
    const r = await this.host.run(["ipvsadm", "-Ln", "--thresholds"]);
    if (r.code !== 0) throw new Error(`ipvsadm -Ln --thresholds failed (${r.code}): ${r.stderr.trim()}`);
    return connectionCounts(pools, parseThresholds(r.stdout));
  }

  async syncDaemons(): Promise<SyncDaemonState[]> {
    const r = await this.host.run(["ipvsadm", "-L", "--daemon"]);
    if (r.code !== 0) throw new Error(`ipvsadm -L --daemon failed (${r.code}): ${r.stderr.trim()}`);
    return parseDaemons(r.stdout);
  }

  /**
   * The sync daemon follows the configured floating group: master while this node owns it,
   * backup otherwise. Returns the ipvsadm calls made; throws with the failing call's stderr.
   */
  async onOwnership(group: string, role: "owner" | "backup"): Promise<string[]> {
    this.roles.set(group, role);
    this.lastRole = role;
    const cfg = this.opts.syncDaemon;
    if (!cfg || (cfg.group !== null && cfg.group !== group)) return [];
    return this.setSyncRole(role === "owner" ? "master" : "backup");
  }

  async setSyncRole(want: SyncRole): Promise<string[]> {
    const cfg = this.opts.syncDaemon;
    if (!cfg) return [];
    await this.check();
    const calls = planSync(await this.syncDaemons(), want, cfg);
    const done: string[] = [];
    for (const argv of calls) {
      const r = await this.host.run(argv);
      if (r.code !== 0) throw new Error(`${cmdline(argv)} failed (${r.code}): ${r.stderr.trim()}`);
      done.push(cmdline(argv));
    }
    if (done.length) this.log?.info({ role: want, calls: done }, "IPVS sync daemon switched");
    return done;
  }
}
