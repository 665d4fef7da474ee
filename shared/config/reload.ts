// Live reload: one path for autoreload (a watched file), SIGHUP and `lvsflow config push`.
// Validate → diff against the running model → hand the new model to every running service,
// which applies only the difference (unchanged virtual services and reals keep their health state
// and are not touched in the kernel). An invalid configuration is rejected: the running one stays
// and a config.rejected event says why. An accepted one is stored as a version in Redis and
// announced with config.applied. Reloads run one at a time, in the order they were asked for.
import { watchFile, unwatchFile, type Stats } from "node:fs";
import type { Logger } from "pino";
import type { Bus } from "../bus.ts";
import type { Model } from "../schemas/config.ts";
import { makeEvent } from "../schemas/events.ts";
import { subjects } from "../subjects.ts";
import { ConfigError, formatDiagnostic } from "./diagnostics.ts";
import { diffModels, describeDiff, isEmptyDiff, summarizeDiff, type ModelDiff } from "./diff.ts";
import { loadConfig, type LoadedConfig, type LoadOptions } from "./load.ts";
import { loadStored, type VersionStore } from "./versions.ts";

export type Trigger = "startup" | "sighup" | "autoreload" | "push";

/** A running service that can take a new model (shared/service.ts RunningService). */
export interface Reloadable { updateModel?(model: Model, version: string): void | Promise<void> }

export interface ReloaderOptions {
  site: string;
  node: string;
  /** The service this process runs ("node" for all of one LB node's), for events. */
  service: string;
  log: Logger;
  bus: Bus;
  /** Where versions are stored and pushed versions read from; null without Redis. */
  store: VersionStore | null;
  current: LoadedConfig;
  /** The configuration files (absolute paths) this process reads; empty when it runs a stored version. */
  files: string[];
  targets: Reloadable[];
  loadOptions?: Pick<LoadOptions, "supports" | "strict" | "format">;
  /** Poll period of the autoreload watcher (ldirectord checks once per checkinterval). */
  watchIntervalMs?: number;
}

export type ReloadOutcome =
  | { status: "applied"; version: string; previous: string; diff: ModelDiff }
  | { status: "unchanged"; version: string }
  | { status: "rejected"; version: string | null; errors: string[] };

type Source = { kind: "files" } | { kind: "stored"; version: string; by: string } | { kind: "newest" };

export class Reloader {
  current: LoadedConfig;
  private queue: Promise<unknown> = Promise.resolve();
  private watched: string[] = [];
  /** The files (includes too) of the last configuration read from disk: what autoreload watches. */
  private fileSources: string[];
  private readonly onHup = () => void this.reload("sighup", this.opts.files.length ? { kind: "files" } : { kind: "newest" });
  private debounce: ReturnType<typeof setTimeout> | null = null;
  private pendingStore: { loaded: LoadedConfig; trigger: Trigger; by: string; failures: number } | null = null;
  private storeTimer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;

  constructor(private readonly opts: ReloaderOptions) {
    this.current = opts.current;
    this.fileSources = opts.files.length ? opts.current.sources.map((s) => s.path) : [];
  }

  /** SIGHUP, the autoreload watcher (when the configuration asks for it) and pushed versions. */
  start(): void {
    process.on("SIGHUP", this.onHup);
    this.opts.bus.subscribe(subjects.configPush(this.opts.site), ["config.pushed"], (ev) => {
      void this.reload("push", { kind: "stored", version: ev.data.version, by: ev.data.by });
    });
    this.rewatch();
    this.storeTimer = setInterval(() => void this.flushStore(), 1000);
  }

  stop(): void {
    this.stopped = true;
    process.off("SIGHUP", this.onHup);
    for (const p of this.watched) unwatchFile(p);
    this.watched = [];
    if (this.debounce) clearTimeout(this.debounce);
    if (this.storeTimer) clearInterval(this.storeTimer);
  }

  /** Records the running configuration as a version (at startup); retried until Redis takes it. */
  remember(trigger: Trigger, by: string): void {
    this.pendingStore = { loaded: this.current, trigger, by, failures: 0 };
    void this.flushStore();
  }

