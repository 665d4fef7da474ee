// PURE: the kernel table from `ipvsadm-save -n` (services, destinations, forwarding, weights)
// and `ipvsadm -Ln --thresholds` (the connection thresholds, which the save format omits).
import { canonicalAddress, destKey, flagBit, fullMask, serviceKey, type IpvsDest, type IpvsService, type IpvsTable } from "./table.ts";

export class IpvsParseError extends Error {
  constructor(readonly line: number, readonly text: string, why: string) {
    super(`cannot parse ipvsadm output line ${line} (${why}): ${text}`);
    this.name = "IpvsParseError";
  }
}

/** "192.0.2.50:80" or "[2001:db8::1]:443" → address, port. */
function splitHostPort(s: string): { address: string; port: number } | null {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)$/.exec(s);
  return m ? { address: canonicalAddress(m[1]), port: Number(m[2]) } : null;
}

interface Target { protocol: IpvsService["protocol"]; family: IpvsService["family"]; address: string | null; port: number; fwmark: number | null }

/** Reads "-t ADDR:PORT" / "-u ADDR:PORT" / "-f MARK [-6]" at tok[i]; returns the target and the next index. */
function readTarget(tok: string[], i: number): { t: Target; next: number } | null {
  const opt = tok[i], val = tok[i + 1];
  if (opt === "-f" && /^\d+$/.test(val ?? "")) {
    const six = tok[i + 2] === "-6";
    return { t: { protocol: "fwm", family: six ? "ipv6" : "ipv4", address: null, port: 0, fwmark: Number(val) }, next: i + (six ? 3 : 2) };
  }
  if ((opt === "-t" || opt === "-u") && val) {
    const hp = splitHostPort(val);
    if (!hp) return null;
    return { t: { protocol: opt === "-t" ? "tcp" : "udp", family: hp.address.includes(":") ? "ipv6" : "ipv4", ...hp, fwmark: null }, next: i + 2 };
  }
  return null;
}

const TUNNEL_OPTS = new Set(["--tun-type", "--tun-port"]);
const TUNNEL_SWITCHES = new Set(["--tun-nocsum", "--tun-csum", "--tun-remcsum"]);

export function parseSave(text: string): IpvsTable {
  const services: IpvsService[] = [];
  const byKey = new Map<string, IpvsService>();
  text.split("\n").forEach((raw, idx) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const bad = (why: string) => new IpvsParseError(idx + 1, line, why);
    const tok = line.split(/\s+/);
    const tg = readTarget(tok, 1);
    if (!tg) throw bad("no virtual service");
    const key = serviceKey(tg.t);
    let i = tg.next;
    if (tok[0] === "-A") {
      const s: IpvsService = { ...tg.t, scheduler: "wlc", flags: 0, persistence: null, onePacket: false, dests: [] };
      for (; i < tok.length; i++) {
        const o = tok[i];
        if (o === "-s") s.scheduler = tok[++i];
        else if (o === "-p") s.persistence = { timeout: Number(tok[++i]), netmask: fullMask(s.family) };
        else if (o === "-M" && s.persistence) s.persistence.netmask = tok[++i];
        else if (o === "-o") s.onePacket = true;
        else if (o === "-b") {
          for (const f of (tok[++i] ?? "").split(",")) {
            const b = flagBit(f);
            if (b === undefined) throw bad(`unknown scheduler flag ${f}`);
            s.flags |= b;
          }
        } else throw bad(`unknown service option ${o}`);
      }
      if (!s.scheduler || (s.persistence && !Number.isFinite(s.persistence.timeout))) throw bad("incomplete service");
      services.push(s);
      byKey.set(key, s);
    } else if (tok[0] === "-a") {
      const s = byKey.get(key);
      if (!s) throw bad("destination before its service");
      if (tok[i] !== "-r") throw bad("no -r");
      const hp = splitHostPort(tok[i + 1] ?? "");
      if (!hp) throw bad("bad destination address");
      const d: IpvsDest = { ...hp, forwarding: "gate", weight: 1, upper: 0, lower: 0 };
      for (i += 2; i < tok.length; i++) {
        const o = tok[i];
        if (o === "-m") d.forwarding = "masq";
        else if (o === "-g") d.forwarding = "gate";
        else if (o === "-i") d.forwarding = "ipip";
        else if (o === "-w") d.weight = Number(tok[++i]);
        else if (o === "-x") d.upper = Number(tok[++i]);
        else if (o === "-y") d.lower = Number(tok[++i]);
        else if (TUNNEL_OPTS.has(o)) i++;
        else if (!TUNNEL_SWITCHES.has(o)) throw bad(`unknown destination option ${o}`);
      }
      if (!Number.isInteger(d.weight)) throw bad("bad weight");
      s.dests.push(d);
    } else {
      throw bad(`unknown command ${tok[0]}`);
    }
  });
  return { services };
}

/** Per destination of `ipvsadm -Ln --thresholds`: thresholds and the connection counters (null if not printed). */
export interface DestStats { upper: number; lower: number; active: number | null; inactive: number | null }

/** `ipvsadm -Ln --thresholds` → "<service key>" → "<dest key>" → thresholds and connection counts. */
export function parseThresholds(text: string): Map<string, Map<string, DestStats>> {
  const out = new Map<string, Map<string, DestStats>>();
  let cur: Map<string, DestStats> | null = null;
  text.split("\n").forEach((line, idx) => {
    if (!line.trim() || /^(IP Virtual Server|Prot |\s+-> RemoteAddress)/.test(line)) return;
    const bad = (why: string) => new IpvsParseError(idx + 1, line, why);
    const svc = /^(TCP|UDP|FWM)\s+(\S+)(\s+IPv6)?\s/.exec(line + " ");
    if (svc) {
      let key: string;
      if (svc[1] === "FWM") key = serviceKey({ protocol: "fwm", family: svc[3] ? "ipv6" : "ipv4", address: null, port: 0, fwmark: Number(svc[2]) });
      else {
        const hp = splitHostPort(svc[2]);
        if (!hp) throw bad("bad service address");
        key = serviceKey({ protocol: svc[1] === "TCP" ? "tcp" : "udp", family: hp.address.includes(":") ? "ipv6" : "ipv4", ...hp, fwmark: null });
      }
      cur = new Map();
      out.set(key, cur);
      return;
    }
    // Uthreshold Lthreshold ActiveConn InActConn
    const d = /^\s+->\s+(\S+)\s+(\d+)\s+(\d+)(?:\s+(\d+)\s+(\d+))?\s/.exec(line + " ");
    if (d && cur) {
      const hp = splitHostPort(d[1]);
      if (!hp) throw bad("bad destination address");
      cur.set(destKey(hp), { upper: Number(d[2]), lower: Number(d[3]), active: d[4] === undefined ? null : Number(d[4]), inactive: d[5] === undefined ? null : Number(d[5]) });
      return;
    }
    throw bad("unexpected line");
  });
  return out;
}

/** The save table with the thresholds filled in; a mismatch means the table changed between reads. */
export function mergeThresholds(t: IpvsTable, th: ReturnType<typeof parseThresholds>): IpvsTable | null {
  if (th.size !== t.services.length) return null;
  for (const s of t.services) {
    const m = th.get(serviceKey(s));
    if (!m || m.size !== s.dests.length) return null;
    for (const d of s.dests) {
      const x = m.get(destKey(d));
      if (!x) return null;
      d.upper = x.upper;
      d.lower = x.lower;
    }
  }
  return t;
}
