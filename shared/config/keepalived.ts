// keepalived.conf → the normalized model: virtual services (keepalived-lvs.ts), floating groups
// and this LB node (keepalived-vrrp.ts). What lvsflow has no equivalent for is reported as a
// warning on its own line; what cannot be imported faithfully (SCTP, UDP_CHECK, include, …) is an
// error. Bad input never throws.
import type { FloatingGroup, LbNode, VirtualService } from "../schemas/config.ts";
import { Collector, scrubDiagnostics, secretsIn, sortDiagnostics, type Diagnostic } from "./diagnostics.ts";
import { parseKeepalivedTree, type KStmt, type Word } from "./keepalived-grammar.ts";
import { KCtx } from "./keepalived-values.ts";
import { readInstance, readSyncGroup, vrrpToModel, type SyncGroup, type VrrpInstance } from "./keepalived-vrrp.ts";
import { checkerWordOf, readVirtualServer, readVsGroup, type VsGroup } from "./keepalived-lvs.ts";

export interface KeepalivedResult {
  virtualServices: VirtualService[];
  groups: FloatingGroup[];
  nodes: LbNode[];
  diagnostics: Diagnostic[];
}
export interface KeepalivedOptions {
  strict?: boolean;
  /** Why the probers cannot run a virtual service's check, or null; reported as an error at its checker. */
  supports?: (vs: VirtualService) => string | null;
}

const MAIL = "lvsflow publishes events (audited in Redis) instead of sending mail";
const SCRIPTS = "lvsflow runs no notify or track scripts";
const GLOBAL_IGNORED: Record<string, string> = {
  notification_email: MAIL, notification_email_from: MAIL, smtp_server: MAIL, smtp_connect_timeout: MAIL, smtp_helo_name: MAIL, smtp_alert: MAIL,
  smtp_alert_vrrp: MAIL, smtp_alert_checker: MAIL, enable_script_security: SCRIPTS, script_user: SCRIPTS, notify_fifo: SCRIPTS, notify_fifo_script: SCRIPTS,
  vrrp_notify_fifo: SCRIPTS, vrrp_notify_fifo_script: SCRIPTS, lvs_notify_fifo: SCRIPTS, lvs_notify_fifo_script: SCRIPTS,
  lvs_sync_daemon: "lvsflow does not run the IPVS connection sync daemon", lvs_timeouts: "lvsflow keeps the kernel's connection timeouts",
  lvs_flush: "lvsflow reconciles its own kernel objects; it never flushes the whole table", lvs_flush_on_stop: "lvsflow leaves the kernel as it is when it stops (fail static)",
  vrrp_strict: "lvsflow does not speak VRRP", vrrp_version: "lvsflow does not speak VRRP", vrrp_mcast_group4: "lvsflow does not speak VRRP", vrrp_mcast_group6: "lvsflow does not speak VRRP",
  vrrp_skip_check_adv_addr: "lvsflow does not speak VRRP", vrrp_garp_master_delay: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  vrrp_garp_master_repeat: "the gratuitous ARP schedule is groups[].garpScheduleMs", vrrp_garp_master_refresh: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  vrrp_garp_interval: "the gratuitous ARP schedule is groups[].garpScheduleMs", vrrp_gna_interval: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  vrrp_min_garp: "the gratuitous ARP schedule is groups[].garpScheduleMs", vrrp_priority: "", checker_priority: "", vrrp_no_swap: "", checker_no_swap: "",
  max_auto_priority: "", dynamic_interfaces: "", linkbeat_use_polling: "", vrrp_startup_delay: "", vrrp_iptables: "lvsflow does not change firewall rules",
  vrrp_ipsets: "lvsflow does not change firewall rules", nftables: "lvsflow manages its own nftables table", nftables_priority: "", nftables_counters: "",
};
const TOP_IGNORED: Record<string, string> = {
  vrrp_script: "an lvsflow node steps down on its own faults (an interface of the group down, kernel changes failing); scripts are not run",
  vrrp_track_file: "an lvsflow node steps down on its own faults", vrrp_track_process: "an lvsflow node steps down on its own faults",
  track_file: "an lvsflow node steps down on its own faults", track_process: "an lvsflow node steps down on its own faults",
  static_ipaddress: "lvsflow does not manage static addresses", static_routes: "lvsflow does not manage routes", static_rules: "lvsflow does not manage routing rules",
  virtual_routes: "lvsflow does not manage routes", virtual_rules: "lvsflow does not manage routing rules", garp_group: "the gratuitous ARP schedule is groups[].garpScheduleMs",
  bfd_instance: "lvsflow nodes detect each other by heartbeats on the bus", SSL: "SSL_GET checks do not use client certificates",
  linkbeat_use_polling: "", net_namespace: "run lvsflow inside the namespace instead", instance: "", use_pid_dir: "", child_wait_time: "",
};

