// Redis ACL users per role, as a file for redis-server --aclfile (Redis ≥ 7.0). The recorder
// appends to the site's history; the CLI only reads it; the default user is off. Passwords are
// stored as SHA-256 hashes (Redis' own `#<hex>` form), never in clear.
import { createHash } from "node:crypto";

export const REDIS_ROLES = ["recorder", "cli"] as const;
export type RedisRole = (typeof REDIS_ROLES)[number];

export interface RedisUser { name: string; role: RedisRole; password: string }

/** Commands every client needs: ioredis' ready check (INFO), connection name, db select. */
const CONNECTION = "+ping +info +client|setname +select";

/** The ACL rules of a role (without the user name and password), for one site's keys. */
export function aclRules(site: string, role: RedisRole): string {
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(site)) throw new Error(`invalid site name ${JSON.stringify(site)}`);
  const keys = `lvsflow:${site}:*`;
  switch (role) {
    // What the recorder does: its idempotent append (EVAL of GET/SET NX/XREVRANGE/XADD), its
    // cursor (GET/SET), retention (XTRIM, XLEN, MEMORY USAGE). Commands inside a script are
    // checked against the same rules, so no script can DEL, FLUSH or touch another site's keys.
    case "recorder": return `resetkeys ~${keys} resetchannels -@all ${CONNECTION} +eval +evalsha +get +set +xadd +xrevrange +xlen +xtrim +memory|usage`;
    // Read-only on the site's keys (%R~): audit, status.
    case "cli": return `resetkeys %R~${keys} resetchannels -@all +@read -@dangerous -scan -randomkey ${CONNECTION}`;
  }
}

export function passwordHash(password: string): string {
  return createHash("sha256").update(password, "utf8").digest("hex");
}

export function renderAclFile(site: string, users: RedisUser[]): string {
  // An ACL file has no comments: every line is a user (redis-server refuses to start otherwise).
  const lines = ["user default off resetkeys -@all"];
  for (const u of users) {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(u.name)) throw new Error(`invalid Redis user name ${JSON.stringify(u.name)}`);
    if (u.password.length < 16) throw new Error(`password of Redis user ${u.name} is too short`);
    lines.push(`user ${u.name} on #${passwordHash(u.password)} ${aclRules(site, u.role)}`);
  }
  return lines.join("\n") + "\n";
}
