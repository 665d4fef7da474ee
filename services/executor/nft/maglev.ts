// Weighted Maglev lookup table (Eisenbud et al., NSDI'16): every node computes the same table
// from the same reals, so `jhash … seed S` + this table picks the same real for a flow on
// whichever node receives it (connections survive failover), and a pool change moves only about
// 1/N of the flows (nft's own `mod N` moves about half). Pure.
import { createHash } from "node:crypto";

/** Table size: prime; > 100·N keeps the imbalance under ~1 % for up to 10 reals. */
export const MAGLEV_SIZE = 1021;

function h(s: string, salt: string): number {
  return createHash("sha256").update(`${salt}:${s}`).digest().readUInt32BE(0);
}

/**
 * slot → index into `backends`. Backends are identified by a stable key (address:port) and
 * placed in key order, so the table never depends on the order they were given in. Weights:
 * a backend takes a turn each round in proportion to weight / max weight.
 */
export function maglevTable(backends: { key: string; weight: number }[], size = MAGLEV_SIZE): number[] {
  const live = backends.map((b, i) => ({ ...b, i })).filter((b) => b.weight > 0).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const table = new Array<number>(size).fill(-1);
  if (!live.length) return table;
  const maxW = Math.max(...live.map((b) => b.weight));
  const perm = live.map((b) => ({ offset: h(b.key, "offset") % size, skip: (h(b.key, "skip") % (size - 1)) + 1, next: 0, credit: 0 }));
  let filled = 0;
  for (;;) {
    for (let k = 0; k < live.length; k++) {
      const p = perm[k]!;
      p.credit += live[k]!.weight / maxW;
      while (p.credit >= 1) {
        p.credit -= 1;
        let c = (p.offset + p.next * p.skip) % size;
        while (table[c] !== -1) { p.next++; c = (p.offset + p.next * p.skip) % size; }
        table[c] = live[k]!.i;
        p.next++;
        if (++filled === size) return table;
      }
    }
  }
}

/** Consecutive slots with the same backend as ranges: "0-3 : X, 4 : Y" stays short. */
export function tableRanges(table: number[]): { from: number; to: number; backend: number }[] {
  const out: { from: number; to: number; backend: number }[] = [];
  for (let s = 0; s < table.length; s++) {
    const last = out.at(-1);
    if (last && last.backend === table[s] && last.to === s - 1) last.to = s;
    else out.push({ from: s, to: s, backend: table[s]! });
  }
  return out;
}
