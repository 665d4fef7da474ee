// Management-network relay for the namespace lab.
//
// A network namespace cannot reach the host's 127.0.0.1, but a unix socket is a filesystem object
// and is reachable from any namespace that sees the same /tmp. So NATS/Redis are bridged in two hops:
//   inside lab-lbN:  127.0.0.1:<listenPort>  --ns relay-->   <unixPath>
//   root namespace:  <unixPath>              --host relay--> 127.0.0.1:<tcpPort>
// Killing a node's ns relay cuts that node off the bus, which tests use to simulate a partition.
//
// CLI (one relay per process):
//   node --import tsx services/lab/relay.ts host <unixPath> <tcpPort>
//   node --import tsx services/lab/relay.ts ns   <listenPort> <unixPath>
import { createServer, connect, type Server, type Socket } from "node:net";
import { lstatSync, unlinkSync } from "node:fs";
import { pathToFileURL } from "node:url";

export interface Relay { server: Server; connections(): number; close(): Promise<void> }
export interface RelayOpts { log?: (o: Record<string, unknown>) => void }

const jsonLog = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ t: new Date().toISOString(), ...o }) + "\n");

/**
 * Joins two sockets. Half-close is passed through (allowHalfOpen on both sides, pipe() forwards
 * FIN), so a peer that sends and then shuts down its write side still gets its answer. An error on
 * either side destroys both: the client then sees the upstream as gone, like a real outage.
 */
function splice(a: Socket, b: Socket, onError: (side: string, e: Error) => void): void {
  a.pipe(b);
  b.pipe(a);
  let failed = false;
  const fail = (side: string) => (e: Error) => {
    if (!failed) onError(side, e);
    failed = true;
    a.destroy();
    b.destroy();
  };
  a.on("error", fail("client"));
  b.on("error", fail("upstream"));
  // A side that closes without error (e.g. destroyed locally) still ends the other side cleanly.
  a.on("close", () => { if (!b.destroyed) b.end(); });
  b.on("close", () => { if (!a.destroyed) a.end(); });
}

function startRelay(
  name: string,
  listen: { port: number; host: string } | { path: string },
  dial: () => Socket,
  opts: RelayOpts,
): Promise<Relay> {
  const log = opts.log ?? jsonLog;
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = dial();
    open.add(client);
    client.on("close", () => open.delete(client));
    splice(client, upstream, (side, e) => log({ relay: name, msg: "connection error", side, error: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
  // A listen error after start-up (rare) must not crash the process; log it.
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const ready = () => {
      server.off("error", reject);
      server.on("error", (e) => log({ relay: name, msg: "server error", error: e.message }));
      log({ relay: name, msg: "listening", listen });
      resolve({
        server,
        connections: () => open.size,
        // Closing also drops live connections: a stopped relay must look like a cut cable.
        close: () => new Promise<void>((r) => { for (const s of open) s.destroy(); server.close(() => r()); }),
      });
    };
    if ("path" in listen) server.listen(listen.path, ready);
    else server.listen(listen.port, listen.host, ready);
  });
}

/** A stale socket file from a crashed relay would make listen() fail with EADDRINUSE. */
function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch { /* does not exist */ }
}

/** Root namespace: accepts on the unix socket, forwards to 127.0.0.1:tcpPort (NATS or Redis). */
export function startHostRelay(unixPath: string, tcpPort: number, opts: RelayOpts = {}): Promise<Relay> {
  removeStaleSocket(unixPath);
  return startRelay("host", { path: unixPath }, () => connect({ port: tcpPort, host: "127.0.0.1", allowHalfOpen: true }), opts);
}

/** Inside a namespace: accepts on 127.0.0.1:listenPort, forwards to the unix socket. */
export function startNsRelay(listenPort: number, unixPath: string, opts: RelayOpts = {}): Promise<Relay> {
  return startRelay("ns", { port: listenPort, host: "127.0.0.1" }, () => connect({ path: unixPath, allowHalfOpen: true }), opts);
}

async function main(argv: string[]): Promise<void> {
  const [mode, a, b] = argv;
  const port = (s: string | undefined) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`bad port: ${s}`);
    return n;
  };
  let relay: Relay;
  if (mode === "host" && a && b) relay = await startHostRelay(a, port(b));
  else if (mode === "ns" && a && b) relay = await startNsRelay(port(a), b);
  else {
    process.stderr.write("usage: relay.ts host <unixPath> <tcpPort> | relay.ts ns <listenPort> <unixPath>\n");
    process.exit(2);
  }
  const stop = () => { void relay.close().then(() => process.exit(0)); setTimeout(() => process.exit(0), 1000).unref(); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: Error) => { jsonLog({ msg: "fatal", error: e.message }); process.exit(1); });
}