  /** One reload, queued behind any running one. Never throws. */
  reload(trigger: Trigger, source: Source): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.reloadNow(trigger, source));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(trigger: Trigger, source: Source): Promise<ReloadOutcome> {
    const { log } = this.opts;
    const by = source.kind === "stored" ? source.by : `${this.opts.node}/${this.opts.service}`;
    let next: LoadedConfig;
    try {
      next = await this.load(source);
    } catch (e) {
      return this.reject(trigger, e);
    }
    if (next.model.site !== this.current.model.site) {
      return this.reject(trigger, new Error(`the site cannot change while running (${this.current.model.site} → ${next.model.site}); restart the services instead`), next.version);
    }
    for (const w of next.warnings) log.warn({ where: `${w.file}:${w.line}`, directive: w.directive }, w.message);
    const previous = this.current.version;
    if (source.kind === "files") this.fileSources = next.sources.map((s) => s.path);
    if (next.version === previous) {
      log.info({ trigger, version: next.version }, "configuration unchanged");
      this.rewatch();
      // A push of the running version is still answered, so `config push` sees every service.
      if (trigger === "push") this.announce(next.version, previous, trigger, diffModels(next.model, next.model));
      return { status: "unchanged", version: next.version };
    }
    const diff = diffModels(this.current.model, next.model);
    log.info({ trigger, version: next.version, previous, by, changes: isEmptyDiff(diff) ? ["none (comments or formatting)"] : describeDiff(diff) }, "applying configuration");
    for (const t of this.opts.targets) {
      try {
        await t.updateModel?.(next.model, next.version);
      } catch (e) {
        // A valid configuration a service could not take is a bug: say so loudly, keep going.
        log.error({ err: e instanceof Error ? e.stack : String(e), version: next.version }, "a service failed to apply the new configuration");
      }
    }
    this.current = next;
    this.rewatch();
    if (source.kind !== "files" && this.opts.files.length) {
      log.warn({ files: this.opts.files, version: next.version }, "running a pushed configuration version: a SIGHUP (or, with autoreload, a change of the files) loads the files again");
    }
    this.announce(next.version, previous, trigger, diff);
    if (source.kind !== "stored") {
      this.pendingStore = { loaded: next, trigger, by, failures: 0 };
      await this.flushStore();
    }
    return { status: "applied", version: next.version, previous, diff };
  }

  private async load(source: Source): Promise<LoadedConfig> {
    const o = this.opts.loadOptions ?? {};
    if (source.kind === "files") return loadConfig(this.opts.files, o);
    const store = this.opts.store;
    if (!store) throw new Error("no Redis: stored configuration versions cannot be read");
    const version = source.kind === "stored" ? source.version : (await store.newest())?.version;
    if (!version) throw new Error("no configuration version is stored in Redis");
    const stored = await store.get(version);
    if (!stored) throw new Error(`configuration version ${version} is not in Redis`);
    return loadStored(stored, { supports: o.supports });
  }

  private reject(trigger: Trigger, e: unknown, version: string | null = null): ReloadOutcome {
    const { log, bus, site, node, service } = this.opts;
    const errors = e instanceof ConfigError
      ? e.diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic)
      : [e instanceof Error ? e.message : String(e)];
    // The refused sources' version, so the event names what was refused.
    if (e instanceof ConfigError && version === null) version = e.version;
    log.error({ trigger, errors: errors.slice(0, 10), running: this.current.version }, "configuration rejected; the running configuration stays");
    const files = this.opts.files.length ? this.opts.files : this.current.sources.map((s) => s.path);
    bus.publish(subjects.configReport(site, node, "rejected"), makeEvent("config.rejected", {
      node, service, version: version && /^[0-9a-f]{16}$/.test(version) ? version : null, running: this.current.version, trigger,
      files: files.slice(0, 64), errors: (errors.length ? errors : ["invalid configuration"]).slice(0, 50).map((s) => s.slice(0, 2000)),
    }, { source: sourceOf(service, node), configVersion: this.current.version }));
    return { status: "rejected", version, errors };
  }

  private announce(version: string, previous: string, trigger: Trigger, diff: ModelDiff): void {
    const { bus, site, node, service } = this.opts;
    bus.publish(subjects.configReport(site, node, "applied"), makeEvent("config.applied", {
      node, service, version, previous, trigger, changes: summarizeDiff(diff),
    }, { source: sourceOf(service, node), configVersion: version }));
  }

  private async flushStore(): Promise<void> {
    const p = this.pendingStore;
    const store = this.opts.store;
    if (!p || !store || this.stopped) return;
    try {
      const appended = await store.store(p.loaded, { files: this.opts.files, by: p.by, trigger: p.trigger });
      if (this.pendingStore === p) this.pendingStore = null;
      this.opts.log.info({ version: p.loaded.version, appended }, appended ? "configuration version stored" : "configuration version already the newest stored");
    } catch (e) {
      // Redis may still be connecting: say so only when it lasts.
      if (++p.failures === 5 || p.failures % 60 === 0) this.opts.log.warn({ err: String(e), version: p.loaded.version }, "could not store the configuration version in Redis yet; retrying every second");
    }
  }

  /** Watches the configuration files (includes too) while the running configuration says autoreload = yes. */
  private rewatch(): void {
    if (this.stopped) return;
    const want = this.current.model.global.autoreload ? this.fileSources : [];
    for (const p of this.watched.filter((w) => !want.includes(w))) unwatchFile(p);
    for (const p of want.filter((w) => !this.watched.includes(w))) {
      watchFile(p, { interval: this.opts.watchIntervalMs ?? 1000, persistent: false }, (cur: Stats, prev: Stats) => {
        if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
        // Editors write in several steps: wait for the file to settle, then reload once.
        if (this.debounce) clearTimeout(this.debounce);
        this.debounce = setTimeout(() => { this.debounce = null; void this.reload("autoreload", { kind: "files" }); }, 300);
      });
    }
    if (want.length && !this.watched.length) this.opts.log.info({ files: want }, "autoreload: watching the configuration files");
    this.watched = want;
  }
}

const SOURCES = ["prober", "controller", "executor", "recorder", "witness"] as const;
function sourceOf(service: string, node: string): { service: (typeof SOURCES)[number]; node: string } {
  return { service: (SOURCES as readonly string[]).includes(service) ? (service as (typeof SOURCES)[number]) : "executor", node };
}
