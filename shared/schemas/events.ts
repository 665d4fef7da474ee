// Every message on the bus is an Event: a common envelope plus a typed `data` payload.
// These schemas are the public contract (JSON Schema: `lvsflow schema events`).
import { z } from "zod";
import { randomUUID } from "node:crypto";
import { Forwarding, IpAddress, Port, Protocol, Family, Persistence, Name } from "./config.ts";

export const EVENT_SCHEMA_VERSION = 1;

export const Source = z.object({
  service: z.enum(["prober", "controller", "executor", "recorder", "cli", "witness", "external", "dashboard"]),
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
  /** The prober's probe group: the group, not the prober, is then the vantage point (absent or null: the prober is). */
  group: z.string().min(1).max(64).nullable().optional(),
});

export const HealthSummary = z.object({
  prober: z.string(),
  /** As in health.result: the vantage point these results count for. */
  group: z.string().min(1).max(64).nullable().optional(),
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
  /** Operator drain: weight 0 and no new connections at all, not even from clients with persistence affinity. */
  draining: z.boolean().optional(),
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
  /** IPVS scheduler flags (ldirectord schedflags, e.g. "sh-port"); absent = none. */
  schedFlags: z.string().nullable().optional(),
  /** One-packet scheduling (ldirectord ops, UDP). */
  onePacket: z.boolean().optional(),
});
export type PoolSpec = z.infer<typeof PoolSpec>;

export const RealTransition = z.object({
  real: z.string(),
  from: z.enum(["unknown", "up", "down"]),
  to: z.enum(["up", "down"]),
  /** e.g. "failurecount 3 reached (3 consecutive failures from lb1)". */
  why: z.string(),
});

/** An operator override on one real of a virtual service, as a decision carries it. */
export const OperatorOverride = z.object({
  real: z.string(),
  state: z.enum(["disabled", "maintenance", "draining", "drained", "weight"]),
  weight: z.number().int().nullable(),
  why: z.string(),
  commandId: z.string(),
});

export const PoolDecision = z.object({
  node: z.string(),
  generation: z.number().int().positive(),
  pool: PoolSpec,
  changes: z.array(RealTransition),
  fallbackActive: z.boolean(),
  /** Operator overrides in force for this virtual service (lvsflow drain/disable/maintenance/weight). */
  operator: z.array(OperatorOverride).optional(),
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
  /** Quorum mode: the executor releases the addresses unless an owner.lease renews them within this many ms. */
  leaseMs: z.number().int().min(0).nullable().optional(),
});

