// Real server for the namespace lab (runs inside lab-rs1 / lab-rs2), or a sorry/fallback server.
//
//   node --import tsx services/lab/rs-server.ts --name rs1 --http 80 --https 443 --bind 0.0.0.0
//   node --import tsx services/lab/rs-server.ts --name sorry-lb1 --sorry --http 80 --bind 127.0.0.1
//
// Real mode:  /aaaa.html -> "aaaa" (the seed's request/receive check), /whoami -> "<name> <ip>:<port>"
//             (shows whether the client IP survived the NAT), /slow?ms=N (cap 60 s, for drain tests).
// Sorry mode: "sorry from <name>" on every path, so a check for "aaaa" can never pass on it.
// Every answer carries "X-RS: <name>" so clients can tell which server answered.
import { createServer as createHttp, type IncomingMessage, type ServerResponse, type Server } from "node:http";
import { createServer as createHttps } from "node:https";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { fileURLToPath, pathToFileURL } from "node:url";

export const LAB_TLS_DIR = fileURLToPath(new URL("../../infra/lab/tls/", import.meta.url));
export const SLOW_CAP_MS = 60_000;

export interface RsOptions { name: string; sorry?: boolean }

export function rsHandler(o: RsOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    res.setHeader("X-RS", o.name);
    res.setHeader("Content-Type", "text/plain");
    if (o.sorry) { res.end(`sorry from ${o.name}`); return; }
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname === "/aaaa.html") { res.end("aaaa"); return; }
    if (u.pathname === "/whoami") { res.end(`${o.name} ${req.socket.remoteAddress}:${req.socket.remotePort}`); return; }
    if (u.pathname === "/slow") {
      const ms = Math.max(0, Math.min(Number(u.searchParams.get("ms")) || 0, SLOW_CAP_MS));
      const t = setTimeout(() => res.end(`${o.name} slow ${ms}`), ms);
      res.on("close", () => clearTimeout(t)); // client gave up: do not keep the timer alive
      return;
    }
    res.statusCode = 404;
    res.end("not found");
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => { server.off("error", reject); resolve(); });
  });
}

/** Starts the HTTP server and, if httpsPort is set, the HTTPS one with the lab certificate. */
export async function startRsServer(o: RsOptions & { bind: string; http?: number; https?: number; tlsDir?: string }): Promise<{ servers: Server[]; close(): Promise<void> }> {
  const handler = rsHandler(o);
  const servers: Server[] = [];
  if (o.http !== undefined) servers.push(createHttp(handler));
  if (o.https !== undefined) {
    const dir = o.tlsDir ?? LAB_TLS_DIR;
    servers.push(createHttps({ key: readFileSync(`${dir}/lab.key`), cert: readFileSync(`${dir}/lab.crt`) }, handler));
  }
  const ports = [o.http, o.https].filter((p): p is number => p !== undefined);
  for (const [i, s] of servers.entries()) {
    s.keepAliveTimeout = 65_000; // longer than typical client idle timeouts, like a real web server
    await listen(s, ports[i], o.bind);
  }
  return {
    servers,
    close: () => Promise.all(servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }))).then(() => {}),
  };
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      name: { type: "string" }, http: { type: "string" }, https: { type: "string" },
      bind: { type: "string", default: "0.0.0.0" }, sorry: { type: "boolean", default: false }, "tls-dir": { type: "string" },
    },
  });
  const port = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  if (!v.name) throw new Error("--name is required");
  const http = port(v.http) ?? (v.https === undefined ? 80 : undefined);
  const rs = await startRsServer({ name: v.name, sorry: v.sorry, bind: v.bind!, http, https: port(v.https), tlsDir: v["tls-dir"] });
  process.stdout.write(JSON.stringify({ msg: "listening", name: v.name, sorry: v.sorry, bind: v.bind, http, https: port(v.https), pid: process.pid }) + "\n");
  const stop = () => { void rs.close().then(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: Error) => { process.stderr.write(JSON.stringify({ msg: "fatal", error: e.message }) + "\n"); process.exit(1); });
}
