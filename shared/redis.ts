// Redis connection helper: retries for ever, never blocks callers that must not wait on Redis.
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { metrics } from "./metrics.ts";
import { redisAuthFromEnv, type RedisAuth } from "./secrets.ts";

/** `redis://host:port/db`, `rediss://…` (TLS) or `unix:///path/to.sock`; ACL user and TLS files from the environment by default. */
export function createRedis(url: string, log: Logger, name: string, auth: RedisAuth = redisAuthFromEnv()): Redis {
  const common = { lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 500, connectionName: name, enableOfflineQueue: false, ...auth };
  const r = url.startsWith("unix://") ? new Redis({ path: url.slice("unix://".length), ...common }) : new Redis(url, common);
  r.on("ready", () => { metrics.redisConnected.set(1); log.info("redis connected"); });
  r.on("end", () => metrics.redisConnected.set(0));
  r.on("close", () => metrics.redisConnected.set(0));
  r.on("error", (e) => log.debug({ err: String(e) }, "redis error"));
  return r;
}

/** Keys, in one place. */
export const keys = {
  events: (site: string) => `lvsflow:${site}:events`,
  seen: (site: string, id: string) => `lvsflow:${site}:seen:${id}`,
  configVersions: (site: string) => `lvsflow:${site}:config:versions`,
  configBlob: (site: string, hash: string) => `lvsflow:${site}:config:${hash}`,
  snapshot: (site: string, node: string, machine: string) => `lvsflow:${site}:snapshot:${node}:${machine}`,
  /** Controllers' input journals (controller.inputs), kept apart from the audit history: replay reads them. */
  inputs: (site: string) => `lvsflow:${site}:inputs`,
  /** Last sequence of the recorder's JetStream buffer written to Redis (written with each event, atomically). */
  recorderCursor: (site: string) => `lvsflow:${site}:recorder:cursor`,
};
