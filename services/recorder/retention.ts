// Retention policies of the recorder, from options or the environment: by age and by size, for
// the audit history, the controllers' input journals and the durable buffer in front of Redis.

export interface StreamRetention {
  /** Entries older than this are trimmed (stream ids follow event time). */
  maxAgeMs: number;
  /** Trimmed on every append (approximately, as Redis does it cheaply). */
  maxEntries: number;
  /** Checked periodically with MEMORY USAGE; 0 = no limit. */
  maxBytes: number;
}

export interface BufferRetention { maxAgeMs: number; maxBytes: number; replicas: number }

export interface Retention { events: StreamRetention; inputs: StreamRetention; buffer: BufferRetention }

/** "30d", "6h", "90m", "45s", "500ms" or a number of ms. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new Error(`cannot read duration "${s}" (use e.g. 30d, 6h, 90m, 45s, 500ms)`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[(m[2] ?? "ms") as "ms"]);
}

/** "512m", "2g", "64k" or a number of bytes. */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)b?$/i.exec(s.trim());
  if (!m) throw new Error(`cannot read size "${s}" (use e.g. 512m, 2g, 64k)`);
  return Math.round(Number(m[1]) * { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as ""]);
}

export const DEFAULT_RETENTION: Retention = {
  events: { maxAgeMs: 30 * 8.64e7, maxEntries: 2_000_000, maxBytes: 1024 ** 3 },
  // Heartbeats dominate the journals (one entry per heartbeat per group): keep them shorter.
  inputs: { maxAgeMs: 2 * 8.64e7, maxEntries: 500_000, maxBytes: 512 * 1024 ** 2 },
  buffer: { maxAgeMs: 7 * 8.64e7, maxBytes: 1024 ** 3, replicas: 1 },
};

/** Retention from LVSFLOW_AUDIT_*, LVSFLOW_INPUTS_* and LVSFLOW_BUFFER_* variables over the defaults. */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env, base: Retention = DEFAULT_RETENTION): Retention {
  const stream = (prefix: string, d: StreamRetention): StreamRetention => ({
    maxAgeMs: env[`${prefix}_MAX_AGE`] ? parseDuration(env[`${prefix}_MAX_AGE`]!) : d.maxAgeMs,
    maxEntries: env[`${prefix}_MAX_ENTRIES`] ? Number(env[`${prefix}_MAX_ENTRIES`]) : d.maxEntries,
    maxBytes: env[`${prefix}_MAX_BYTES`] ? parseBytes(env[`${prefix}_MAX_BYTES`]!) : d.maxBytes,
  });
  return {
    events: stream("LVSFLOW_AUDIT", base.events),
    inputs: stream("LVSFLOW_INPUTS", base.inputs),
    buffer: {
      maxAgeMs: env.LVSFLOW_BUFFER_MAX_AGE ? parseDuration(env.LVSFLOW_BUFFER_MAX_AGE) : base.buffer.maxAgeMs,
      maxBytes: env.LVSFLOW_BUFFER_MAX_BYTES ? parseBytes(env.LVSFLOW_BUFFER_MAX_BYTES) : base.buffer.maxBytes,
      replicas: env.LVSFLOW_BUFFER_REPLICAS ? Number(env.LVSFLOW_BUFFER_REPLICAS) : base.buffer.replicas,
    },
  };
}

export const RETENTION_HELP = `Recorder retention (environment):
  LVSFLOW_AUDIT_MAX_AGE / _MAX_ENTRIES / _MAX_BYTES     audit history (default 30d / 2000000 / 1g)
  LVSFLOW_INPUTS_MAX_AGE / _MAX_ENTRIES / _MAX_BYTES    controllers' input journals (default 2d / 500000 / 512m)
  LVSFLOW_BUFFER_MAX_AGE / _MAX_BYTES / _REPLICAS       JetStream buffer in front of Redis (default 7d / 1g / 1)`;