export const Heartbeat = z.object({
  node: z.string(),
  priority: z.number().int(),
  seq: z.number().int().min(0),
  startedAt: z.string(),
  appliedGeneration: z.number().int().min(0),
  /** Groups whose addresses this node holds (or is adding right now), with the term it holds them under. */
  owned: z.array(z.object({ group: z.string(), term: z.number().int() })),
  /** Group → generation of the latest ownership decision this executor has taken in: lets its
   *  controller tell "released" from "the release has not reached the kernel yet". */
  ownerGenerations: z.record(z.string(), z.number().int().min(0)).optional(),
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

// ---- operator commands (lvsflow drain/enable/disable/maintenance/weight/failover, the dashboard)

export const CommandAction = z.enum(["drain", "enable", "disable", "maintenance", "weight", "failover"]);
export type CommandAction = z.infer<typeof CommandAction>;

/** One operator command; its event id is the command id every ack and decision refers to. */
export const CommandRequest = z.object({
  action: CommandAction,
  /** Virtual service ("tcp:198.51.100.50:80" or "198.51.100.50:80") for drain and weight. */
  vs: z.string().min(1).max(100).nullable().default(null),
  /** Real server "203.0.113.11:80", or an address alone for every port of it. */
  real: z.string().min(1).max(64).nullable().default(null),
  group: z.string().min(1).max(63).nullable().default(null),
  /** failover: the node that should own the group; null = back to priorities and preempt. */
  to: z.string().min(1).max(64).nullable().default(null),
  /** maintenance: on or off. */
  on: z.boolean().nullable().default(null),
  /** weight: the new weight; null = back to the configured weight. */
  weight: z.number().int().min(0).max(65535).nullable().default(null),
  /** drain: remove the real after this long even if connections remain. */
  timeoutMs: z.number().int().min(0).max(86_400_000).nullable().default(null),
  /** Who issued it: "alice@ops1" (CLI) or "alice via dashboard from 192.0.2.7". */
  issuedBy: z.string().min(1).max(200),
  reason: z.string().max(500).nullable().default(null),
});

/** One node's answer to a command. Drain answers twice: applied (weight 0 in the kernel), then done (left the pool). */
export const CommandAck = z.object({
  commandId: z.string(),
  node: z.string(),
  status: z.enum(["applied", "done", "refused", "failed"]),
  detail: z.string().max(2000),
  /** The pool generation that carries the change on this node, when there is one. */
  generation: z.number().int().min(0).nullable().default(null),
});

/** One entry of the replicated operator-override map; value null = cleared (kept so a clear wins when maps merge). */
export const OverrideEntry = z.object({
  key: z.string().max(300),
  kind: z.enum(["disabled", "maintenance", "weight", "drain", "pin"]),
  vs: z.string().nullable(),
  real: z.string().nullable(),
  group: z.string().nullable(),
  value: z.union([z.boolean(), z.number(), z.string()]).nullable(),
  /** Command time (ms since epoch) and id: the later command wins (last writer wins). */
  at: z.number(),
  commandId: z.string(),
  by: z.string(),
});
export type OverrideEntry = z.infer<typeof OverrideEntry>;

/** A controller's whole override map, re-sent so a restarted or partitioned node catches up. */
export const CommandState = z.object({ node: z.string(), entries: z.array(OverrideEntry).max(100_000) });

/** Active connections per real, as the node's kernel counts them (nftables: conntrack). */
export const Connections = z.object({
  node: z.string(),
  /** How they were counted, e.g. "conntrack". */
  source: z.string(),
  counts: z.array(z.object({ vs: z.string(), real: z.string(), active: z.number().int().min(0) })),
});

/** A controller's current view, sent in reply to a status query. */
export const ControllerView = z.object({
  node: z.string(),
  pools: z.array(z.object({
    vs: z.string(),
    state: z.string(),
    fallbackActive: z.boolean(),
    reals: z.array(z.object({
      real: z.string(),
      state: z.enum(["unknown", "up", "down"]),
      why: z.string(),
      /** Weight in this node's desired pool; null = not in the pool. */
      weight: z.number().int().nullable(),
      admin: OperatorOverride.nullable(),
      /** One per vantage point: `prober` sent its last result, for `group` when it has one. */
      checks: z.array(z.object({ prober: z.string(), group: z.string().nullable().optional(), ok: z.boolean(), streak: z.number().int(), ageMs: z.number(), error: z.string().nullable(), check: z.string() })),
    })),
  })),
  groups: z.array(z.object({ group: z.string(), state: z.string(), role: z.enum(["owner", "backup"]), term: z.number().int(), pinned: z.string().nullable() })),
});

/** Quorum: what one voter (an LB node's controller, or a witness) hears. Sent every heartbeat
 *  interval and at once when the set changes; any message from a voter proves it alive. */
export const VoterView = z.object({
  voter: z.string().min(1).max(64),
  witness: z.boolean(),
  seq: z.number().int().min(0),
  /** Voter → ms since this voter last heard it (only voters heard within the dead time). */
  hears: z.record(z.string(), z.number().min(0)),
  /** An LB node: its own checks pass for some group (executor alive, no faults, reals). */
  canOwn: z.boolean(),
  /** Group → its own checks pass for that group (LB nodes). */
  eligible: z.record(z.string(), z.boolean()).optional(),
  /** Group → the LB node this voter votes for as the group's owner (quorum mode). */
  votes: z.record(z.string(), z.string().nullable()).optional(),
  /** Group → the term under which this LB node holds it, or may still hold it: its controller
   *  owns it, or its executor holds the addresses or has not yet taken in the release (null: released). */
  owns: z.record(z.string(), z.number().int().nullable()).optional(),
  /** Voter → the send time (ms since the epoch, that voter's own clock) of the latest view of it
   *  this voter has taken in. A voter that withdrew its vote from this node re-votes as soon as
   *  this acknowledges the withdrawal and `owns` says released, instead of waiting its hold. */
  acks: z.record(z.string(), z.number()).optional(),
});

/** Quorum mode: the controller renews its executor's right to hold a group for leaseMs. */
export const OwnerLease = z.object({
  node: z.string(),
  group: z.string(),
  term: z.number().int().min(0),
  leaseMs: z.number().int().min(0),
  /** The same deadline as a wall-clock time (ms since epoch): controller and executor share a clock. */
  untilMs: z.number().int().optional(),
});

/**
 * A batch of the inputs one controller fed to its machines, with the time it used for each, so
 * `lvsflow replay` can feed the same inputs to fresh machines and compare their decisions.
 * `entries` is a base64 deflate-raw JSON array (services/controller/journal.ts describes it).
 */
export const ControllerInputs = z.object({
  node: z.string(),
  /** One id per controller start: the batches of one boot form one journal. */
  boot: z.string().min(1).max(64),
  /** Batch number within the boot, from 0 without gaps: a gap means inputs were lost. */
  seq: z.number().int().min(0),
  /** Times (ms since epoch) of the first and last entry. */
  from: z.number(),
  to: z.number(),
  count: z.number().int().min(0),
  /** The batch opens with a starting point (machines created or a checkpoint of them): replay may begin here. */
  start: z.boolean(),
  encoding: z.literal("deflate-json-base64"),
  entries: z.string().max(4_000_000),
});

/** Configuration version: the first 16 hex digits of the sources' sha256 (shared/config/load.ts). */
const ConfigVersion = z.string().regex(/^[0-9a-f]{16}$/, "a 16-hex-digit configuration version");
const ConfigTrigger = z.enum(["startup", "sighup", "autoreload", "push"]);

/** An operator stored a new configuration version in Redis (`lvsflow config push`): every service loads it. */
export const ConfigPushed = z.object({
  version: ConfigVersion,
  /** The files as the operator gave them (the stored version holds every source, includes too). */
  files: z.array(z.string().max(4096)).max(64),
  by: z.string().min(1).max(200),
});

/** What a reload changed, by id (never values: they may be secrets). */
export const ConfigChanges = z.object({
  virtualServicesAdded: z.array(z.string()),
  virtualServicesRemoved: z.array(z.string()),
  virtualServicesChanged: z.array(z.string()),
  virtualServicesUnchanged: z.number().int().min(0),
  realsAdded: z.array(z.string()),
  realsRemoved: z.array(z.string()),
  groupsAdded: z.array(z.string()),
  groupsRemoved: z.array(z.string()),
  groupsChanged: z.array(z.string()),
  settings: z.array(z.string()),
});

/** A service applied a configuration (only the difference to the one it ran). */
export const ConfigApplied = z.object({
  node: z.string(),
  service: z.string(),
  version: ConfigVersion,
  previous: ConfigVersion.nullable(),
  trigger: ConfigTrigger,
  changes: ConfigChanges,
});

/** A service refused a configuration: the running one stays. `errors` are FILE:LINE:COL lines. */
export const ConfigRejected = z.object({
  node: z.string(),
  service: z.string(),
  /** The refused version, when its sources could be read. */
  version: ConfigVersion.nullable(),
  /** The version that keeps running. */
  running: ConfigVersion,
  trigger: ConfigTrigger,
  files: z.array(z.string().max(4096)).max(64),
  errors: z.array(z.string().max(2000)).min(1).max(50),
});

/**
 * A prober's membership in a probe group: probers of one group share the checks (rendezvous
 * hashing over the live members); one that stops publishing, or says it is leaving, has its
 * checks taken over by the others.
 */
export const ProberHeartbeat = z.object({
  prober: z.string().min(1).max(64),
  group: z.string().min(1).max(64),
  seq: z.number().int().min(0),
  /** How often this prober publishes; members are dead after missing a few. */
  periodMs: z.number().int().positive(),
  /** Sent once on a clean stop: the others take over at once. */
  leaving: z.boolean().default(false),
  /** Checks this prober runs now. */
  targets: z.number().int().min(0),
});

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
  z.object({ ...envelope, type: z.literal("command.request"), data: CommandRequest }),
  z.object({ ...envelope, type: z.literal("command.ack"), data: CommandAck }),
  z.object({ ...envelope, type: z.literal("command.state"), data: CommandState }),
  z.object({ ...envelope, type: z.literal("executor.connections"), data: Connections }),
  z.object({ ...envelope, type: z.literal("controller.view"), data: ControllerView }),
  z.object({ ...envelope, type: z.literal("voter.view"), data: VoterView }),
  z.object({ ...envelope, type: z.literal("owner.lease"), data: OwnerLease }),
  z.object({ ...envelope, type: z.literal("controller.inputs"), data: ControllerInputs }),
  z.object({ ...envelope, type: z.literal("config.pushed"), data: ConfigPushed }),
  z.object({ ...envelope, type: z.literal("config.applied"), data: ConfigApplied }),
  z.object({ ...envelope, type: z.literal("config.rejected"), data: ConfigRejected }),
  z.object({ ...envelope, type: z.literal("prober.heartbeat"), data: ProberHeartbeat }),
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
