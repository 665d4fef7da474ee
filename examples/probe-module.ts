// An in-process probe module for the lvsflow prober: load it with
//   LVSFLOW_PROBE_MODULES=examples/probe-module.ts lvsflow run prober …
// and use it from the configuration (native YAML):
//   check: { type: plugin, plugin: http-json, pluginOptions: { path: /health, field: status, expect: ok } }
//
// A probe gets the target (host, port), its timeout and an AbortSignal that fires at the
// deadline, and returns { ok, detail?, latencyMs? }. Throwing, returning something else or
// overrunning the timeout are all recorded as a failed check; the prober never crashes on it.
import type { ProbeRequest, ProbeReply } from "../services/prober/checks/plugins.ts";

/** GETs a JSON health document and compares one field: { "status": "ok", … }. */
async function httpJson(req: ProbeRequest): Promise<ProbeReply> {
  const path = typeof req.options.path === "string" ? req.options.path : "/health";
  const field = typeof req.options.field === "string" ? req.options.field : "status";
  const expect = req.options.expect ?? "ok";
  const host = req.host.includes(":") ? `[${req.host}]` : req.host;
  const started = performance.now();
  // The signal ends the request at the check's deadline.
  const res = await fetch(`http://${host}:${req.port}${path}`, { signal: req.signal, headers: { "user-agent": "lvsflow-probe-example" } });
  if (res.status !== 200) return { ok: false, detail: `HTTP ${res.status}` };
  const text = await res.text();
  let doc: Record<string, unknown>;
  try { doc = JSON.parse(text) as Record<string, unknown>; } catch { return { ok: false, detail: "health document is not JSON" }; }
  const value = doc[field];
  return value === expect
    ? { ok: true, detail: `${field}=${JSON.stringify(value)}`, latencyMs: performance.now() - started }
    : { ok: false, detail: `${field}=${JSON.stringify(value)}, want ${JSON.stringify(expect)}` };
}

export const probes = { "http-json": httpJson };
