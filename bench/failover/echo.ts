// Long-lived TCP connections for the failover benchmark and tests.
//   server: echo.ts server PORT NAME            (on each real: echoes every line, greets "HELLO NAME")
//   client: echo.ts client HOST PORT CONNS INTERVAL_MS DURATION_MS GRACE_MS
// The client opens CONNS connections, sends a numbered line on each every INTERVAL_MS for
// DURATION_MS, then waits at most GRACE_MS for the last echoes. Prints one JSON line: per
// connection { ok, sent, got, err, real, maxGapMs }. A connection is ok only if every line came
// back, in order, from the real that greeted it, with no error. Bounded in count and time.
import { createServer, connect, type Socket } from "node:net";

const [mode, ...args] = process.argv.slice(2);

if (mode === "server") {
  const [port, name] = args;
  const srv = createServer((s) => {
    s.setNoDelay(true);
    s.write(`HELLO ${name}\n`);
    s.on("data", (d) => s.write(d));
    s.on("error", () => s.destroy());
  });
  srv.listen(Number(port), "0.0.0.0", () => process.stdout.write(`echo ${name} on ${port}\n`));
  process.on("SIGTERM", () => process.exit(0));
} else if (mode === "client") {
  const [host, port, conns, iv, dur, grace] = args.map((a, i) => (i === 0 ? a : Number(a))) as [string, number, number, number, number, number];
  const n = Math.min(conns, 500), intervalMs = Math.max(5, iv), durationMs = Math.min(dur, 120_000), graceMs = Math.min(grace, 30_000);
  interface C { s: Socket; sent: number; got: number; err: string | null; real: string | null; buf: string; last: number; maxGapMs: number; done: boolean }
  const cs: C[] = [];
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const c: C = { s: connect({ host, port, noDelay: true }), sent: 0, got: 0, err: null, real: null, buf: "", last: 0, maxGapMs: 0, done: false };
    c.s.setEncoding("utf8");
    c.s.on("data", (d: string) => {
      c.buf += d;
      let k;
      while ((k = c.buf.indexOf("\n")) >= 0) {
        const line = c.buf.slice(0, k);
        c.buf = c.buf.slice(k + 1);
        const now = Date.now();
        if (line.startsWith("HELLO ")) { if (c.real === null) c.real = line.slice(6); else if (c.err === null) c.err = `greeted again by ${line.slice(6)}`; continue; }
        if (Number(line) !== c.got) { c.err ??= `out of order: ${line} != ${c.got}`; continue; }
        if (c.last) c.maxGapMs = Math.max(c.maxGapMs, now - c.last);
        c.last = now;
        c.got++;
      }
    });
    c.s.on("error", (e: NodeJS.ErrnoException) => { c.err ??= e.code ?? e.message; });
    c.s.on("close", () => { c.done = true; c.err ??= c.got < c.sent || Date.now() - t0 < durationMs ? "closed" : null; });
    cs.push(c);
  }
  // Tell the caller once every connection has its greeting (or failed): the failure may come now.
  const readyCheck = setInterval(() => { if (cs.every((c) => c.real !== null || c.err !== null)) { clearInterval(readyCheck); process.stdout.write("READY\n"); } }, 10);
  const tick = setInterval(() => {
    if (Date.now() - t0 >= durationMs) { clearInterval(tick); return; }
    for (const c of cs) if (!c.done && c.real !== null && c.s.writable) { c.s.write(`${c.sent}\n`); c.sent++; }
  }, intervalMs);
  const finish = () => {
    const out = cs.map((c) => ({ ok: c.err === null && c.sent > 0 && c.got === c.sent, sent: c.sent, got: c.got, err: c.err ?? (c.got < c.sent ? "stalled" : null), real: c.real, maxGapMs: c.maxGapMs }));
    process.stdout.write(JSON.stringify(out) + "\n");
    for (const c of cs) c.s.destroy();
    process.exit(0);
  };
  const wait = setInterval(() => {
    const t = Date.now() - t0;
    if (t >= durationMs && (cs.every((c) => c.done || c.got === c.sent) || t >= durationMs + graceMs)) { clearInterval(wait); finish(); }
  }, 20);
  setTimeout(finish, durationMs + graceMs + 2000).unref();
} else {
  process.stderr.write("usage: echo.ts server PORT NAME | echo.ts client HOST PORT CONNS INTERVAL_MS DURATION_MS GRACE_MS\n");
  process.exit(2);
}
