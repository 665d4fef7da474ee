// The normalized configuration model: the single source of truth for every service.
// ldirectord.cf, keepalived.conf and the native YAML form are all parsed into this.
import { z } from "zod";
import { isIP } from "node:net";

export const CONFIG_SCHEMA_VERSION = 1;

export const Ipv4 = z.string().refine((s) => isIP(s) === 4, { message: "not an IPv4 address" });
export const IpAddress = z.string().refine((s) => isIP(s) !== 0, { message: "not an IP address" });
export const Port = z.number().int().min(0).max(65535);
/** Interface names as the kernel accepts them (no shell metacharacters, ≤15 bytes). */
export const InterfaceName = z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, "not a valid interface name");
/** Names used in subjects and kernel object names: lowercase, digits, dash, underscore. */
export const Name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "use lowercase letters, digits, - and _ (max 63)");

export const Forwarding = z.enum(["masq", "gate", "ipip"]);
export type Forwarding = z.infer<typeof Forwarding>;
export const Protocol = z.enum(["tcp", "udp", "fwm"]);
export const Family = z.enum(["ipv4", "ipv6"]);

export const CheckType = z.enum(["connect", "negotiate", "ping", "external", "on", "off", "combined", "plugin"]);
export const Service = z.enum([
  "dns", "ftp", "http", "https", "http_proxy", "imap", "imaps", "ldap", "ldaps", "mysql", "nntp", "none",
  "oracle", "pgsql", "pop", "pops", "radius", "simpletcp", "sip", "smtp", "submission",
]);

export const Check = z.object({
  type: CheckType,
  service: Service,
  request: z.string(),
  receive: z.string(),
  /** Port to probe; null = the real server's port. */
  port: Port.nullable(),
  /** Seconds between two checks of one real server. */
  interval: z.number().positive(),
  /** Effective timeout in seconds for this check type (ldirectord's checktimeout/negotiatetimeout chain). */
  timeout: z.number().positive(),
  /** Consecutive failures before an up real is taken down (ldirectord failurecount). */
  failureCount: z.number().int().min(1),
  /** Consecutive successes before a down real comes back (ldirectord: 1). */
  riseCount: z.number().int().min(1).default(1),
  /** For combined checks (checktype = N): connect checks between two negotiate checks. */
  combinedConnects: z.number().int().min(0).default(0),
  virtualhost: z.string().nullable().default(null),
  httpMethod: z.enum(["GET", "HEAD"]).default("GET"),
  command: z.string().nullable().default(null),
  /** Verify the server certificate for https (ldirectord never does). */
  tlsVerify: z.boolean().default(false),
  /** keepalived `retry`: extra attempts within one check before it counts as failed. */
  retry: z.number().int().min(0).max(10).default(0),
  /** keepalived `delay_before_retry`, seconds between two attempts of one check. */
  delayBeforeRetry: z.number().min(0).default(1),
  /** keepalived `connect_timeout`, seconds for the TCP/TLS connect alone; null = the check's timeout. */
  connectTimeout: z.number().positive().nullable().default(null),
  /** keepalived `status_code`: accepted HTTP statuses ("200", "200-299"); null = any 2xx (ldirectord). */
  statusCodes: z.array(z.string().regex(/^[1-5]\d\d(-[1-5]\d\d)?$/, "a status code or range like 200-299")).nullable().default(null),
  /** checkType plugin: the name an in-process probe module registered under. */
  plugin: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, "plugin names are letters, digits, _ . -").nullable().default(null),
  /** Free-form settings handed to the plugin. */
  pluginOptions: z.record(z.string(), z.unknown()).default({}),
  /** Credentials (ldirectord login/passwd/database/secret). Never logged or published. */
  login: z.string().optional(),
  passwd: z.string().optional(),
  database: z.string().optional(),
  secret: z.string().optional(),
  /** The same credentials read from files (content without the final newline), so they stay out of
   *  the configuration text and its stored versions; relative to the configuration file. */
  loginFile: z.string().optional(),
  passwdFile: z.string().optional(),
  secretFile: z.string().optional(),
});
export type Check = z.infer<typeof Check>;

