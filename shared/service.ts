// What every service receives when it starts: its identity, configuration, bus and logger.
import type { Logger } from "pino";
import type { Model } from "./schemas/config.ts";
import type { Bus } from "./bus.ts";

export interface ServiceContext {
  site: string;
  /** This LB node's name (or the prober's / recorder's instance name). */
  node: string;
  model: Model;
  /** Content hash of the configuration in force (stamped on every event). */
  configVersion: string;
  bus: Bus;
  log: Logger;
  /** Redis URL (redis://… or unix:///…), for services that use Redis. */
  redisUrl: string;
  /** Port for /healthz and /metrics (0 = off). */
  httpPort: number;
  /** Directory for a service's small local state (the executor's held terms). */
  stateDir: string;
}

/** A running service: stop() releases timers and connections but never touches the kernel. */
export interface RunningService {
  stop(): Promise<void>;
  health(): { ok: boolean; [k: string]: unknown };
  /**
   * Takes a new, already validated configuration (shared/config/reload.ts): the service applies
   * only what changed and keeps the state of what did not. `version` is the new configuration
   * version, stamped on its events from now on.
   */
  updateModel?(model: Model, version: string): void | Promise<void>;
}
