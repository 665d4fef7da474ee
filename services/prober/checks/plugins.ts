// In-process probe plugins: a module registers probe functions by name; a virtual service uses
// one with `check: { type: plugin, plugin: <name> }`. A probe gets the target, its timeout and an
// AbortSignal and returns up/down with a detail (and optionally its own latency). Whatever it
// does — throw, return garbage, never settle — the dispatcher turns it into a failed check.
import { pathToFileURL } from "node:url";
import { resolve as resolvePath } from "node:path";
import { z } from "zod";
import { CheckFailure, fail, pass, type ProbeContext, type ProtoResult } from "./types.ts";

export interface ProbeRequest {
  /** Virtual service id ("tcp:198.51.100.50:80") and real id ("203.0.113.11:80"). */
  vs: string;
  real: string;
  host: string;
  port: number;
  timeoutMs: number;
  signal: AbortSignal;
  /** The check's pluginOptions from the configuration. */
  options: Record<string, unknown>;
  request: string;
  receive: string;
  credentials: { login?: string; passwd?: string; database?: string; secret?: string };
}

export const ProbeReply = z.object({
  ok: z.boolean(),
  detail: z.string().max(4096).nullable().optional(),
  latencyMs: z.number().min(0).optional(),
});
export type ProbeReply = z.infer<typeof ProbeReply>;

export type ProbeFn = (req: ProbeRequest) => Promise<ProbeReply> | ProbeReply;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const registry = new Map<string, ProbeFn>();

export function registerProbe(name: string, fn: ProbeFn): void {
  if (!NAME.test(name)) throw new Error(`probe name ${JSON.stringify(name)}: use letters, digits, _ . - (max 63)`);
  if (typeof fn !== "function") throw new Error(`probe ${name}: not a function`);
  registry.set(name, fn);
}

export function unregisterProbe(name: string): void {
  registry.delete(name);
}

export function hasProbe(name: string): boolean {
  return registry.has(name);
}

export function probeNames(): string[] {
  return [...registry.keys()].sort();
}

/**
 * Imports a probe module (TypeScript through tsx, or JavaScript) and registers what it exports:
 * `export const probes = { name: fn, … }` or a default export of the same shape. Returns the names.
 */
export async function loadProbeModule(path: string): Promise<string[]> {
  const mod = (await import(pathToFileURL(resolvePath(path)).href)) as { probes?: unknown; default?: unknown };
  const table = (mod.probes ?? mod.default) as Record<string, unknown> | undefined;
  if (!table || typeof table !== "object") throw new Error(`${path}: exports no \`probes\` object ({ name: async (req) => ({ ok, detail }) })`);
  const names: string[] = [];
  for (const [name, fn] of Object.entries(table)) {
    if (typeof fn !== "function") throw new Error(`${path}: probes.${name} is not a function`);
    registerProbe(name, fn as ProbeFn);
    names.push(name);
  }
  return names;
}

/** Modules named in LVSFLOW_PROBE_MODULES (comma-separated paths). */
export function probeModulesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.LVSFLOW_PROBE_MODULES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

export async function pluginCheck(ctx: ProbeContext): Promise<ProtoResult & { latencyMs?: number }> {
  const name = ctx.check.plugin ?? "";
  const fn = registry.get(name);
  if (!fn) return fail(`no probe registered under ${JSON.stringify(name)} (load its module with LVSFLOW_PROBE_MODULES)`);
  const { login, passwd, database, secret } = ctx.check;
  const raw: unknown = await fn({
    vs: ctx.target.vs.id, real: `${ctx.target.real.address}:${ctx.target.real.port}`, host: ctx.host, port: ctx.port,
    timeoutMs: ctx.timeoutMs, signal: ctx.signal, options: ctx.check.pluginOptions ?? {}, request: ctx.request, receive: ctx.receive,
    credentials: { login, passwd, database, secret },
  });
  const r = ProbeReply.safeParse(raw);
  if (!r.success) throw new CheckFailure(`probe ${name} returned an invalid result (want { ok: boolean, detail?: string, latencyMs?: number })`);
  return r.data.ok ? { ...pass({ matched: r.data.detail ?? null }), latencyMs: r.data.latencyMs } : { ...fail(r.data.detail || `probe ${name} reported down`), latencyMs: r.data.latencyMs };
}
