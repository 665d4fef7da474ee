// `lvsflow run dashboard`: a small API and one static page. The topology (nodes, floating groups,
// virtual services, reals) streams live over server-sent events; the audit timeline comes from the
// Redis Stream lvsflow:<site>:events plus the events arriving on the bus, and the "why" of any
// event is one request away; operator commands (the same as the CLI's) need a logged-in session.
//
//   LVSFLOW_DASHBOARD_LISTEN            127.0.0.1:9180   (host:port; [::1]:9180)
//   LVSFLOW_DASHBOARD_PASSWORD_FILE     file holding the operators' password (or LVSFLOW_DASHBOARD_PASSWORD)
//
// Serve it on loopback or behind a TLS reverse proxy: the session cookie travels in clear otherwise.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import client from "prom-client";
import type { Redis } from "ioredis";
import type { ServiceContext, RunningService } from "../../shared/service.ts";
import { registry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis.ts";
import { envSecret } from "../../shared/secrets.ts";
import { AUDITED } from "../../shared/subjects.ts";
import { CommandRequest, type Event } from "../../shared/schemas/events.ts";
import { LiveCluster } from "./live.ts";
import { snapshot } from "./cluster-view.ts";
import { Auth, sessionCookie, type Session } from "./auth.ts";
import { EventIndex, item, readRecent, whyChain } from "./history.ts";
import { issueCommand } from "../commands/client.ts";
import { entriesFor } from "../commands/overrides.ts";
import { why as decisionWhy } from "../cli/why.ts";

const PAGE = fileURLToPath(new URL("./page.html", import.meta.url));
const sseClients = new client.Gauge({ name: "lvsflow_dashboard_stream_clients", help: "Browsers connected to the live stream", registers: [registry] });
const logins = new client.Counter({ name: "lvsflow_dashboard_logins_total", help: "Login attempts by result", labelNames: ["result"], registers: [registry] });
const commands = new client.Counter({ name: "lvsflow_dashboard_commands_total", help: "Operator commands sent from the dashboard, by action and outcome", labelNames: ["action", "ok"], registers: [registry] });

export function parseListen(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`LVSFLOW_DASHBOARD_LISTEN: cannot read "${s}" (use HOST:PORT)`);
  return { host: m[1]!, port };
}

const MAX_BODY = 16 * 1024;
const MAX_STREAMS = 50;

function body(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) return reject(new Error("send JSON (content-type: application/json)"));
    let size = 0;
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => { size += c.length; if (size > MAX_BODY) { reject(new Error("request too large")); req.destroy(); } else parts.push(c); });
    req.on("end", () => { try { resolve(JSON.parse(Buffer.concat(parts).toString("utf8") || "{}")); } catch { reject(new Error("body is not JSON")); } });
    req.on("error", reject);
  });
}

export interface DashboardOptions { listen?: string; password?: string }

