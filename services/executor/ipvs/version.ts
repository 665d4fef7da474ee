// PURE: the seed's warning, enforced — "ipvsadm must match the running kernel's IPVS, or its
// behaviour is unpredictable". Compares `ipvsadm --version` with /proc/net/ip_vs and refuses the
// combinations known not to work; features a configuration needs are looked up in `ipvsadm -h`.
import type { IpvsTable } from "./table.ts";

export interface IpvsVersions { ipvsadm: string; builtFor: string; kernel: string }

/** "IP Virtual Server version 1.2.1 (size=4096)" → "1.2.1". */
export function parseKernelIpvs(procNetIpVs: string): string | null {
  return /IP Virtual Server version (\d+\.\d+\.\d+)/.exec(procNetIpVs)?.[1] ?? null;
}

/** "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)" → { ipvsadm: "1.31", builtFor: "1.2.1" }. */
export function parseIpvsadmVersion(text: string): { ipvsadm: string; builtFor: string } | null {
  const m = /ipvsadm v(\d+\.\d+)\S*.*IPVS v(\d+\.\d+\.\d+)/.exec(text);
  return m ? { ipvsadm: m[1], builtFor: m[2] } : null;
}

const majorMinor = (v: string) => v.split(".").slice(0, 2).join(".");
const num = (v: string) => v.split(".").map(Number);
const older = (a: string, b: string) => { const x = num(a), y = num(b); for (let i = 0; i < Math.max(x.length, y.length); i++) { if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0); } return false; };

export type VersionVerdict = { ok: true; versions: IpvsVersions } | { ok: false; error: string };

/**
 * procNetIpVs: the content of /proc/net/ip_vs, or null when it does not exist.
 * ipvsadmVersion: output of `ipvsadm --version` (stdout+stderr), or null when it could not run.
 */
export function checkVersions(procNetIpVs: string | null, ipvsadmVersion: string | null): VersionVerdict {
  if (procNetIpVs === null) {
    return { ok: false, error: "this kernel has no IPVS: /proc/net/ip_vs does not exist (load it with `modprobe ip_vs`, or use a kernel built with CONFIG_IP_VS); the nftables driver works without it" };
  }
  const kernel = parseKernelIpvs(procNetIpVs);
  if (!kernel) return { ok: false, error: `cannot read the kernel's IPVS version from /proc/net/ip_vs: ${JSON.stringify(procNetIpVs.slice(0, 80))}` };
  if (ipvsadmVersion === null) return { ok: false, error: "ipvsadm is not installed (apt-get install ipvsadm)" };
  const v = parseIpvsadmVersion(ipvsadmVersion);
  if (!v) return { ok: false, error: `ipvsadm did not report its version: ${JSON.stringify(ipvsadmVersion.trim().slice(0, 200))}` };
  // IPVS 1.0.x (Linux 2.4) and 1.2.x (2.6 and later) speak different sockopt ABIs: an ipvsadm built
  // for one garbles the other's table.
  if (majorMinor(v.builtFor) !== majorMinor(kernel)) {
    return { ok: false, error: `ipvsadm ${v.ipvsadm} was built for IPVS ${v.builtFor} but the kernel runs IPVS ${kernel}: they do not work together (the seed's warning); install the ipvsadm your distribution ships for this kernel` };
  }
  // Before 1.24 ipvsadm only knew the 2.4 kernels' IPVS.
  if (older(v.ipvsadm, "1.24")) {
    return { ok: false, error: `ipvsadm ${v.ipvsadm} is too old for IPVS ${kernel} (1.24 or later is needed)` };
  }
  return { ok: true, versions: { ipvsadm: v.ipvsadm, builtFor: v.builtFor, kernel } };
}

/** Features the desired table uses that this ipvsadm does not offer (from `ipvsadm -h`). */
export function missingFeatures(t: IpvsTable, help: string): string[] {
  const out: string[] = [];
  const has = (opt: string) => help.includes(opt);
  const uses = (f: (s: IpvsTable["services"][number]) => boolean) => t.services.filter(f).length > 0;
  if (uses((s) => s.flags !== 0) && !has("--sched-flags")) out.push("scheduler flags (-b) need a newer ipvsadm");
  if (uses((s) => s.onePacket) && !has("--ops")) out.push("one-packet scheduling (-o) needs a newer ipvsadm");
  if (uses((s) => s.family === "ipv6") && !has("--ipv6")) out.push("IPv6 virtual services need a newer ipvsadm");
  const scheds = /one of ([a-z|]+)/.exec(help)?.[1]?.split("|");
  if (scheds) for (const s of new Set(t.services.map((x) => x.scheduler))) if (!scheds.includes(s)) out.push(`scheduler ${s} is not known to this ipvsadm (it knows ${scheds.join(", ")})`);
  return out;
}
