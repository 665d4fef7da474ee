// keepalived's VRRP part → lvsflow floating groups and this LB node. A vrrp_instance's
// virtual_ipaddress (and _excluded) become a group's addresses; a vrrp_sync_group makes its
// members' addresses one group, since they move together; priority becomes the node's priority;
// nopreempt / preempt_delay become the group's preempt / preemptDelayMs. The rest of VRRP
// (advertisements, authentication, tracking, notify scripts) has no lvsflow equivalent: lvsflow
// nodes elect owners from heartbeats on the bus. Each such statement is reported on its line.
import { isIP } from "node:net";
import { FloatingGroup, InterfaceName, type FloatingAddress, type LbNode } from "../schemas/config.ts";
import type { KStmt, Word } from "./keepalived-grammar.ts";
import { KCtx, lvsflowName } from "./keepalived-values.ts";

export interface VrrpInstance {
  name: string;
  at: Word;
  iface: string | null;
  priority: number;
  prioritySet: Word | null;
  preempt: boolean;
  preemptDelayMs: number;
  addresses: (FloatingAddress & { at: Word })[];
}
export interface SyncGroup { name: string; at: Word; members: Word[] }

const TIMERS = "lvsflow nodes heartbeat over the bus (timers.heartbeatMs, default 50 ms; timers.deadMs, default 300 ms)";
const BUS = "lvsflow nodes find each other over the NATS bus, not by VRRP advertisements";
const EVENTS = "lvsflow publishes every ownership change as an event (audited in Redis); act on those events";
const FAULTS = "an lvsflow node steps down on its own faults (an interface of the group down, kernel changes failing)";

const INSTANCE_IGNORED: Record<string, string> = {
  virtual_router_id: "lvsflow groups are named, not numbered", advert_int: TIMERS, version: BUS, authentication: BUS, auth_type: BUS, auth_pass: BUS,
  unicast_peer: BUS, unicast_src_ip: BUS, mcast_src_ip: BUS, mcast_dst_ip: BUS, unicast_ttl: BUS, unicast_fault_no_peer: BUS, check_unicast_src: BUS,
  track_interface: FAULTS, track_script: FAULTS, track_file: FAULTS, track_process: FAULTS, track_bfd: FAULTS, dont_track_primary: FAULTS,
  notify: EVENTS, notify_master: EVENTS, notify_backup: EVENTS, notify_fault: EVENTS, notify_stop: EVENTS, notify_deleted: EVENTS,
  notify_master_rx_lower_pri: EVENTS, notify_priority_changes: EVENTS, smtp_alert: EVENTS,
  garp_master_delay: "the gratuitous ARP schedule is groups[].garpScheduleMs", garp_master_repeat: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  garp_master_refresh: "the gratuitous ARP schedule is groups[].garpScheduleMs", garp_master_refresh_repeat: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  garp_lower_prio_delay: "the gratuitous ARP schedule is groups[].garpScheduleMs", garp_lower_prio_repeat: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  lvs_sync_daemon_interface: "lvsflow does not run the IPVS connection sync daemon",
  use_vmac: "lvsflow moves the addresses themselves, without a virtual MAC", vmac_xmit_base: "lvsflow moves the addresses themselves, without a virtual MAC",
  virtual_routes: "lvsflow does not manage routes", virtual_rules: "lvsflow does not manage routing rules", accept: "", no_accept: "", strict_mode: "",
  native_ipv6: "", debug: "", higher_prio_send_advert: BUS, lower_prio_no_advert: BUS, skip_check_adv_addr: BUS, kernel_rx_buf_size: BUS,
  down_timer_adverts: TIMERS, promote_secondaries: "",
};

