// PURE: the IPVS driver's own settings taken from the model (at start and on every live reload),
// and which of them a new model changes.
import type { Model } from "../../../shared/schemas/config.ts";
import { fallbackKeys } from "./desired.ts";
import type { SyncDaemonConfig } from "./sync.ts";
import { sysctlTargets, type IpvsSysctls } from "./sysctl.ts";

export interface IpvsSettingsOptions {
  /** Configured fallbacks (any form fallbackKeys() accepts): deleted at once, never quiesced. */
  fallbacks?: Parameters<typeof fallbackKeys>[0];
  /** Scheduler flags and one-packet scheduling per virtual service id, when decisions lack them. */
  extras?: ReadonlyMap<string, { schedFlags: string | null; onePacket: boolean }>;
  sysctls?: Partial<IpvsSysctls>;
  /** The sync daemon and the floating group whose owner runs it as master. */
  syncDaemon?: (SyncDaemonConfig & { group: string | null }) | null;
}

/** Fallbacks, scheduler flags, sysctls and the sync daemon (its group: the first one when not named). */
export function ipvsOptions(model: Model): Required<IpvsSettingsOptions> {
  const s = model.global.ipvs;
  const sync = s?.syncDaemon ?? null;
  return {
    fallbacks: model.virtualServices,
    extras: new Map(model.virtualServices.map((v) => [v.id, { schedFlags: v.schedFlags, onePacket: v.onePacket }])),
    sysctls: s ? { expireNodestConn: s.expireNodestConn, expireQuiescentTemplate: s.expireQuiescentTemplate, conntrack: s.conntrack, ipForward: s.ipForward } : {},
    syncDaemon: sync ? { ...sync, group: sync.group ?? model.groups[0]?.name ?? null } : null,
  };
}

const LABELS: Record<keyof IpvsSettingsOptions, string> = { fallbacks: "fallbacks", extras: "scheduler flags / one-packet", sysctls: "sysctls", syncDaemon: "sync daemon" };

/** Comparable form of each setting: what the kernel would get, not how the model spells it. */
const canon: { [K in keyof IpvsSettingsOptions]-?: (v: IpvsSettingsOptions[K]) => string } = {
  fallbacks: (v) => [...fallbackKeys(v ?? [])].sort().join("\n"),
  extras: (v) => JSON.stringify([...(v ?? new Map())].sort(([a], [b]) => a.localeCompare(b))),
  sysctls: (v) => JSON.stringify(sysctlTargets(v ?? {})),
  syncDaemon: (v) => JSON.stringify(v ? Object.entries(v).sort(([a], [b]) => a.localeCompare(b)) : null),
};

/** Names of the settings `next` gives that differ from `prev` (a setting `next` leaves out is kept). */
export function changedSettings(prev: IpvsSettingsOptions, next: IpvsSettingsOptions): string[] {
  return (Object.keys(LABELS) as (keyof IpvsSettingsOptions)[])
    .filter((k) => k in next && canon[k](prev[k] as never) !== canon[k](next[k] as never))
    .map((k) => LABELS[k]);
}
