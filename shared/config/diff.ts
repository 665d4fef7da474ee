// The difference between two models: what a reload must apply, what `lvsflow config diff`
// shows. Pure. Where a virtual service is defined (its `source`) is not part of the difference:
// moving a block in the file changes nothing.
import { realId, type Model, type VirtualService } from "../schemas/config.ts";

export interface VsChange {
  id: string;
  /** Changed fields of the virtual service itself, e.g. ["scheduler", "check.timeout"]. */
  fields: { field: string; from: unknown; to: unknown }[];
  realsAdded: string[];
  realsRemoved: string[];
  /** Reals whose weight, forwarding, thresholds or request/receive changed. */
  realsChanged: { real: string; fields: string[] }[];
}

export interface ModelDiff {
  site: { from: string; to: string } | null;
  virtualServices: { added: string[]; removed: string[]; changed: VsChange[]; unchanged: number };
  groups: { added: string[]; removed: string[]; changed: string[] };
  nodes: { added: string[]; removed: string[]; changed: string[] };
  /** Changed keys of timers and global. */
  settings: string[];
}

const eq = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Field-by-field changes between two plain objects (one level deep into `check`, `persistence`, `fallback`). */
function fieldChanges(a: Record<string, unknown>, b: Record<string, unknown>, prefix = ""): VsChange["fields"] {
  const out: VsChange["fields"] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (eq(a[k], b[k])) continue;
    const x = a[k], y = b[k];
    if (k === "check" && x && y && typeof x === "object" && typeof y === "object") out.push(...fieldChanges(x as Record<string, unknown>, y as Record<string, unknown>, "check."));
    else out.push({ field: prefix + k, from: x ?? null, to: y ?? null });
  }
  return out;
}

function vsChange(a: VirtualService, b: VirtualService): VsChange | null {
  const strip = ({ reals: _r, source: _s, ...rest }: VirtualService) => rest;
  const fields = fieldChanges(strip(a), strip(b));
  const ra = new Map(a.reals.map((r) => [realId(r), r]));
  const rb = new Map(b.reals.map((r) => [realId(r), r]));
  const realsAdded = [...rb.keys()].filter((k) => !ra.has(k));
  const realsRemoved = [...ra.keys()].filter((k) => !rb.has(k));
  const realsChanged: VsChange["realsChanged"] = [];
  for (const [k, r] of ra) {
    const s = rb.get(k);
    if (!s || eq(r, s)) continue;
    realsChanged.push({ real: k, fields: Object.keys(r).filter((f) => !eq(r[f as keyof typeof r], s[f as keyof typeof s])) });
  }
  if (!fields.length && !realsAdded.length && !realsRemoved.length && !realsChanged.length) return null;
  return { id: a.id, fields, realsAdded, realsRemoved, realsChanged };
}

function byName<T>(a: T[], b: T[], key: (x: T) => string) {
  const ma = new Map(a.map((x) => [key(x), x]));
  const mb = new Map(b.map((x) => [key(x), x]));
  return {
    added: [...mb.keys()].filter((k) => !ma.has(k)),
    removed: [...ma.keys()].filter((k) => !mb.has(k)),
    changed: [...ma.keys()].filter((k) => mb.has(k) && !eq(ma.get(k), mb.get(k))),
  };
}

export function diffModels(a: Model, b: Model): ModelDiff {
  const va = new Map(a.virtualServices.map((v) => [v.id, v]));
  const vb = new Map(b.virtualServices.map((v) => [v.id, v]));
  const changed: VsChange[] = [];
  let unchanged = 0;
  for (const [id, v] of va) {
    const w = vb.get(id);
    if (!w) continue;
    const c = vsChange(v, w);
    if (c) changed.push(c); else unchanged++;
  }
  const settings = [
    ...Object.keys({ ...a.timers, ...b.timers }).filter((k) => !eq((a.timers as Record<string, unknown>)[k], (b.timers as Record<string, unknown>)[k])).map((k) => `timers.${k}`),
    ...Object.keys({ ...a.global, ...b.global }).filter((k) => !eq((a.global as Record<string, unknown>)[k], (b.global as Record<string, unknown>)[k])).map((k) => `global.${k}`),
  ];
  return {
    site: a.site === b.site ? null : { from: a.site, to: b.site },
    virtualServices: { added: [...vb.keys()].filter((k) => !va.has(k)), removed: [...va.keys()].filter((k) => !vb.has(k)), changed, unchanged },
    groups: byName(a.groups, b.groups, (g) => g.name),
    nodes: byName(a.nodes, b.nodes, (n) => n.name),
    settings,
  };
}

export function isEmptyDiff(d: ModelDiff): boolean {
  return !d.site && !d.settings.length
    && !d.virtualServices.added.length && !d.virtualServices.removed.length && !d.virtualServices.changed.length
    && !d.groups.added.length && !d.groups.removed.length && !d.groups.changed.length
    && !d.nodes.added.length && !d.nodes.removed.length && !d.nodes.changed.length;
}

const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/** One line per change: `+` added, `-` removed, `~` changed. Secrets are never shown. */
export function describeDiff(d: ModelDiff): string[] {
  const out: string[] = [];
  if (d.site) out.push(`~ site ${d.site.from} -> ${d.site.to}`);
  for (const id of d.virtualServices.added) out.push(`+ virtual service ${id}`);
  for (const id of d.virtualServices.removed) out.push(`- virtual service ${id}`);
  for (const c of d.virtualServices.changed) {
    for (const f of c.fields) {
      const secret = /^check\.(passwd|secret|login|database)$/.test(f.field);
      out.push(`~ ${c.id}: ${f.field} ${secret ? "changed" : `${show(f.from)} -> ${show(f.to)}`}`);
    }
    for (const r of c.realsAdded) out.push(`+ ${c.id}: real ${r}`);
    for (const r of c.realsRemoved) out.push(`- ${c.id}: real ${r}`);
    for (const r of c.realsChanged) out.push(`~ ${c.id}: real ${r.real} (${r.fields.join(", ")})`);
  }
  for (const g of d.groups.added) out.push(`+ group ${g}`);
  for (const g of d.groups.removed) out.push(`- group ${g}`);
  for (const g of d.groups.changed) out.push(`~ group ${g}`);
  for (const n of d.nodes.added) out.push(`+ node ${n}`);
  for (const n of d.nodes.removed) out.push(`- node ${n}`);
  for (const n of d.nodes.changed) out.push(`~ node ${n}`);
  for (const s of d.settings) out.push(`~ ${s}`);
  return out;
}

/** A short summary for events and logs. */
export function summarizeDiff(d: ModelDiff) {
  return {
    virtualServicesAdded: d.virtualServices.added,
    virtualServicesRemoved: d.virtualServices.removed,
    virtualServicesChanged: d.virtualServices.changed.map((c) => c.id),
    virtualServicesUnchanged: d.virtualServices.unchanged,
    realsAdded: d.virtualServices.changed.flatMap((c) => c.realsAdded.map((r) => `${c.id} ${r}`)),
    realsRemoved: d.virtualServices.changed.flatMap((c) => c.realsRemoved.map((r) => `${c.id} ${r}`)),
    groupsAdded: d.groups.added,
    groupsRemoved: d.groups.removed,
    groupsChanged: d.groups.changed,
    settings: [...d.settings, ...d.nodes.added.map((n) => `+node ${n}`), ...d.nodes.removed.map((n) => `-node ${n}`), ...d.nodes.changed.map((n) => `~node ${n}`)],
  };
}