export const Real = z.object({
  address: IpAddress,
  port: Port,
  forwarding: Forwarding,
  weight: z.number().int().min(0).max(65535),
  /** Per-real request/receive override (ldirectord `real=… "req", "recv"`). */
  request: z.string().nullable().default(null),
  receive: z.string().nullable().default(null),
  lowerThreshold: z.number().int().min(0).nullable().default(null),
  upperThreshold: z.number().int().min(0).nullable().default(null),
});
export type Real = z.infer<typeof Real>;

export const Fallback = z.object({ address: IpAddress, port: Port, forwarding: Forwarding });
export type Fallback = z.infer<typeof Fallback>;

export const Persistence = z.object({
  timeout: z.number().int().positive(),
  /** Persistence granularity: dotted quad for IPv4, prefix length for IPv6. */
  netmask: z.string(),
});

export const VirtualService = z.object({
  /** Stable identity: "tcp:198.51.100.50:80", "udp:[2001:db8::1]:53" or "fwm:7". */
  id: z.string(),
  protocol: Protocol,
  address: IpAddress.nullable(),
  port: Port,
  fwmark: z.number().int().positive().nullable(),
  family: Family,
  scheduler: z.string().regex(/^[a-z]+$/, "scheduler names are lowercase words"),
  schedFlags: z.string().nullable().default(null),
  persistence: Persistence.nullable(),
  quiescent: z.boolean(),
  onePacket: z.boolean().default(false),
  check: Check,
  fallback: Fallback.nullable(),
  /** keepalived's pool quorum: the fallback replaces every real while the up reals' total weight is
   *  below it (lost below quorum − hysteresis, regained at quorum + hysteresis). Left out (1/0):
   *  ldirectord's rule, the fallback serves only when no real is up. */
  quorum: z.number().int().min(1).optional(),
  hysteresis: z.number().int().min(0).optional(),
  reals: z.array(Real),
  /** Where this virtual service was defined, for messages. */
  source: z.object({ file: z.string(), line: z.number().int() }).nullable().default(null),
});
export type VirtualService = z.infer<typeof VirtualService>;

export const FloatingAddress = z.object({
  address: IpAddress,
  prefix: z.number().int().min(0).max(128),
  interface: InterfaceName,
});
export type FloatingAddress = z.infer<typeof FloatingAddress>;

/** Addresses that move together between LB nodes (the seed: outside VIP + inside gateway). */
export const FloatingGroup = z.object({
  name: Name,
  addresses: z.array(FloatingAddress).min(1),
  /** A higher-priority node takes the group back when it returns (VRRP preempt). */
  preempt: z.boolean().default(true),
  /** Milliseconds a returning higher-priority node waits before taking over. */
  preemptDelayMs: z.number().int().min(0).default(0),
  /** Gratuitous ARP schedule after takeover, ms offsets (keepalived: 5 now, 5 after 5 s). */
  garpScheduleMs: z.array(z.number().int().min(0)).default([0, 100, 200, 300, 400, 5000, 5100, 5200, 5300, 5400]),
  /** Owner steps down (and a backup does not take over) while its own prober sees no healthy real
   *  of this group's virtual services but a peer's prober sees some. */
  stepDownWithoutReals: z.boolean().default(false),
});
export type FloatingGroup = z.infer<typeof FloatingGroup>;

export const LbNode = z.object({
  name: Name,
  priority: z.number().int().min(1).max(255),
  /** Optional description of the node's interfaces, for documentation and checks. */
  interfaces: z.record(z.string(), z.string()).default({}),
});
export type LbNode = z.infer<typeof LbNode>;