export function readInstance(x: KCtx, s: KStmt): VrrpInstance | null {
  const nameW = x.arg(s, 0, "instance name");
  if (!nameW || !s.block) { if (nameW) x.error(s.key, s.key.text, "expected a block: vrrp_instance NAME { … }"); return null; }
  const inst: VrrpInstance = { name: nameW.text, at: s.key, iface: null, priority: 100, prioritySet: null, preempt: true, preemptDelayMs: 0, addresses: [] };
  let state: Word | null = null;
  // The interface is the default for addresses listed before it too.
  for (const t of s.block.filter((b) => b.key.text === "interface")) {
    const w = x.arg(t, 0, "interface name");
    if (w && !InterfaceName.safeParse(w.text).success) x.error(w, "interface", `"${w.text}" is not a valid interface name`);
    else if (w) inst.iface = w.text;
  }
  for (const t of s.block) {
    const k = t.key.text;
    if (k === "interface") continue;
    if (k === "state") {
      state = x.arg(t, 0, "MASTER or BACKUP") ?? null;
      x.ignored(t, "lvsflow elects the owner by priority (and preempt), not by a configured initial state");
    } else if (k === "priority") {
      const p = x.number(t, "priority", { min: 1, max: 255, int: true });
      if (p !== undefined) { inst.priority = p; inst.prioritySet = t.key; }
    } else if (k === "nopreempt") {
      inst.preempt = false;
    } else if (k === "preempt") {
      inst.preempt = true;
    } else if (k === "preempt_delay") {
      const d = x.number(t, "preempt_delay (seconds)", { min: 0, max: 1000 });
      if (d !== undefined) inst.preemptDelayMs = Math.round(d * 1000);
    } else if (k === "virtual_ipaddress" || k === "virtual_ipaddress_excluded") {
      if (!t.block) { x.error(t.key, k, `expected a block: ${k} { ADDRESS[/PREFIX] [dev IFACE] … }`); continue; }
      for (const e of t.block) readAddress(x, e, inst);
    } else if (k in INSTANCE_IGNORED) {
      x.ignored(t, INSTANCE_IGNORED[k] || undefined);
    } else {
      x.unknown(t, `vrrp_instance ${inst.name}`);
    }
  }
  if (!inst.preempt && state?.text.toUpperCase() === "MASTER") {
    x.warn(state, "state", "keepalived requires state BACKUP with nopreempt; lvsflow simply does not preempt");
  }
  return inst;
}

/** `192.0.2.10/24 dev eth0 label eth0:1 …`; without a prefix keepalived uses /32 (/128). */
function readAddress(x: KCtx, e: KStmt, inst: VrrpInstance): void {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(e.key.text);
  const fam = m ? isIP(m[1]) : 0;
  if (!m || fam === 0) { x.error(e.key, "virtual_ipaddress", `"${e.key.text}" is not an address[/prefix]`); return; }
  const prefix = m[2] === undefined ? (fam === 4 ? 32 : 128) : Number(m[2]);
  if (prefix > (fam === 4 ? 32 : 128)) { x.error(e.key, "virtual_ipaddress", `prefix /${prefix} is too long for ${m[1]}`); return; }
  let iface = inst.iface;
  for (let i = 0; i < e.args.length; i++) {
    const w = e.args[i];
    if (w.text === "dev" && e.args[i + 1]) {
      iface = e.args[++i].text;
      if (!InterfaceName.safeParse(iface).success) { x.error(e.args[i], "virtual_ipaddress", `"${iface}" is not a valid interface name`); return; }
    } else if (["brd", "broadcast", "label", "scope", "track_group", "preferred_lft", "valid_lft"].includes(w.text) && e.args[i + 1]) {
      x.warn(w, "virtual_ipaddress", `${w.text} ${e.args[++i].text}: no lvsflow equivalent, ignored (lvsflow adds ${m[1]}/${prefix} with the kernel's defaults)`);
    } else {
      x.warn(w, "virtual_ipaddress", `"${w.text}": no lvsflow equivalent, ignored`);
    }
  }
  if (!iface) { x.error(e.key, "virtual_ipaddress", `no interface for ${m[1]}: the instance has no interface and the address no "dev"`, `${e.key.text} dev eth0`); return; }
  inst.addresses.push({ address: m[1], prefix, interface: iface, at: e.key });
}

