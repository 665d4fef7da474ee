// Every message on the bus is an Event: a common envelope plus a typed `data` payload.
// These schemas are the public contract (JSON Schema: `lvsflow schema events`).
import { z } from "zod";
import { randomUUID } from "node:crypto";
import { Forwarding, IpAddress, Port, Protocol, Family, Persistence, Name } from "./config.ts";

export const EVENT_SCHEMA_VERSION = 1;

export const Source = z.object({
  service: z.enum(["prober", "controller", "executor", "recorder", "cli", "witness", "external"]),
  node: z.string().min(1).max(64),
});

const envelope = {
  schemaVersion: z.literal(EVENT_SCHEMA_VERSION),
  /** Unique id; the recorder de-duplicates on it. */
  id: z.string().min(8).max(64),
  /** ISO 8601 time the event was created. */
  time: z.string().datetime({ offset: true }),
  source: Source,
  /** The event that directly caused this one. */
  causationId: z.string().nullable(),
  /** Groups the events of one incident (the root cause's id). */
  correlationId: z.string().nullable(),
  /** Content hash of the configuration in force. */
  configVersion: z.string().nullable(),
};

export const HealthResult = z.object({
  vs: z.string(),
  real: z.string(),
  prober: z.string(),
  ok: z.boolean(),
  /** Consecutive results equal to `ok`, including this one. */
  streak: z.number().int().min(1),
  check: z.string(),
  latencyMs: z.number().min(0),
  error: z.string().nullable(),
  httpStatus: z.number().int().nullable().default(null),
  /** What matched `receive`, when a receive pattern was configured. */
  matched: z.string().nullable().default(null),
});

export const HealthSummary = z.object({
  prober: z.string(),
  intervalMs: z.number(),
  results: z.array(z.object({ vs: z.string(), real: z.string(), ok: z.boolean(), streak: z.number().int(), ageMs: z.number() })),
});

export const PoolReal = z.object({
  address: IpAddress,
  port: Port,
  forwarding: Forwarding,
  /** Kernel weight: 0 = quiescent (kept for existing connections, no new ones). */
  weight: z.number().int().min(0).max(65535),
  lowerThreshold: z.number().int().nullable().default(null),
  upperThreshold: z.number().int().nullable().default(null),
});
export type PoolReal = z.infer<typeof PoolReal>;

/** Desired kernel state of one virtual service: self-contained so the executor needs no config. */
export const PoolSpec = z.object({
  vs: z.string(),
  protocol: Protocol,
  family: Family,
  address: IpAddress.nullable(),
  port: Port,
  fwmark: z.number().int().nullable(),
  scheduler: z.string().regex(/^[a-z]+$/),
  persistence: Persistence.nullable(),
  reals: z.array(PoolReal),
  /** The fallback server, present only while it is active (no real up). */
  fallback: z.object({ address: IpAddress, port: Port, forwarding: Forwarding }).nullable(),
});
export type PoolSpec = z.infer<typeof PoolSpec>;

export const RealTransition = z.object({
  real: z.string(),
  from: z.enum(["unknown", "up", "down"]),
  to: z.enum(["up", "down"]),
  /** e.g. "failurecount 3 reached (3 consecutive failures from lb1)". */
  why: z.string(),
});

export const PoolDecision = z.object({
  node: z.string(),
  generation: z.number().int().positive(),
  pool: PoolSpec,
  changes: z.array(RealTransition),
  fallbackActive: z.boolean(),
});

export const OwnerDecision = z.object({
  node: z.string(),
  generation: z.number().int().positive(),
  group: Name,
  role: z.enum(["owner", "backup"]),
  /** Ownership term: grows with every change of owner; executors ignore older terms. */
  term: z.number().int().min(0),
  owner: z.string().nullable(),
  addresses: z.array(z.object({ address: IpAddress, prefix: z.number().int(), interface: z.string() })),
  garpScheduleMs: z.array(z.number().int()),
  why: z.string(),
});

export const Heartbeat = z.object({
  node: z.string(),
  priority: z.number().int(),
  seq: z.number().int().min(0),
  startedAt: z.string(),
  appliedGeneration: z.number().int().min(0),
  /** Groups whose addresses this node holds, with the term it holds them under. */
  owned: z.array(z.object({ group: z.string(), term: z.number().int() })),
  faults: z.array(z.string()),
  driver: z.string(),
});

export const PeerState = z.object({
  observer: z.string(),
  peer: z.string(),
  alive: z.boolean(),
  lastSeenMsAgo: z.number().nullable(),
});

export const Applied = z.object({
  node: z.string(),
  kind: z.enum(["pool", "owner", "resync"]),
  generation: z.number().int().min(0),
  ok: z.boolean(),
  /** The exact kernel operations (nft statements, ip/arping argument vectors). */
  ops: z.array(z.string()),
  durationMs: z.number(),
  error: z.string().nullable(),
  /** Short read-back summary of the kernel state after the change. */
  readback: z.string().nullable(),
  subject: z.string().nullable().default(null),
});

export const Drift = z.object({ node: z.string(), found: z.array(z.string()), repaired: z.boolean() });

export const Rejected = z.object({ subject: z.string(), reason: z.string(), service: z.string() });

export const Event = z.discriminatedUnion("type", [
  z.object({ ...envelope, type: z.literal("health.result"), data: HealthResult }),
  z.object({ ...envelope, type: z.literal("health.summary"), data: HealthSummary }),
  z.object({ ...envelope, type: z.literal("decision.pool"), data: PoolDecision }),
  z.object({ ...envelope, type: z.literal("decision.owner"), data: OwnerDecision }),
  z.object({ ...envelope, type: z.literal("node.heartbeat"), data: Heartbeat }),
  z.object({ ...envelope, type: z.literal("peer.state"), data: PeerState }),
  z.object({ ...envelope, type: z.literal("executor.applied"), data: Applied }),
  z.object({ ...envelope, type: z.literal("executor.drift"), data: Drift }),
  z.object({ ...envelope, type: z.literal("bus.rejected"), data: Rejected }),
]);
export type Event = z.infer<typeof Event>;
export type EventType = Event["type"];
export type EventOf<T extends EventType> = Extract<Event, { type: T }>;
export type DataOf<T extends EventType> = EventOf<T>["data"];

export interface EventMeta {
  source: z.infer<typeof Source>;
  causationId?: string | null;
  correlationId?: string | null;
  configVersion?: string | null;
  /** Injected clock for deterministic tests and replay. */
  now?: Date;
  id?: string;
}

/** Build a valid event; throws if the payload does not match its schema (a programming error). */
export function makeEvent<T extends EventType>(type: T, data: DataOf<T>, meta: EventMeta): EventOf<T> {
  const ev = {
    schemaVersion: EVENT_SCHEMA_VERSION,
    id: meta.id ?? randomUUID(),
    time: (meta.now ?? new Date()).toISOString(),
    source: meta.source,
    causationId: meta.causationId ?? null,
    correlationId: meta.correlationId ?? meta.causationId ?? null,
    configVersion: meta.configVersion ?? null,
    type,
    data,
  };
  return Event.parse(ev) as EventOf<T>;
}