export const Timers = z.object({
  /** Executor heartbeat interval; 50 ms measured safe under load (reference: load-anchors). */
  heartbeatMs: z.number().int().min(10).default(50),
  /** A node is dead after this long without a heartbeat (keepalived v3 @0.1 s: 361 ms). */
  deadMs: z.number().int().min(30).default(300),
});

/** IPVS driver settings (docs: services/executor/ipvs/sysctl.ts and sync.ts). null = leave the sysctl alone. */
export const IpvsSettings = z.object({
  /** net.ipv4.vs.expire_nodest_conn (lvsflow default 1): connections to a deleted real expire at once. */
  expireNodestConn: z.boolean().nullable().default(true),
  /** net.ipv4.vs.expire_quiescent_template (default 1): persistent clients leave a quiesced real. */
  expireQuiescentTemplate: z.boolean().nullable().default(true),
  /** net.ipv4.vs.conntrack (default: leave alone): 1 only if netfilter must see IPVS flows. */
  conntrack: z.boolean().nullable().default(null),
  /** net.ipv4.ip_forward (default 1): LVS-NAT forwards. */
  ipForward: z.boolean().nullable().default(true),
  /** Connection sync daemon: master on the owner of `group`, backup elsewhere (keepalived lvs_sync_daemon). */
  syncDaemon: z.object({
    interface: InterfaceName,
    syncId: z.number().int().min(0).max(255).default(0),
    /** Floating group whose owner is master; null = the first group. */
    group: Name.nullable().default(null),
    mcastGroup: IpAddress.nullable().default(null),
    port: Port.nullable().default(null),
    ttl: z.number().int().min(1).max(255).nullable().default(null),
    maxlen: z.number().int().min(1).max(65507).nullable().default(null),
  }).nullable().default(null),
});
export type IpvsSettings = z.infer<typeof IpvsSettings>;

export const Global = z.object({
  autoreload: z.boolean().default(false),
  /** Health vantage policy: how many fresh probers must see a real down before it is removed. */
  vantagePolicy: z.enum(["any", "all", "majority"]).default("all"),
  driver: z.enum(["nftables", "ipvs", "auto"]).default("nftables"),
  /** Voters that are not LB nodes (`lvsflow run witness`). LB nodes + witnesses >= 3 = quorum mode:
   *  a node owns a group only while a majority of voters hears it. */
  witnesses: z.array(Name).default([]),
  /** Seed of the consistent hash every node's data plane uses to pick a real (same on all nodes). */
  hashSeed: z.number().int().min(0).max(0xffffffff).default(0x5eed),
  /** IPVS driver settings (driver ipvs or auto). */
  ipvs: IpvsSettings.optional(),
});

export const Model = z.object({
  schemaVersion: z.literal(CONFIG_SCHEMA_VERSION).default(CONFIG_SCHEMA_VERSION),
  site: Name.default("default"),
  nodes: z.array(LbNode).default([]),
  groups: z.array(FloatingGroup).default([]),
  timers: Timers.default({ heartbeatMs: 50, deadMs: 300 }),
  global: Global.default({ autoreload: false, vantagePolicy: "all", driver: "nftables", witnesses: [], hashSeed: 0x5eed }),
  virtualServices: z.array(VirtualService),
});
export type Model = z.infer<typeof Model>;
export type ModelInput = z.input<typeof Model>;

/** Identity of a virtual service as ldirectord writes it. */
export function vsId(protocol: string, address: string | null, port: number, fwmark: number | null): string {
  if (protocol === "fwm") return `fwm:${fwmark}`;
  const a = address!.includes(":") ? `[${address}]` : address;
  return `${protocol}:${a}:${port}`;
}

/** Identity of a real server within a virtual service. */
export function realId(r: { address: string; port: number }): string {
  return r.address.includes(":") ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`;
}

/** The floating group that carries a virtual service's address, if any. */
export function groupOf(model: Model, vs: VirtualService): FloatingGroup | undefined {
  return model.groups.find((g) => g.addresses.some((a) => a.address === vs.address));
}