export async function startDashboard(ctx: ServiceContext, o: DashboardOptions = {}): Promise<RunningService & { port(): number }> {
  const { site, bus, log } = ctx;
  const password = o.password ?? envSecret(process.env, "LVSFLOW_DASHBOARD_PASSWORD");
  if (!password) throw new Error("the dashboard needs an operator password: set LVSFLOW_DASHBOARD_PASSWORD_FILE (or LVSFLOW_DASHBOARD_PASSWORD)");
  const auth = new Auth({ password });
  const { host, port } = parseListen(o.listen ?? process.env.LVSFLOW_DASHBOARD_LISTEN ?? "127.0.0.1:9180");
  const page = readFileSync(PAGE);
  const redis: Redis = createRedis(ctx.redisUrl, log, "lvsflow-dashboard");
  const index = new EventIndex();
  const streams = new Set<ServerResponse>();

  const sse = (event: string, data: unknown) => {
    const msg = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of streams) s.write(msg);
  };
  // Push the topology at once when something an operator would see changed (coalesced over a few
  // ms: one failure brings several events), and every second anyway so ages and liveness move.
  let pushTimer: NodeJS.Timeout | null = null;
  const pushTopology = () => { pushTimer = null; if (streams.size) sse("topology", snapshot(live.state, Date.now())); };
  const live = new LiveCluster(bus.nc!, site, ctx.model, {
    queryEveryMs: 2000,
    onEvent: (ev: Event, significant: boolean) => {
      if (AUDITED.has(ev.type) && index.add(ev)) sse("audit", item(ev));
      if (significant && !pushTimer) pushTimer = setTimeout(pushTopology, 20);
    },
  }).start();
  const tick = setInterval(pushTopology, 1000);

  // The recent history, so the timeline and "why" reach back before this process started.
  const loadHistory = async () => {
    try {
      let before: string | undefined;
      for (let i = 0; i < 20 && index.size < 20_000; i++) {
        const { events, last } = await readRecent(redis, site, 1000, before);
        for (const ev of events) index.add(ev);
        if (!last || events.length < 1000) break;
        before = last;
      }
      log.info({ events: index.size }, "audit history loaded");
    } catch (e) { log.warn({ err: String(e) }, "could not read the audit history (Redis); the timeline starts now"); }
  };
  redis.once("ready", () => void loadHistory());

  const json = (res: ServerResponse, status: number, v: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
    res.end(JSON.stringify(v));
  };
  const ip = (req: IncomingMessage) => req.socket.remoteAddress ?? "?";

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    const now = Date.now();
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("x-frame-options", "DENY");
    if (req.method === "GET" && (url.pathname === "/" || url.pathname === "/index.html")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "content-security-policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'" });
      return res.end(page);
    }
    if (url.pathname === "/healthz") return json(res, 200, { ok: true, streams: streams.size, history: index.size });
    if (url.pathname === "/metrics") { res.setHeader("content-type", registry.contentType); return res.end(await registry.metrics()); }
    if (url.pathname === "/api/login" && req.method === "POST") {
      const b = (await body(req)) as { user?: unknown; password?: unknown };
      const s = auth.login(b.user, b.password, ip(req), now);
      if ("error" in s) { logins.inc({ result: String(s.status) }); log.warn({ ip: ip(req), user: typeof b.user === "string" ? b.user.slice(0, 64) : null, status: s.status }, "dashboard login refused"); return json(res, s.status, { error: s.error }); }
      logins.inc({ result: "ok" });
      log.info({ user: s.user, ip: s.ip }, "dashboard login");
      return json(res, 200, { user: s.user, csrf: s.csrf, site }, { "set-cookie": sessionCookie(s) });
    }
    const session: Session | null = auth.session(req.headers.cookie, now);
    if (!session) return json(res, 401, { error: "log in first" });
    if (req.method === "POST" && !auth.csrfOk(session, req.headers["x-lvsflow-csrf"])) return json(res, 403, { error: "missing or wrong x-lvsflow-csrf header" });
    if (url.pathname === "/api/session") return json(res, 200, { user: session.user, csrf: session.csrf, site });
    if (url.pathname === "/api/logout" && req.method === "POST") { auth.logout(session); return json(res, 200, { ok: true }, { "set-cookie": sessionCookie(null) }); }
    if (url.pathname === "/api/topology") return json(res, 200, snapshot(live.state, now));
    if (url.pathname === "/api/stream") {
      if (streams.size >= MAX_STREAMS) return json(res, 503, { error: "too many live streams" });
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
      res.write(`retry: 1000\nevent: topology\ndata: ${JSON.stringify(snapshot(live.state, now))}\n\n`);
      streams.add(res);
      sseClients.set(streams.size);
      req.on("close", () => { streams.delete(res); sseClients.set(streams.size); });
      return;
    }
    if (url.pathname === "/api/audit") {
      const limit = Math.min(Math.max(Number(url.searchParams.get("limit")) || 200, 1), 2000);
      try {
        const { events } = await readRecent(redis, site, limit);
        for (const ev of events) index.add(ev);
        return json(res, 200, { items: events.map(item) });
      } catch (e) { return json(res, 503, { error: `audit history unavailable: ${e instanceof Error ? e.message : String(e)}` }); }
    }
    const why = /^\/api\/why\/([A-Za-z0-9_.:-]{8,64})$/.exec(url.pathname);
    if (why) {
      const w = whyChain(index, why[1]!);
      // A decision also gets `lvsflow why`'s chain: evidence → decision → kernel, with latencies.
      const ev = index.get(why[1]!);
      let chain = null;
      if (ev && (ev.type === "decision.pool" || ev.type === "decision.owner")) {
        const target = ev.type === "decision.owner" ? ev.data.group : ev.data.changes[0]?.real ?? ev.data.pool.vs;
        try {
          const r = decisionWhy(target, Date.parse(ev.time), index.all(), null, 3);
          const c = r.chains.find((x) => x.steps.some((st) => st.event?.id === ev.id));
          if (c) chain = { title: c.title, complete: c.complete, latency: c.latency, steps: c.steps.map((st) => ({ kind: st.kind, time: st.time, node: st.node, text: st.text, afterMs: st.afterMs })) };
        } catch (e) { log.warn({ err: String(e), id: ev.id }, "why chain failed"); }
      }
      return json(res, 200, { ...w, chain });
    }
    if (url.pathname === "/api/command" && req.method === "POST") {
      const b = (await body(req)) as Record<string, unknown>;
      const parsed = CommandRequest.safeParse({ ...b, issuedBy: `${session.user} via dashboard from ${ip(req)}` });
      if (!parsed.success) return json(res, 400, { error: parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") });
      const check = entriesFor(ctx.model, { id: "check", at: now, data: parsed.data });
      if (typeof check === "string") return json(res, 400, { error: check });
      log.info({ user: session.user, action: parsed.data.action, vs: parsed.data.vs, real: parsed.data.real, group: parsed.data.group }, "dashboard command");
      const r = await issueCommand(parsed.data, { nc: bus.nc!, site, source: { service: "dashboard", node: ctx.node }, expectedNodes: ctx.model.nodes.map((n) => n.name), waitMs: 15_000 });
      commands.inc({ action: parsed.data.action, ok: String(r.ok) });
      return json(res, 200, r);
    }
    return json(res, 404, { error: "no such endpoint" });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      log.warn({ err: e instanceof Error ? e.message : String(e), url: req.url }, "dashboard request failed");
      if (!res.headersSent) json(res, 400, { error: e instanceof Error ? e.message : String(e) });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => { server.once("error", reject); server.listen(port, host, () => { server.off("error", reject); resolve(); }); });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  log.info({ url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}/` }, "dashboard listening");

  return {
    port: () => bound,
    async stop() {
      clearInterval(tick);
      if (pushTimer) clearTimeout(pushTimer);
      live.stop();
      for (const s of streams) s.end();
      await new Promise<void>((r) => server.close(() => r()));
      redis.disconnect();
    },
    health: () => ({ ok: bus.connected, bus: bus.connected, redis: redis.status, streams: streams.size, history: index.size }),
  };
}
