// Renders a nats-server (2.9) configuration: one nkey user per identity with exactly its
// permissions, optional TLS. The file holds public keys only; the seeds stay with the services.
import { identityId, permissionsFor, type Identity } from "./roles.ts";

export interface NatsUser { identity: Identity; publicKey: string }

export interface NatsTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Require a client certificate signed by the CA (mutual TLS) in addition to the nkey. */
  verify: boolean;
}

export interface NatsServerConfOptions {
  site: string;
  users: NatsUser[];
  /** "host:port"; omitted: nats-server's default (0.0.0.0:4222) or its -a/-p flags. */
  listen?: string;
  tls?: NatsTlsFiles;
}

const q = (s: string) => JSON.stringify(s);
const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;

export function renderNatsServerConf(o: NatsServerConfOptions): string {
  const out: string[] = [
    `# nats-server configuration for lvsflow site "${o.site}", written by \`lvsflow security init\`.`,
    "# Re-run that command instead of editing: infra/nats/roles.ts is the permission matrix.",
    "# Only public nkeys here; each service holds its own seed (LVSFLOW_NATS_NKEY_FILE).",
  ];
  if (o.listen) out.push(`listen: ${q(o.listen)}`);
  out.push("", "authorization {", "  users = [");
  for (const u of o.users) {
    if (!/^U[A-Z2-7]{55}$/.test(u.publicKey)) throw new Error(`not a user public nkey for ${identityId(u.identity)}: ${u.publicKey}`);
    const p = permissionsFor(o.site, u.identity);
    out.push(`    # ${identityId(u.identity)}`);
    out.push(`    { nkey: ${q(u.publicKey)}, permissions: {`);
    out.push(`        publish: ${p.publish.length ? `{ allow: ${list(p.publish)} }` : `{ deny: [">"] }`}`);
    out.push(`        subscribe: ${p.subscribe.length ? `{ allow: ${list(p.subscribe)} }` : `{ deny: [">"] }`}`);
    if (p.allowResponses) out.push("        allow_responses: true");
    out.push("    } }");
  }
  out.push("  ]", "}");
  if (o.tls) {
    out.push("", "tls {", `  cert_file: ${q(o.tls.certFile)}`, `  key_file: ${q(o.tls.keyFile)}`, `  ca_file: ${q(o.tls.caFile)}`,
      `  verify: ${o.tls.verify}`, "  timeout: 2", "}");
  }
  return out.join("\n") + "\n";
}
