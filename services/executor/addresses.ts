// Floating addresses (VIPs and the reals' gateway) and gratuitous ARP.
import { spawn } from "node:child_process";
import { isIP } from "node:net";
import { FloatingAddress, InterfaceName } from "../../shared/schemas/config.ts";
import { runCmd, withNetns } from "./run.ts";

export interface HeldAddress { address: string; prefix: number; interface: string }

/** Throws unless address, prefix and interface are safe to put into an argv. */
export function validateAddress(a: FloatingAddress): FloatingAddress {
  const v = FloatingAddress.parse(a);
  const fam = isIP(v.address);
  if (fam === 0) throw new Error(`not an IP address: ${JSON.stringify(v.address)}`);
  if (v.prefix > (fam === 4 ? 32 : 128)) throw new Error(`prefix /${v.prefix} out of range for ${v.address}`);
  return v;
}

export async function readAddresses(netns?: string): Promise<HeldAddress[]> {
  const r = await runCmd(["ip", "-j", "addr", "show"], { netns });
  if (r.code !== 0) throw new Error(`ip addr show failed (${r.code}): ${r.stderr.trim()}`);
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; addr_info?: { family: string; local: string; prefixlen: number }[] }[];
  return links.flatMap((l) =>
    (l.addr_info ?? []).filter((a) => a.family === "inet" || a.family === "inet6").map((a) => ({ address: a.local, prefix: a.prefixlen, interface: l.ifname })),
  );
}

/**
 * held: add the desired addresses that are missing; not held: delete those present (whatever
 * their prefix). Returns the operations done. Throws on the first failure, after validating all.
 */
export async function ensureAddresses(desired: FloatingAddress[], held: boolean, netns?: string): Promise<string[]> {
  const want = desired.map(validateAddress);
  const have = await readAddresses(netns);
  const ops: string[] = [];
  for (const a of want) {
    const present = have.filter((h) => h.address === a.address && h.interface === a.interface);
    if (held && !present.some((h) => h.prefix === a.prefix)) {
      // nodad: a floating IPv6 address must be usable at once, not after duplicate detection.
      const argv = ["ip", "addr", "add", `${a.address}/${a.prefix}`, "dev", a.interface, ...(isIP(a.address) === 6 ? ["nodad"] : [])];
      await runOrThrow(argv, netns, /File exists/, ops);
    }
    if (!held) {
      for (const h of present) await runOrThrow(["ip", "addr", "del", `${h.address}/${h.prefix}`, "dev", h.interface], netns, /Cannot assign requested address/, ops);
    }
  }
  return ops;
}

/** `benign`: the state we wanted already exists (a race with another actor), not an error. */
async function runOrThrow(argv: string[], netns: string | undefined, benign: RegExp, ops: string[]): Promise<void> {
  const r = await runCmd(argv, { netns });
  if (r.code !== 0 && !benign.test(r.stderr)) {
    throw Object.assign(new Error(`${argv.join(" ")} failed (${r.code}): ${r.stderr.trim()}`), { ops });
  }
  ops.push(argv.join(" "));
}

/**
 * One gratuitous ARP (iputils arping -U). Not awaited: the packet leaves ~4 ms after start but
 * arping lingers ~1 s per count (and can hang), so `timeout` kills it after 2 s, even if this
 * process is gone by then. Returns the argv run.
 */
export function sendGarp(address: string, iface: string, netns?: string): string[] {
  if (isIP(address) !== 4) throw new Error(`gratuitous ARP needs an IPv4 address, got ${JSON.stringify(address)}`);
  InterfaceName.parse(iface);
  const argv = withNetns(["timeout", "-s", "KILL", "2", "arping", "-q", "-U", "-c", "1", "-I", iface, address], netns);
  const child = spawn(argv[0], argv.slice(1), { stdio: "ignore", shell: false, detached: true });
  child.on("error", () => {}); // a missing tool must not crash the executor; the GARP is best effort
  child.unref();
  return argv;
}

/** Calls fn at each offset (ms from now), e.g. keepalived's 5 GARPs now + 5 after 5 s. */
export function garpSchedule(offsetsMs: number[], fn: () => void): () => void {
  const bad = offsetsMs.find((ms) => !Number.isFinite(ms) || ms < 0);
  if (bad !== undefined) throw new Error(`invalid GARP offset ${bad}`);
  const timers = offsetsMs.map((ms) =>
    setTimeout(() => { try { fn(); } catch { /* one failed GARP must not stop the rest */ } }, ms),
  );
  return () => timers.forEach(clearTimeout);
}
