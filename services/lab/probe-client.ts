// A bounded request loop for the lab's client namespace: one new TCP connection every
// `intervalMs`, each aborted after `timeoutMs`, at most `count` requests and `durationMs` in all.
// Prints one JSON line per request: {t (ms since start), ok, rs, ms, err}.
// usage: probe-client.ts URL intervalMs timeoutMs count durationMs [sourceAddr]
import http from "node:http";
import https from "node:https";

const [url, iv, to, cnt, dur, src] = process.argv.slice(2);
const u = new URL(url!);
const intervalMs = Number(iv ?? 20), timeoutMs = Number(to ?? 150), count = Math.min(Number(cnt ?? 100), 100_000), durationMs = Math.min(Number(dur ?? 10_000), 600_000);
const mod = u.protocol === "https:" ? https : http;
const t0 = performance.now();
let sent = 0, open = 0;

function one(): void {
  const start = performance.now();
  open++;
  let done = false;
  const finish = (o: { ok: boolean; rs?: string; err?: string }) => {
    if (done) return;
    done = true;
    open--;
    process.stdout.write(JSON.stringify({ t: Math.round(start - t0), ms: Math.round(performance.now() - start), ...o }) + "\n");
  };
  const req = mod.get(u, { agent: false, headers: { connection: "close" }, rejectUnauthorized: false, ...(src ? { localAddress: src } : {}) }, (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d) => { if (body.length < 4096) body += d; });
    res.on("end", () => finish({ ok: res.statusCode === 200, rs: String(res.headers["x-rs"] ?? "") }));
    res.on("error", (e) => finish({ ok: false, err: e.message }));
  });
  // A hard deadline from the start: req.setTimeout only measures idleness, and a SYN retransmit
  // would otherwise turn an outage into a slow success.
  const deadline = setTimeout(() => { req.destroy(new Error("timeout")); finish({ ok: false, err: "timeout" }); }, timeoutMs);
  req.on("close", () => clearTimeout(deadline));
  req.on("error", (e: NodeJS.ErrnoException) => finish({ ok: false, err: e.code ?? e.message }));
}

const timer = setInterval(() => {
  if (sent >= count || performance.now() - t0 >= durationMs) {
    clearInterval(timer);
    const wait = setInterval(() => { if (open === 0) { clearInterval(wait); process.exit(0); } }, 10);
    setTimeout(() => process.exit(0), timeoutMs + 500).unref();
    return;
  }
  sent++;
  one();
}, intervalMs);
process.on("SIGTERM", () => process.exit(0));
// The reader went away (its test or benchmark ended early): nobody wants the rest, stop quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => process.exit(e.code === "EPIPE" ? 0 : 1));
