// The Prometheus side: every metric the alert rules (infra/prometheus/alerts.yml) and the issue's
// list name is one the services really register, with the type the rules assume.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { registry } from "../shared/metrics.ts";
// Importing a service registers its metrics.
import "../services/prober/main.ts";
import "../services/controller/main.ts";
import "../services/executor/main.ts";
import "../services/recorder/main.ts";
import "../services/dashboard/main.ts";
import "../services/commands/controller-side.ts";
import "../services/commands/connections.ts";

const registered = async () => new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
const base = (n: string) => n.replace(/_(bucket|sum|count)$/, "");

test("alert rules name only metrics the services export", async () => {
  const rules = parse(readFileSync(new URL("../infra/prometheus/alerts.yml", import.meta.url), "utf8")) as { groups: { rules: { alert: string; expr: string }[] }[] };
  const have = await registered();
  const used = rules.groups.flatMap((g) => g.rules.map((r) => [r.alert, [...r.expr.matchAll(/\blvsflow_[a-z_]+/g)].map((m) => m[0])] as const));
  assert.ok(used.length >= 10);
  for (const [alert, names] of used) {
    assert.ok(names.length, `${alert} uses an lvsflow metric`);
    for (const n of names) {
      assert.ok(have.has(base(n)), `${alert}: ${n} is not registered by any service`);
      if (n.endsWith("_bucket")) assert.equal(have.get(base(n)), "histogram", `${alert}: ${n} needs a histogram`);
    }
  }
  // rate() and increase() only make sense on counters (or a histogram's buckets).
  for (const g of rules.groups) for (const r of g.rules) for (const m of r.expr.matchAll(/\b(?:rate|increase)\((lvsflow_[a-z_]+)/g)) {
    const n = m[1]!;
    assert.ok(n.endsWith("_bucket") || have.get(n) === "counter", `${r.alert}: rate/increase of ${n}, a ${have.get(base(n))}`);
  }
});

test("the metrics the issue asks for exist: checks run/failed, check latency, decisions, apply latency, failovers, term, bus/Redis state, events rejected", async () => {
  const have = await registered();
  const want: [string, string][] = [
    ["lvsflow_prober_checks_total", "counter"], ["lvsflow_prober_check_duration_seconds", "histogram"],
    ["lvsflow_controller_decisions_total", "counter"], ["lvsflow_health_to_applied_seconds", "histogram"],
    ["lvsflow_executor_apply_seconds", "histogram"], ["lvsflow_failovers_total", "counter"], ["lvsflow_controller_term", "gauge"],
    ["lvsflow_bus_connected", "gauge"], ["lvsflow_redis_connected", "gauge"], ["lvsflow_events_rejected_total", "counter"],
    ["lvsflow_executor_active_connections", "gauge"], ["lvsflow_operator_commands_total", "counter"],
  ];
  for (const [n, type] of want) assert.equal(have.get(n), type, `${n} (${type})`);
});
