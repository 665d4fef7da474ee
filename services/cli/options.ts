// Options every service shares, from flags or environment variables (flags win).
import { hostname } from "node:os";
import { parseArgs } from "node:util";

export interface CommonOptions {
  nats: string[];
  redis: string;
  site: string | null;
  node: string;
  config: string[];
  httpPort: number;
  httpHost: string;
  stateDir: string;
  natsUser?: string;
  natsPass?: string;
}

export const commonFlags = {
  nats: { type: "string" },
  redis: { type: "string" },
  site: { type: "string" },
  node: { type: "string" },
  config: { type: "string", multiple: true },
  "http-port": { type: "string" },
  "http-host": { type: "string" },
  "state-dir": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const ENV_HELP = `Common options (flag / environment variable / default):
  --nats URL[,URL]     LVSFLOW_NATS        nats://127.0.0.1:4222
  --redis URL          LVSFLOW_REDIS       redis://127.0.0.1:6379   (or unix:///path/redis.sock)
  --site NAME          LVSFLOW_SITE        the configuration's site
  --node NAME          LVSFLOW_NODE        this host's name
  --config FILE        LVSFLOW_CONFIG      ldirectord.cf, keepalived.conf or lvsflow.yaml (repeatable / comma-separated)
  --http-port N        LVSFLOW_HTTP_PORT   0 (off): serves /healthz and /metrics
  --http-host ADDR     LVSFLOW_HTTP_HOST   127.0.0.1
  --state-dir DIR      LVSFLOW_STATE_DIR   /var/lib/lvsflow
  NATS credentials: LVSFLOW_NATS_NKEY_FILE (nkey seed), or LVSFLOW_NATS_USER + LVSFLOW_NATS_PASS[_FILE];
    TLS: LVSFLOW_NATS_TLS_CA [+ LVSFLOW_NATS_TLS_CERT, LVSFLOW_NATS_TLS_KEY]   (lvsflow security init writes them)
  Redis credentials: LVSFLOW_REDIS_USER + LVSFLOW_REDIS_PASS[_FILE]; TLS: rediss:// URL, LVSFLOW_REDIS_TLS_CA`;

export function parseCommon(args: string[], extra: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {}) {
  const { values, positionals } = parseArgs({ args, options: { ...commonFlags, ...extra }, allowPositionals: true, strict: true });
  const v = values as Record<string, string | string[] | boolean | undefined>;
  const env = process.env;
  const list = (x: string | string[] | undefined) => (Array.isArray(x) ? x : x ? [x] : []).flatMap((s) => s.split(",")).filter(Boolean);
  const opts: CommonOptions = {
    nats: list((v.nats as string) ?? env.LVSFLOW_NATS ?? "nats://127.0.0.1:4222"),
    redis: (v.redis as string) ?? env.LVSFLOW_REDIS ?? "redis://127.0.0.1:6379",
    site: (v.site as string) ?? env.LVSFLOW_SITE ?? null,
    node: (v.node as string) ?? env.LVSFLOW_NODE ?? hostname().split(".")[0]!.toLowerCase(),
    config: list((v.config as string[]) ?? env.LVSFLOW_CONFIG),
    httpPort: Number((v["http-port"] as string) ?? env.LVSFLOW_HTTP_PORT ?? 0),
    httpHost: (v["http-host"] as string) ?? env.LVSFLOW_HTTP_HOST ?? "127.0.0.1",
    stateDir: (v["state-dir"] as string) ?? env.LVSFLOW_STATE_DIR ?? "/var/lib/lvsflow",
    natsUser: env.LVSFLOW_NATS_USER,
    natsPass: env.LVSFLOW_NATS_PASS,
  };
  return { opts, values: v, positionals };
}
