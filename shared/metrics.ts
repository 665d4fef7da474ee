// Prometheus metrics common to every service, plus /healthz and /metrics over HTTP.
import { createServer, type Server } from "node:http";
import client from "prom-client";

export const registry = new client.Registry();

export const metrics = {
  busConnected: new client.Gauge({ name: "lvsflow_bus_connected", help: "1 while connected to a NATS server", registers: [registry] }),
  redisConnected: new client.Gauge({ name: "lvsflow_redis_connected", help: "1 while connected to Redis", registers: [registry] }),
  published: new client.Counter({ name: "lvsflow_events_published_total", help: "Events published", labelNames: ["type"], registers: [registry] }),
  rejected: new client.Counter({ name: "lvsflow_events_rejected_total", help: "Inbound messages rejected as invalid", labelNames: ["subject"], registers: [registry] }),
};

export interface HealthSource { (): { ok: boolean; [k: string]: unknown } }

/** Serves GET /healthz (JSON, 200 or 503) and GET /metrics. Port 0 disables it. */
export function serveHealth(port: number, host: string, health: HealthSource): Server | null {
  if (!port) return null;
  const srv = createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.setHeader("content-type", registry.contentType);
      res.end(await registry.metrics());
    } else if (req.url === "/healthz") {
      const h = health();
      res.statusCode = h.ok ? 200 : 503;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(h));
    } else {
      res.statusCode = 404;
      res.end("try /healthz or /metrics\n");
    }
  });
  srv.listen(port, host);
  return srv;
}