export function readSyncGroup(x: KCtx, s: KStmt): SyncGroup | null {
  const nameW = x.arg(s, 0, "sync group name");
  if (!nameW || !s.block) { if (nameW) x.error(s.key, s.key.text, "expected a block: vrrp_sync_group NAME { group { INSTANCE … } }"); return null; }
  const g: SyncGroup = { name: nameW.text, at: s.key, members: [] };
  for (const t of s.block) {
    if (t.key.text === "group") {
      if (!t.block) { x.error(t.key, "group", "expected a block: group { INSTANCE … }"); continue; }
      for (const m of t.block) g.members.push(m.key, ...m.args);
    } else if (t.key.text.startsWith("notify") || t.key.text === "smtp_alert") {
      x.ignored(t, EVENTS);
    } else if (t.key.text.startsWith("track_") || t.key.text === "global_tracking" || t.key.text === "sync_group_tracking_weight") {
      x.ignored(t, FAULTS);
    } else {
      x.unknown(t, `vrrp_sync_group ${g.name}`);
    }
  }
  if (!g.members.length) x.error(s.key, s.key.text, `sync group ${g.name} has no instances`);
  return g;
}

/** Floating groups (one per sync group, one per instance outside any) and this node. */
export function vrrpToModel(x: KCtx, instances: VrrpInstance[], syncs: SyncGroup[], routerId: Word | null): { groups: FloatingGroup[]; nodes: LbNode[] } {
  const byName = new Map<string, VrrpInstance>();
  for (const i of instances) {
    if (byName.has(i.name)) x.error(i.at, "vrrp_instance", `instance ${i.name} is defined twice`);
    else byName.set(i.name, i);
  }
  const taken = new Set<string>();
  const inSync = new Map<string, string>();
  const groups: FloatingGroup[] = [];
  const addrSeen = new Map<string, string>();
  const build = (name: string, members: VrrpInstance[], at: Word) => {
    const addresses: FloatingAddress[] = [];
    for (const m of members) {
      for (const a of m.addresses) {
        const prev = addrSeen.get(a.address);
        if (prev) { x.error(a.at, "virtual_ipaddress", `${a.address} is already in ${prev}; an address can move with one group only`); continue; }
        addrSeen.set(a.address, m.name);
        addresses.push({ address: a.address, prefix: a.prefix, interface: a.interface });
      }
    }
    if (!addresses.length) { x.warn(at, "vrrp_instance", `${name} has no virtual_ipaddress: nothing moves with it, no floating group is made`); return; }
    const preempt = members.every((m) => m.preempt);
    if (!preempt && members.some((m) => m.preempt)) x.warn(at, "vrrp_sync_group", `members of ${name} disagree on nopreempt; lvsflow moves them as one group, without preempting`);
    // Through the schema, so lvsflow's defaults (GARP schedule, …) fill what keepalived has not.
    const g = FloatingGroup.safeParse({ name: lvsflowName(name, taken), addresses, preempt, preemptDelayMs: Math.max(...members.map((m) => m.preemptDelayMs)) });
    if (g.success) groups.push(g.data);
    else for (const i of g.error.issues) x.error(at, "vrrp_instance", `${i.path.join(".")}: ${i.message}`);
  };
  for (const sg of syncs) {
    const members: VrrpInstance[] = [];
    for (const w of sg.members) {
      const inst = byName.get(w.text);
      if (!inst) { x.error(w, "group", `no vrrp_instance named ${w.text}`); continue; }
      const other = inSync.get(w.text);
      if (other) { x.error(w, "group", `instance ${w.text} is already in sync group ${other}`); continue; }
      inSync.set(w.text, sg.name);
      members.push(inst);
    }
    if (members.length) build(sg.name, members, sg.at);
  }
  for (const i of instances) if (!inSync.has(i.name) && byName.get(i.name) === i) build(i.name, [i], i.at);

  if (!instances.length) return { groups, nodes: [] };
  // One priority per lvsflow node: keepalived's per-instance priorities (active-active) cannot be kept.
  const priority = Math.max(...instances.map((i) => i.priority));
  for (const i of instances) {
    if (i.priority !== priority) x.warn(i.prioritySet ?? i.at, "priority", `lvsflow has one priority per node, used for every group: ${priority} (the highest of this file's instances), not ${i.priority}`);
  }
  if (!routerId) x.warn(instances[0].at, "vrrp_instance", 'this node is named "keepalived": set router_id in global_defs (or declare nodes in a native file) so that `lvsflow run --node` matches it');
  const ifaces = [...new Set(groups.flatMap((g) => g.addresses.map((a) => a.interface)))];
  const name = lvsflowName(routerId?.text ?? "keepalived", new Set());
  return { groups, nodes: [{ name, priority, interfaces: Object.fromEntries(ifaces.map((i) => [i, i])) }] };
}
