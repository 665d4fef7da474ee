// PURE: the IPVS connection sync daemon follows the VIP, as keepalived's lvs_sync_daemon does:
// master on the node that owns the floating group (it multicasts its connection table), backup
// on the others (they receive it, so a takeover keeps established connections and persistence).
export type SyncRole = "master" | "backup";

export interface SyncDaemonConfig {
  interface: string;
  syncId: number;
  mcastGroup?: string | null;
  port?: number | null;
  ttl?: number | null;
  maxlen?: number | null;
}

export interface SyncDaemonState { role: SyncRole; interface: string; syncId: number; maxlen: number; group: string; port: number; ttl: number }

/** `ipvsadm -L --daemon`: "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)". */
export function parseDaemons(text: string): SyncDaemonState[] {
  const out: SyncDaemonState[] = [];
  for (const line of text.split("\n")) {
    const m = /^(master|backup) sync daemon \((.*)\)\s*$/.exec(line.trim());
    if (!m) continue;
    const kv = Object.fromEntries(m[2].split(",").map((p) => p.trim().split("=") as [string, string]));
    out.push({ role: m[1] as SyncRole, interface: kv.mcast ?? "", syncId: Number(kv.syncid ?? 0), maxlen: Number(kv.maxlen ?? 1472), group: kv.group ?? "224.0.0.81", port: Number(kv.port ?? 8848), ttl: Number(kv.ttl ?? 1) });
  }
  return out;
}

function matches(s: SyncDaemonState, c: SyncDaemonConfig): boolean {
  return s.interface === c.interface && s.syncId === c.syncId && (c.mcastGroup == null || s.group === c.mcastGroup)
    && (c.port == null || s.port === c.port) && (c.ttl == null || s.ttl === c.ttl) && (c.maxlen == null || s.maxlen === c.maxlen);
}

export function startArgv(role: SyncRole, c: SyncDaemonConfig): string[] {
  const a = ["ipvsadm", "--start-daemon", role, "--mcast-interface", c.interface, "--syncid", String(c.syncId)];
  if (c.maxlen != null) a.push("--sync-maxlen", String(c.maxlen));
  if (c.mcastGroup != null) a.push("--mcast-group", c.mcastGroup);
  if (c.port != null) a.push("--mcast-port", String(c.port));
  if (c.ttl != null) a.push("--mcast-ttl", String(c.ttl));
  return a;
}

/** The ipvsadm calls that leave exactly the daemon for `want` running (stop the other role first). */
export function planSync(current: SyncDaemonState[], want: SyncRole, c: SyncDaemonConfig): string[][] {
  const other: SyncRole = want === "master" ? "backup" : "master";
  const ops: string[][] = [];
  if (current.some((s) => s.role === other)) ops.push(["ipvsadm", "--stop-daemon", other]);
  const mine = current.find((s) => s.role === want);
  if (mine && !matches(mine, c)) ops.push(["ipvsadm", "--stop-daemon", want]);
  if (!mine || !matches(mine, c)) ops.push(startArgv(want, c));
  return ops;
}

/** The calls that stop every running daemon (the sync daemon was taken out of the configuration). */
export function planStopAll(current: SyncDaemonState[]): string[][] {
  return [...new Set(current.map((s) => s.role))].map((role) => ["ipvsadm", "--stop-daemon", role]);
}
