// Who may publish and subscribe to what on the bus: the permission matrix every NATS identity
// gets. One identity per role and per node where the subject names the node, so a stolen
// prober key cannot speak for a controller and lb1's executor key cannot read lb2's decisions.
//
// When you add a subject a service publishes or subscribes to, add it here too: the lab and the
// permission tests run with this matrix, and the server refuses anything it does not allow.
import { token } from "../../shared/subjects.ts";

export const ROLES = ["prober", "controller", "executor", "node", "recorder", "operator", "witness"] as const;
export type Role = (typeof ROLES)[number];

/** One NATS user: a role, and the node (or instance) name it acts for. */
export interface Identity { role: Role; name: string }

export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
  /** May answer requests it received (reply subjects), once each, for a short while. */
  allowResponses: boolean;
}

/** Identity names go into subjects and file names: the same rule as node names. */
export const IDENTITY_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const identityId = (i: Identity): string => `${i.role}-${i.name}`;

export function parseIdentityId(id: string): Identity | null {
  const m = /^([a-z]+)-(.+)$/.exec(id);
  if (!m || !(ROLES as readonly string[]).includes(m[1]!) || !IDENTITY_NAME.test(m[2]!)) return null;
  return { role: m[1] as Role, name: m[2]! };
}

/** The recorder's durable buffer stream (services/recorder/buffer.ts names it the same way). */
export const recorderStream = (site: string) => `LVSFLOW_RECORD_${site.replace(/[^A-Za-z0-9_-]/g, "_")}`;

/** What each role does on the bus, as the README's subject table says. */
export function permissionsFor(site: string, id: Identity): SubjectPermissions {
  const p = rolePermissions(site, id);
  if (id.role === "operator") return p;
  // Every service takes configurations pushed by operators and says whether it applied them.
  const s = `lvsflow.${site}`, n = token(id.name);
  return {
    publish: [...new Set([...p.publish, `${s}.config.applied.${n}`, `${s}.config.rejected.${n}`])],
    subscribe: [...new Set([...p.subscribe, `${s}.config.push`])],
    allowResponses: p.allowResponses,
  };
}

function rolePermissions(site: string, id: Identity): SubjectPermissions {
  if (!IDENTITY_NAME.test(site)) throw new Error(`invalid site name ${JSON.stringify(site)}`);
  if (!IDENTITY_NAME.test(id.name)) throw new Error(`invalid ${id.role} name ${JSON.stringify(id.name)}`);
  const s = `lvsflow.${site}`;
  const n = token(id.name);
  switch (id.role) {
    case "prober":
      // Health results and summaries under its own name; its membership heartbeat in a prober
      // group (probers sharing checks), whose members it hears.
      return { publish: [`${s}.health.${n}.>`, `${s}.probers.*.${n}`, `${s}.rejected.prober.${n}`], subscribe: [`${s}.probers.*.*`], allowResponses: false };
    case "controller":
      // Decisions and leases for its own node's executor, its view of the peers, its command
      // acknowledgements and overrides, its input journal. Reads health, heartbeats, operators'
      // command requests, the other controllers' overrides and views, connection counts (drain),
      // and answers status queries (allow_responses).
      return {
        publish: [`${s}.decision.${n}.>`, `${s}.lease.${n}.*`, `${s}.peer.${n}.>`, `${s}.command.ack.${n}`, `${s}.command.state.${n}`,
          `${s}.view.${n}`, `${s}.inputs.${n}`, `${s}.rejected.controller.${n}`],
        subscribe: [`${s}.health.>`, `${s}.heartbeat.*`, `${s}.command.request.*`, `${s}.command.state.*`, `${s}.view.*`,
          `${s}.query.view`, `${s}.report.*.connections`],
        allowResponses: true,
      };
    case "executor":
      // Only its own node's decisions and leases; publishes its own heartbeats and reports; hears
      // the other nodes' heartbeats (a stopping executor hands its addresses over to a live peer).
      return {
        publish: [`${s}.heartbeat.${n}`, `${s}.report.${n}.>`, `${s}.rejected.executor.${n}`],
        subscribe: [`${s}.decision.${n}.>`, `${s}.lease.${n}.*`, `${s}.heartbeat.*`],
        allowResponses: false,
      };
    case "node": {
      // `lvsflow run node`: prober, controller and executor of one node in one process.
      const parts = (["prober", "controller", "executor"] as const).map((role) => rolePermissions(site, { role, name: id.name }));
      return {
        publish: [...new Set(parts.flatMap((p) => p.publish))],
        subscribe: [...new Set(parts.flatMap((p) => p.subscribe))],
        allowResponses: true,
      };
    }
    case "recorder": {
      // Reads everything of the site. Its durable buffer is one JetStream stream: it may create,
      // update and read that stream through ephemeral consumers (deliveries to its inboxes), and
      // touch no other stream.
      const st = recorderStream(site);
      return {
        publish: [`${s}.rejected.recorder.${n}`, "$JS.API.INFO", `$JS.API.STREAM.INFO.${st}`, `$JS.API.STREAM.CREATE.${st}`, `$JS.API.STREAM.UPDATE.${st}`,
          `$JS.API.CONSUMER.CREATE.${st}`, `$JS.API.CONSUMER.CREATE.${st}.>`, `$JS.API.CONSUMER.INFO.${st}.*`, `$JS.API.CONSUMER.DELETE.${st}.*`,
          `$JS.API.CONSUMER.MSG.NEXT.${st}.*`, `$JS.ACK.${st}.>`],
        subscribe: [`${s}.>`, "_INBOX.>"],
        allowResponses: false,
      };
    }
    case "operator":
      // `lvsflow status`, commands, the dashboard: reads everything of the site, publishes command
      // requests and status queries only, and receives replies on its own inboxes.
      return { publish: [`${s}.command.request.*`, `${s}.query.view`, `${s}.config.push`], subscribe: [`${s}.>`, "_INBOX.>"], allowResponses: false };
    case "witness":
      // A quorum voter that is not an LB node: hears heartbeats and views, publishes its own view.
      return { publish: [`${s}.view.${n}`, `${s}.rejected.witness.${n}`], subscribe: [`${s}.heartbeat.*`, `${s}.view.*`], allowResponses: false };
  }
}

/** The identities a site needs: per LB node a prober, controller, executor and node identity, plus extras. */
export function siteIdentities(nodes: string[], extra: { probers?: string[]; recorders?: string[]; operators?: string[]; witnesses?: string[] } = {}): Identity[] {
  const out: Identity[] = [];
  for (const name of nodes) for (const role of ["prober", "controller", "executor", "node"] as const) out.push({ role, name });
  for (const name of extra.probers ?? []) out.push({ role: "prober", name });
  for (const name of extra.recorders ?? ["recorder"]) out.push({ role: "recorder", name });
  for (const name of extra.operators ?? ["operator"]) out.push({ role: "operator", name });
  for (const name of extra.witnesses ?? []) out.push({ role: "witness", name });
  const seen = new Set<string>();
  return out.filter((i) => (seen.has(identityId(i)) ? false : (seen.add(identityId(i)), true)));
}

/** NATS subject matching: `*` is one token, a final `>` one or more tokens. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split("."), s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return i === p.length - 1 && s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** Whether `perms` lets its holder publish (or subscribe to) `subject`. */
export function permits(perms: SubjectPermissions, op: "publish" | "subscribe", subject: string): boolean {
  return perms[op].some((p) => subjectMatches(p, subject));
}
