// PURE: the ipvsadm operations that turn the current kernel table into the desired one, in a
// safe order — nothing is cleared and refilled while it carries traffic:
//   1. add / edit virtual services      2. add destinations, raise or change them
//   3. quiesce (weight 0): desired quiescent reals, reals an operator drains (kept until the
//      decision drops them), and reals about to be deleted
//   4. delete destinations (a fallback goes at once: never quiesced, as ldirectord does)
//   5. delete virtual services
// So a real that comes up is in before the fallback leaves, and the fallback is in before the
// last real leaves. A full load through ipvsadm-restore (= ipvsadm -C, then -R) is used only when
// the table is empty or holds none of our services.
import { addDest, addService, deleteDest, deleteService, editDest, editService, renderRestore } from "./argv.ts";
import { destKey, flagsToString, serviceKey, type IpvsDest, type IpvsService, type IpvsTable } from "./table.ts";

export type IpvsOpKind = "restore" | "add-service" | "edit-service" | "add-dest" | "edit-dest" | "quiesce-dest" | "delete-dest" | "delete-service";

export interface IpvsOp {
  kind: IpvsOpKind;
  service: string;
  dest: string | null;
  argv: string[];
  /** Standard input (ipvsadm-restore only). */
  input?: string;
  /** Index of an earlier op that must have succeeded (a destination needs its new service). */
  after?: number;
}

export interface IpvsPlan { mode: "none" | "incremental" | "restore"; ops: IpvsOp[]; reasons: string[] }

export interface PlanOptions {
  /** "<service key> <dest key>" of configured fallback servers (deleted without quiescing). */
  fallbacks?: ReadonlySet<string>;
  /** Allow a full load with ipvsadm-restore when the table is empty or foreign (default true). */
  restore?: boolean;
  /** "<service key> <dest key>" of reals an operator drains (drain.ts): named as such in the reasons. */
  draining?: ReadonlySet<string>;
}

const persistText = (p: IpvsService["persistence"]) => (p ? `persistent ${p.timeout}s mask ${p.netmask}` : "not persistent");

/** Differences of the service itself (not its destinations), for -E and for reports. */
export function serviceDiff(want: IpvsService, have: IpvsService): string[] {
  const d: string[] = [];
  if (want.scheduler !== have.scheduler) d.push(`scheduler ${have.scheduler}, want ${want.scheduler}`);
  if (persistText(want.persistence) !== persistText(have.persistence)) d.push(`${persistText(have.persistence)}, want ${persistText(want.persistence)}`);
  if (want.onePacket !== have.onePacket) d.push(`one-packet ${have.onePacket ? "on" : "off"}, want ${want.onePacket ? "on" : "off"}`);
  if (want.flags !== have.flags) d.push(`flags "${flagsToString(have.scheduler, have.flags)}", want "${flagsToString(want.scheduler, want.flags)}"`);
  return d;
}

export function destDiff(want: IpvsDest, have: IpvsDest): string[] {
  const d: string[] = [];
  if (want.forwarding !== have.forwarding) d.push(`forwarding ${have.forwarding}, want ${want.forwarding}`);
  if (want.weight !== have.weight) d.push(`weight ${have.weight}, want ${want.weight}`);
  if (want.upper !== have.upper || want.lower !== have.lower) d.push(`thresholds ${have.lower}-${have.upper}, want ${want.lower}-${want.upper}`);
  return d;
}

export function planIpvs(desired: IpvsTable, current: IpvsTable, opts: PlanOptions = {}): IpvsPlan {
  const cur = new Map(current.services.map((s) => [serviceKey(s), s]));
  const want = new Map(desired.services.map((s) => [serviceKey(s), s]));
  const reasons: string[] = [];

  if ((opts.restore ?? true) && want.size > 0 && ![...want.keys()].some((k) => cur.has(k))) {
    reasons.push(cur.size === 0 ? "the IPVS table is empty: full load" : `the IPVS table holds only services lvsflow does not manage (${[...cur.keys()].join(", ")}): replaced by a full load`);
    return { mode: "restore", ops: [{ kind: "restore", service: "*", dest: null, argv: ["ipvsadm-restore"], input: renderRestore(desired) }], reasons };
  }

  const phases: IpvsOp[][] = [[], [], [], [], []];
  const added = new Map<string, IpvsOp>();
  for (const [k, s] of want) {
    const have = cur.get(k);
    if (!have) {
      reasons.push(`service ${k} missing`);
      const op: IpvsOp = { kind: "add-service", service: k, dest: null, argv: addService(s) };
      phases[0].push(op);
      added.set(k, op);
      for (const d of s.dests) phases[1].push({ kind: "add-dest", service: k, dest: destKey(d), argv: addDest(s, d) });
      continue;
    }
    const sd = serviceDiff(s, have);
    if (sd.length) { reasons.push(`service ${k}: ${sd.join(", ")}`); phases[0].push({ kind: "edit-service", service: k, dest: null, argv: editService(s) }); }
    const haveDests = new Map(have.dests.map((d) => [destKey(d), d]));
    const wantDests = new Set(s.dests.map(destKey));
    for (const d of s.dests) {
      const dk = destKey(d);
      const h = haveDests.get(dk);
      if (!h) { reasons.push(`real ${dk} of ${k} missing`); phases[1].push({ kind: "add-dest", service: k, dest: dk, argv: addDest(s, d) }); continue; }
      const dd = destDiff(d, h);
      if (!dd.length) continue;
      const drain = opts.draining?.has(`${k} ${dk}`) ? " (operator drain: no new connections, established ones stay)" : "";
      reasons.push(`real ${dk} of ${k}: ${dd.join(", ")}${drain}`);
      const quiesce = d.weight === 0 && h.weight > 0;
      phases[quiesce ? 2 : 1].push({ kind: quiesce ? "quiesce-dest" : "edit-dest", service: k, dest: dk, argv: editDest(s, d) });
    }
    for (const h of have.dests) {
      const dk = destKey(h);
      if (wantDests.has(dk)) continue;
      const fallback = opts.fallbacks?.has(`${k} ${dk}`) ?? false;
      reasons.push(`${fallback ? "fallback" : "real"} ${dk} of ${k} not desired`);
      // Drain first: no new connection is scheduled to it while the rest of the plan runs.
      if (!fallback && h.weight > 0) phases[2].push({ kind: "quiesce-dest", service: k, dest: dk, argv: editDest(s, { ...h, weight: 0 }) });
      phases[3].push({ kind: "delete-dest", service: k, dest: dk, argv: deleteDest(s, h) });
    }
  }
  for (const [k, s] of cur) {
    if (want.has(k)) continue;
    reasons.push(`service ${k} not desired`);
    phases[4].push({ kind: "delete-service", service: k, dest: null, argv: deleteService(s) });
  }
  const ops = phases.flat();
  for (const op of ops) {
    const parent = op.kind === "add-dest" ? added.get(op.service) : undefined;
    if (parent) op.after = ops.indexOf(parent);
  }
  return { mode: ops.length ? "incremental" : "none", ops, reasons };
}
