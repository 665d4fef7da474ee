// Redis ACL users per role, as a file for redis-server --aclfile (Redis ≥ 7.0). One user per
// identity (as on NATS); the default user is off. Passwords are stored as SHA-256 hashes (Redis'
// own `#<hex>` form), never in clear.
//
//   recorder  appends the site's audit history, keeps its cursor, trims by retention
//   cli       operators' tools: reads everything of the site, stores configuration versions (config push)
//   service   probers, controllers, executors, witnesses: record the configuration versions they
//             accept and read them back; a controller also keeps its own node's machine snapshots
import { createHash } from "node:crypto";

export const REDIS_ROLES = ["recorder", "cli", "service"] as const;
export type RedisRole = (typeof REDIS_ROLES)[number];

export interface RedisUser {
  name: string;
  role: RedisRole;
  password: string;
  /** For a controller's service user: the node whose snapshots it keeps. */
  snapshotNode?: string;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Commands every client needs: ioredis' ready check (INFO), connection name, db select. */
const CONNECTION = "+ping +info +client|setname +select";
/** Configuration versions (shared/config/versions.ts): an EVAL of XREVRANGE/SET NX/XADD, GET, EXISTS, SCAN for sites. */
const CONFIG_VERSIONS = "+eval +evalsha +get +set +exists +xadd +xrevrange +xrange +scan";

/** The ACL rules of a role (without the user name and password), for one site's keys. */
export function aclRules(site: string, role: RedisRole, snapshotNode?: string): string {
  if (!NAME.test(site)) throw new Error(`invalid site name ${JSON.stringify(site)}`);
  if (snapshotNode !== undefined && !NAME.test(snapshotNode)) throw new Error(`invalid node name ${JSON.stringify(snapshotNode)}`);
  const p = `lvsflow:${site}:`;
  switch (role) {
    // The recorder's append (EVAL of GET/SET NX/XREVRANGE/XADD), its cursor, retention (XTRIM,
    // XLEN, MEMORY USAGE), and its own configuration versions. Commands inside a script are checked
    // against the same rules, so no script can DEL, FLUSH or touch another site's keys.
    case "recorder": return `resetkeys ~${p}* resetchannels -@all ${CONNECTION} ${CONFIG_VERSIONS} +xlen +xtrim +memory|usage`;
    // Read-only on the site's keys (%R~) except the configuration versions it stores.
    case "cli": return `resetkeys %R~${p}* ~${p}config:* resetchannels -@all +@read -@dangerous -randomkey ${CONNECTION} ${CONFIG_VERSIONS}`;
    case "service": {
      const snap = snapshotNode ? ` ~${p}snapshot:${snapshotNode}:*` : "";
      return `resetkeys ~${p}config:*${snap} resetchannels -@all ${CONNECTION} ${CONFIG_VERSIONS}${snapshotNode ? " +mget" : ""}`;
    }
  }
}

export function passwordHash(password: string): string {
  return createHash("sha256").update(password, "utf8").digest("hex");
}

export function renderAclFile(site: string, users: RedisUser[]): string {
  // An ACL file has no comments: every line is a user (redis-server refuses to start otherwise).
  const lines = ["user default off resetkeys -@all"];
  for (const u of users) {
    if (!NAME.test(u.name)) throw new Error(`invalid Redis user name ${JSON.stringify(u.name)}`);
    if (u.password.length < 16) throw new Error(`password of Redis user ${u.name} is too short`);
    lines.push(`user ${u.name} on #${passwordHash(u.password)} ${aclRules(site, u.role, u.snapshotNode)}`);
  }
  return lines.join("\n") + "\n";
}
