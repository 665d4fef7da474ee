// Resolves what an operator typed ("198.51.100.50:80", "203.0.113.11") against the configuration:
// the virtual services and real servers a command applies to, or a clear error. Pure.
import { isIP } from "node:net";
import { realId, type Model, type VirtualService } from "../../shared/schemas/config.ts";

export interface Target { vs: string; real: string }

/** "tcp:198.51.100.50:80", "198.51.100.50:80" (tcp), "udp:[2001:db8::1]:53" or "fwm:7" → the virtual service. */
export function resolveVs(model: Model, text: string): VirtualService | string {
  const exact = model.virtualServices.find((v) => v.id === text);
  if (exact) return exact;
  const withProto = /^(tcp|udp|fwm):/.test(text) ? [text] : [`tcp:${text}`, `udp:${text}`];
  const found = model.virtualServices.filter((v) => withProto.includes(v.id));
  if (found.length === 1) return found[0]!;
  if (found.length > 1) return `${text} is both ${found.map((v) => v.id).join(" and ")}: write tcp:${text} or udp:${text}`;
  return `no virtual service ${text} (configured: ${model.virtualServices.map((v) => v.id).join(", ") || "none"})`;
}

/** Splits "203.0.113.11:80" / "[2001:db8::5]:80" / "203.0.113.11" into address and optional port. */
export function parseReal(text: string): { address: string; port: number | null } | string {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(text);
  const address = m ? m[1]! : text;
  if (!isIP(address)) return `${JSON.stringify(text)} is not a real server (write ADDRESS or ADDRESS:PORT)`;
  const port = m?.[2] !== undefined ? Number(m[2]) : null;
  if (port !== null && port > 65535) return `${JSON.stringify(text)}: port out of range`;
  return { address, port };
}

/**
 * The (virtual service, real) pairs a real-server argument names: within one virtual service when
 * `vs` is given, else in every virtual service that has it. An address without a port means every
 * port of that address.
 */
export function resolveReals(model: Model, realText: string, vs: VirtualService | null): Target[] | string {
  const r = parseReal(realText);
  if (typeof r === "string") return r;
  const out: Target[] = [];
  for (const v of vs ? [vs] : model.virtualServices) {
    for (const real of v.reals) {
      if (real.address === r.address && (r.port === null || real.port === r.port)) out.push({ vs: v.id, real: realId(real) });
    }
  }
  if (!out.length) return `real server ${realText} is not configured${vs ? ` in ${vs.id}` : " in any virtual service"}`;
  if (vs && out.length > 1) return `${realText} names ${out.length} reals of ${vs.id}: add the port`;
  return out;
}
