// The data-plane driver the executor applies decisions through: nftables (nft/) or IPVS via
// ipvsadm (ipvs/). Both reconcile the kernel to the full desired state and report what they did.
import { existsSync } from "node:fs";
import type { Logger } from "pino";
import type { Model } from "../../shared/schemas/config.ts";
import type { PoolSpec } from "../../shared/schemas/events.ts";
import { NftablesDriver } from "./nft/driver.ts";
import { IpvsDriver } from "./ipvs/driver.ts";
import { localHost, type IpvsHost } from "./ipvs/host.ts";
import { ipvsOptions } from "./ipvs/options.ts";

export type DriverKind = "nftables" | "ipvs";

export interface DriverApplyResult {
  ok: boolean;
  ops: string[];
  error: string | null;
  readback: string | null;
  durationMs: number;
  /** What was found changed behind the driver's back (hand edits), repaired by this apply. */
  drift?: string[];
}

export interface Driver {
  readonly kind: DriverKind;
  /** Reconciles the kernel with the full desired state. Never throws. */
  apply(desired: PoolSpec[]): Promise<DriverApplyResult>;
  /** Kernel settings the data plane needs; returns the writes done. */
  ensureSysctls(opts: { routeLocalnet: boolean }): Promise<string[]>;
  /** Ownership of a floating group changed on this node (IPVS: sync daemon master/backup). */
  onOwnership?(group: string, role: "owner" | "backup"): Promise<string[]>;
  /**
   * Live reload: takes the driver's own settings from the new model (IPVS: fallbacks, scheduler
   * flags, sysctls, sync daemon), in force from the next apply. Returns the names of those that
   * changed (nftables: none, its only setting, the hash seed, is read at start).
   */
  reload(model: Model): string[];
  /**
   * Active connections per "vs|real" as the data plane counts them (IPVS: its own table, which
   * conntrack does not see). Absent: the executor counts from conntrack. Throws when unknown.
   */
  countConnections?(pools: PoolSpec[]): Promise<Map<string, number>>;
}

/** The nftables driver as a Driver (its behaviour is unchanged). */
export function nftablesDriver(opts: { log?: Logger; netns?: string; render?: import("./nft/render.ts").RenderOptions } = {}): Driver {
  const nft = new NftablesDriver(opts);
  return { kind: "nftables", apply: (d) => nft.apply(d), ensureSysctls: (o) => nft.ensureSysctls(o), reload: () => [] };
}

/** The IPVS driver configured from the model: fallbacks, scheduler flags, sysctls, sync daemon. */
export function ipvsDriverFor(model: Model, opts: { log?: Logger; host?: IpvsHost } = {}): IpvsDriver {
  return new IpvsDriver({ host: opts.host, log: opts.log, ...ipvsOptions(model) });
}

/** Where the kernel has IPVS loaded (the file exists in every namespace once ip_vs is loaded). */
export const kernelHasIpvs = (procFile = "/proc/net/ip_vs") => existsSync(procFile);

/**
 * Picks and checks the driver. `auto` = ipvs when /proc/net/ip_vs exists, else nftables; the
 * choice is logged. For ipvs the version check runs here, so an executor refuses to start (with
 * the reason) on a kernel without IPVS or with an ipvsadm that does not match it.
 */
export async function chooseDriver(kind: "nftables" | "ipvs" | "auto", opts: { model: Model; log: Logger; host?: IpvsHost; procFile?: string }): Promise<Driver> {
  const { log } = opts;
  const pick: DriverKind = kind === "auto" ? (kernelHasIpvs(opts.procFile) ? "ipvs" : "nftables") : kind;
  if (kind === "auto") log.info({ driver: pick, why: pick === "ipvs" ? "the kernel has IPVS (/proc/net/ip_vs)" : "no IPVS in this kernel (/proc/net/ip_vs missing)" }, `driver auto: using ${pick}`);
  else log.info({ driver: pick }, `driver: ${pick} (configured)`);
  // Consistent selection: every node picks the same real for a flow, so connections survive failover.
  if (pick === "nftables") return nftablesDriver({ log, render: { selection: "consistent", seed: opts.model.global.hashSeed ?? 0x5eed } });
  const d = ipvsDriverFor(opts.model, { log, host: opts.host ?? localHost() });
  const v = await d.check(); // throws IpvsUnavailableError with the reason
  log.info({ ...v }, "IPVS driver ready");
  return d;
}
