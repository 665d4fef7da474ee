// PURE: ipvsadm argument vectors and `ipvsadm-save -n` lines for services and destinations.
// Every value has been validated (desired.ts) or parsed from the kernel; nothing here goes
// through a shell.
import { destKey, flagsToString, fullMask, serviceTarget, type IpvsDest, type IpvsService, type IpvsTable } from "./table.ts";

const FWD: Record<IpvsDest["forwarding"], string> = { masq: "-m", gate: "-g", ipip: "-i" };

/** Scheduler, persistence, one-packet and flags, in the order ipvsadm-save prints them. */
export function serviceOptions(s: IpvsService): string[] {
  const o = ["-s", s.scheduler];
  if (s.persistence) {
    o.push("-p", String(s.persistence.timeout));
    if (s.persistence.netmask !== fullMask(s.family)) o.push("-M", s.persistence.netmask);
  }
  if (s.onePacket) o.push("-o");
  if (s.flags) o.push("-b", flagsToString(s.scheduler, s.flags));
  return o;
}

const destTarget = (s: IpvsService, d: IpvsDest) => [...serviceTarget(s), "-r", destKey(d)];

/** -A/-E rewrite the whole service: options left out (persistence, -o, -b) are cleared. */
export const addService = (s: IpvsService) => ["ipvsadm", "-A", ...serviceTarget(s), ...serviceOptions(s)];
export const editService = (s: IpvsService) => ["ipvsadm", "-E", ...serviceTarget(s), ...serviceOptions(s)];
export const deleteService = (s: IpvsService) => ["ipvsadm", "-D", ...serviceTarget(s)];

function destOptions(d: IpvsDest): string[] {
  const o = [FWD[d.forwarding], "-w", String(d.weight)];
  if (d.upper) o.push("-x", String(d.upper));
  if (d.lower) o.push("-y", String(d.lower));
  return o;
}
export const addDest = (s: IpvsService, d: IpvsDest) => ["ipvsadm", "-a", ...destTarget(s, d), ...destOptions(d)];
/** -e sets weight, forwarding and both thresholds (a threshold left out becomes 0). */
export const editDest = (s: IpvsService, d: IpvsDest) => ["ipvsadm", "-e", ...destTarget(s, d), ...destOptions(d), ...(d.upper ? [] : ["-x", "0"]), ...(d.lower ? [] : ["-y", "0"])];
export const deleteDest = (s: IpvsService, d: Pick<IpvsDest, "address" | "port">) => ["ipvsadm", "-d", ...serviceTarget(s), "-r", destKey(d)];

// libipvs' ordering (ipvs_cmp_services / ipvs_cmp_dests): fwmark, family, protocol, address,
// port; destinations by address, then port. Reproducing it makes our save text byte-identical.
const PROTO_NUM: Record<string, number> = { tcp: 6, udp: 17, fwm: 0 };
function addrWords(a: string | null): number[] {
  if (!a) return [0];
  if (!a.includes(":")) return [a.split(".").reduce((x, o) => x * 256 + Number(o), 0)];
  const [head, tail = ""] = a.split("::");
  const h = head ? head.split(":") : [], t = tail ? tail.split(":") : [];
  const groups = a.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return [0, 2, 4, 6].map((i) => parseInt(groups[i], 16) * 65536 + parseInt(groups[i + 1], 16));
}
const cmpWords = (x: number[], y: number[]) => { for (let i = 0; i < Math.max(x.length, y.length); i++) { const d = (x[i] ?? 0) - (y[i] ?? 0); if (d) return d; } return 0; };
export function compareServices(a: IpvsService, b: IpvsService): number {
  return (a.fwmark ?? 0) - (b.fwmark ?? 0) || (a.family === b.family ? 0 : a.family === "ipv4" ? -1 : 1)
    || PROTO_NUM[a.protocol] - PROTO_NUM[b.protocol] || cmpWords(addrWords(a.address), addrWords(b.address)) || a.port - b.port;
}
export const compareDests = (a: IpvsDest, b: IpvsDest) => cmpWords(addrWords(a.address), addrWords(b.address)) || a.port - b.port;

/** The table as `ipvsadm-save -n` prints it (thresholds are not part of that format). */
export function renderSave(t: IpvsTable): string {
  const lines: string[] = [];
  for (const s of [...t.services].sort(compareServices)) {
    lines.push(["-A", ...serviceTarget(s), ...serviceOptions(s)].join(" "));
    for (const d of [...s.dests].sort(compareDests)) {
      lines.push(["-a", ...serviceTarget(s), "-r", destKey(d), FWD[d.forwarding], "-w", String(d.weight), ...(d.forwarding === "ipip" ? ["--tun-type", "ipip"] : [])].join(" "));
    }
  }
  return lines.map((l) => l + "\n").join("");
}

/** Input for `ipvsadm-restore` (= ipvsadm -C, then -R): the save format plus thresholds. */
export function renderRestore(t: IpvsTable): string {
  const lines: string[] = [];
  for (const s of [...t.services].sort(compareServices)) {
    lines.push(addService(s).slice(1).join(" "));
    for (const d of [...s.dests].sort(compareDests)) lines.push(addDest(s, d).slice(1).join(" "));
  }
  return lines.map((l) => l + "\n").join("");
}
