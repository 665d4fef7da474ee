// The bench's real servers: one process with N listeners (addresses × ports) in the bench's
// server namespace. mode connect: accept and close; mode http: answer every request with a small
// 200 page. stdin commands: "close ADDR PORT" stops one listener (the real then refuses).
import { createServer } from "node:net";
import { createInterface } from "node:readline";

const [mode, addrList, portFrom, perAddr] = process.argv.slice(2);
const addrs = addrList.split(",");
const REPLY = Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
const servers = new Map();
let listening = 0;
const total = addrs.length * Number(perAddr);

const onConn = mode === "http"
  ? (s) => { s.on("error", () => {}); s.once("data", () => s.end(REPLY)); }
  : (s) => { s.on("error", () => {}); s.destroy(); };

for (const a of addrs) {
  for (let i = 0; i < Number(perAddr); i++) {
    const port = Number(portFrom) + i;
    const srv = createServer(onConn);
    srv.on("error", (e) => { process.stderr.write(`listen ${a}:${port}: ${e.message}\n`); process.exit(1); });
    srv.listen({ host: a, port, backlog: 511 }, () => { if (++listening === total) process.stdout.write("ready\n"); });
    servers.set(`${a}:${port}`, srv);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, a, p] = line.trim().split(/\s+/);
  if (cmd === "close") servers.get(`${a}:${p}`)?.close(() => process.stdout.write(`closed ${a}:${p}\n`));
}).on("close", () => process.exit(0));