export function parseKeepalived(text: string, file: string, opts: KeepalivedOptions = {}): KeepalivedResult {
  const c = new Collector(file, opts.strict ?? false);
  const x = new KCtx(c);
  const tree = parseKeepalivedTree(text, c);
  const instances: VrrpInstance[] = [];
  const syncs: SyncGroup[] = [];
  const vsGroups = new Map<string, VsGroup>();
  const vss: VirtualService[] = [];
  const vsAt = new Map<string, { line: number; checker: Word | null }>();
  let routerId: Word | null = null;

  for (const s of tree) {
    const k = s.key.text;
    if (/^[$@~]/.test(k)) {
      x.error(s.key, null, "keepalived's parameter substitution and conditional configuration are not supported", "expand the file first (keepalived -t prints problems; write the values out)");
      continue;
    }
    switch (k) {
      case "global_defs":
        for (const g of s.block ?? []) {
          if (g.key.text === "router_id") routerId = x.arg(g, 0, "router id") ?? routerId;
          else if (g.key.text in GLOBAL_IGNORED) x.ignored(g, GLOBAL_IGNORED[g.key.text] || undefined);
          else x.ignored(g);
        }
        break;
      case "vrrp_instance": { const i = readInstance(x, s); if (i) instances.push(i); break; }
      case "vrrp_sync_group": { const g = readSyncGroup(x, s); if (g) syncs.push(g); break; }
      case "virtual_server_group": {
        const g = readVsGroup(x, s);
        if (g && vsGroups.has(g.name)) x.error(s.key, k, `virtual_server_group ${g.name} is defined twice`);
        else if (g) vsGroups.set(g.name, g);
        break;
      }
      case "virtual_server":
        for (const vs of readVirtualServer(x, s, vsGroups, file)) {
          const first = vsAt.get(vs.id);
          if (first) { x.error(s.key, k, `duplicate virtual service ${vs.id} (first defined at line ${first.line})`); continue; }
          vsAt.set(vs.id, { line: s.key.line, checker: checkerWordOf(s) });
          vss.push(vs);
        }
        break;
      case "include":
        x.error(s.key, k, "include is not supported", "give lvsflow each file (or concatenate them)");
        break;
      default:
        if (k in TOP_IGNORED) x.ignored(s, TOP_IGNORED[k] || undefined);
        else x.unknown(s, "the top level");
    }
  }
  if (opts.supports) {
    for (const vs of vss) {
      const why = opts.supports(vs);
      const at = vsAt.get(vs.id)!;
      if (why) c.error(at.checker?.line ?? at.line, at.checker?.col ?? 1, at.checker?.text ?? "virtual_server", `${vs.id}: ${why}`);
    }
  }
  const { groups, nodes } = vrrpToModel(x, instances, syncs, routerId);
  return { virtualServices: vss, groups, nodes, diagnostics: scrubDiagnostics(sortDiagnostics(c.diagnostics), secretsIn(text)) };
}

/** A keepalived.conf, told from an ldirectord.cf or a YAML file by its keywords. */
export function looksLikeKeepalived(text: string): boolean {
  return /^\s*(virtual_server|virtual_server_group|vrrp_instance|vrrp_sync_group|global_defs|vrrp_script)\s+[^=\n]*\{?/m.test(text) && !/^\s*virtual6?\s*=/m.test(text);
}

export type { KStmt };
