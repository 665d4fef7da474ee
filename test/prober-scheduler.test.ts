// ProbeScheduler with a fake clock and a scripted check runner: timing, streaks, quiet periods,
// overruns, hard deadlines, stop and reconfiguration — no sockets, no real time.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { z } from "zod";
import { VirtualService } from "../shared/schemas/config.ts";
import type { CheckOutcome, CheckTarget } from "../services/prober/checks.ts";
import { ProbeScheduler, type Clock, type ProbeResult, type CheckRunner } from "../services/prober/scheduler.ts";

type VsInput = z.input<typeof VirtualService>;
const flush = () => new Promise<void>((r) => setImmediate(r));

class FakeClock implements Clock {
  t = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void; id: number }>();
  now() { return this.t; }
  setTimer(fn: () => void, ms: number) { const id = ++this.seq; this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id }); return id; }
  clearTimer(h: unknown) { this.timers.delete(h as number); }
  /** Runs every timer due up to now+ms in time order, letting promise callbacks run in between. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (let guard = 0; guard < 100_000; guard++) {
      await flush();
      let next: { at: number; fn: () => void; id: number } | undefined;
      for (const x of this.timers.values()) if (x.at <= end && (!next || x.at < next.at || (x.at === next.at && x.id < next.id))) next = x;
      if (!next) break;
      this.t = next.at;
      this.timers.delete(next.id);
      next.fn();
    }
    this.t = end;
    await flush();
  }
}

function vs(check: Partial<VsInput["check"]> = {}, reals: { address: string; port: number; weight?: number }[] = [{ address: "192.0.2.1", port: 80 }], id = "tcp:198.51.100.50:80"): Vs {
  return VirtualService.parse({
    id, protocol: "tcp", address: "198.51.100.50", port: 80, fwmark: null, family: "ipv4", scheduler: "wlc",
    persistence: null, quiescent: false, fallback: null,
    check: { type: "connect", service: "none", request: "/", receive: "", port: null, interval: 1, timeout: 0.5, failureCount: 3, ...check },
    reals: reals.map((r) => ({ forwarding: "masq", weight: 1, ...r })),
  });
}
type Vs = z.infer<typeof VirtualService>;
const targets = (v: Vs): CheckTarget[] => v.reals.map((real) => ({ vs: v, real }));
const outcome = (ok: boolean, error: string | null = ok ? null : "down"): CheckOutcome => ({ ok, latencyMs: 1, error, httpStatus: null, matched: null });

function setup(run: CheckRunner, random = () => 0.5) {
  const clock = new FakeClock();
  const results: ProbeResult[] = [];
  const checks: { at: number; key: string }[] = [];
  let skips = 0;
  const sched = new ProbeScheduler({
    clock, random, onResult: (r) => results.push(r), onSkip: () => skips++,
    run: (t, s) => { checks.push({ at: clock.now(), key: `${t.real.address}:${t.real.port}` }); return run(t, s); },
  });
  return { clock, results, checks, sched, skips: () => skips };
}

test("first check at the jitter, then a drift-free grid even when checks take time", async () => {
  let clock!: FakeClock;
  const env = setup((_t, _s) => new Promise((r) => clock.setTimer(() => r(outcome(true)), 300)));
  clock = env.clock;
  env.sched.setTargets(targets(vs()));
  env.sched.start();
  await clock.advance(3600);
  assert.deepEqual(env.checks.map((c) => c.at), [500, 1500, 2500, 3500]);
  // results land 300 ms after each start
  assert.deepEqual(env.results.map((r) => r.at), [800, 1800, 2800]);
  env.sched.stop();
  // the check started at 3500 is still running: its late result and any later slot are dropped
  await clock.advance(5_000);
  assert.equal(env.checks.length, 4);
  assert.equal(env.results.length, 3);
  assert.equal(clock.timers.size, 0, "stop leaves no timer behind");
});

test("results are published on change and while streak <= max(failureCount, riseCount), quiet otherwise", async () => {
  let up = true;
  const env = setup(async () => outcome(up));
  env.sched.setTargets(targets(vs({ failureCount: 3, riseCount: 2 })));
  env.sched.start();
  await env.clock.advance(6_000); // 6 checks up
  up = false;
  await env.clock.advance(5_000); // 5 checks down
  up = true;
  await env.clock.advance(1_000); // 1 check up
  env.sched.stop();
  assert.deepEqual(env.results.map((r) => [r.ok, r.streak, r.changed]), [
    [true, 1, true], [true, 2, false], [true, 3, false],
    [false, 1, true], [false, 2, false], [false, 3, false],
    [true, 1, true],
  ]);
  assert.equal(env.results[0].previous, null);
  assert.equal(env.results[3].previous, true);
  const [st] = env.sched.states();
  assert.deepEqual([st.ok, st.streak, st.lastCheckAt], [true, 1, 11_500]);
});

test("a check longer than the interval skips slots instead of piling up; abort at the timeout", async () => {
  const signals: AbortSignal[] = [];
  const env = setup((_t, s) => new Promise((r) => { signals.push(s); s.addEventListener("abort", () => r(outcome(false, String((s.reason as Error).message)))); }));
  env.sched.setTargets(targets(vs({ interval: 1, timeout: 2.5 })));
  env.sched.start();
  await env.clock.advance(4_000);
  // starts at 500; slots 1500 and 2500 skipped (still running); abort at 3000; next start 3500
  assert.deepEqual(env.checks.map((c) => c.at), [500, 3500]);
  assert.equal(env.skips(), 2);
  assert.equal(env.results[0].outcome.error, "timeout after 2.5s");
  assert.equal(env.results[0].at, 3000);
  assert.equal(env.sched.states()[0].skipped, 2);
  env.sched.stop();
  assert.equal(signals[1].aborted, true, "stop aborts the running check");
});

test("a check that ignores its abort is recorded failed at timeout + grace", async () => {
  let calls = 0;
  const env = setup(() => (++calls === 1 ? new Promise<CheckOutcome>(() => {}) : Promise.resolve(outcome(true))));
  env.sched.setTargets(targets(vs({ interval: 1, timeout: 0.5 })));
  env.sched.start();
  await env.clock.advance(2_000);
  env.sched.stop();
  assert.equal(env.results[0].ok, false);
  assert.equal(env.results[0].at, 500 + 500 + 100);
  assert.match(env.results[0].outcome.error ?? "", /no result within the 0.5s timeout/);
  assert.deepEqual(env.results.map((r) => r.ok), [false, true], "the schedule goes on");
});

test("a runner that throws or rejects gives a failed result", async () => {
  let n = 0;
  const env = setup((() => { n++; if (n === 1) throw new Error("sync boom"); return Promise.reject(new Error("async boom")); }) as CheckRunner);
  env.sched.setTargets(targets(vs()));
  env.sched.start();
  await env.clock.advance(2_000);
  env.sched.stop();
  assert.deepEqual(env.results.map((r) => [r.ok, r.streak, r.outcome.error]), [[false, 1, "check threw: Error: sync boom"], [false, 2, "check threw: async boom"]]);
});

test("stop drops late results; a consumer that throws does not break scheduling", async () => {
  let resolveLate!: (o: CheckOutcome) => void;
  const clock = new FakeClock();
  const seen: ProbeResult[] = [];
  const sched = new ProbeScheduler({
    clock, random: () => 0,
    run: () => new Promise((r) => (resolveLate = r)),
    onResult: (r) => { seen.push(r); throw new Error("consumer bug"); },
  });
  sched.setTargets(targets(vs({ timeout: 5, interval: 10 })));
  sched.start();
  await clock.advance(100);
  sched.stop();
  resolveLate(outcome(true));
  await clock.advance(10_000);
  assert.equal(seen.length, 0);
  assert.equal(clock.timers.size, 0);

  let calls = 0;
  const clock2 = new FakeClock();
  const s2 = new ProbeScheduler({ clock: clock2, random: () => 0, run: async () => outcome(true), onResult: () => { calls++; throw new Error("x"); } });
  s2.setTargets(targets(vs()));
  s2.start();
  await clock2.advance(3_000);
  s2.stop();
  assert.equal(calls, 3);
});

test("setTargets keeps history of unchanged checks, resets redefined ones, cancels removed ones", async () => {
  const env = setup(async (t) => outcome(t.real.address !== "192.0.2.2"), () => 0);
  const reals = [{ address: "192.0.2.1", port: 80 }, { address: "192.0.2.2", port: 80 }, { address: "192.0.2.3", port: 80 }];
  env.sched.setTargets(targets(vs({}, reals)));
  env.sched.start();
  await env.clock.advance(2_500); // checks at 0, 1000, 2000
  const byReal = () => Object.fromEntries(env.sched.states().map((s) => [s.real, s.streak]));
  assert.deepEqual(byReal(), { "192.0.2.1:80": 3, "192.0.2.2:80": 3, "192.0.2.3:80": 3 });
  // .1 only changes weight (history kept), .2 gets a different check port (history reset), .3 is removed, .4 is new
  const next = vs({}, [{ address: "192.0.2.1", port: 80, weight: 5 }, { address: "192.0.2.2", port: 8080 }, { address: "192.0.2.4", port: 80 }]);
  env.sched.setTargets(targets(next));
  assert.equal(env.sched.size, 3);
  assert.deepEqual(byReal(), { "192.0.2.1:80": 3, "192.0.2.2:8080": 0, "192.0.2.4:80": 0 });
  const before = env.checks.length;
  await env.clock.advance(900); // new targets: first check at once (jitter 0); .1 stays on its grid (3000)
  assert.deepEqual(byReal(), { "192.0.2.1:80": 4, "192.0.2.2:8080": 1, "192.0.2.4:80": 1 });
  assert.ok(!env.checks.slice(before).some((c) => c.key === "192.0.2.3:80"), "removed real is no longer checked");
  env.sched.stop();
});

test("several virtual services with the same real are tracked separately", async () => {
  const env = setup(async () => outcome(true), () => 0);
  env.sched.setTargets([...targets(vs()), ...targets(vs({}, undefined, "tcp:198.51.100.51:80"))]);
  env.sched.start();
  await env.clock.advance(500);
  env.sched.stop();
  assert.deepEqual(env.results.map((r) => r.key).sort(), ["tcp:198.51.100.50:80|192.0.2.1:80", "tcp:198.51.100.51:80|192.0.2.1:80"]);
});

test("one timer for many reals: 2,000 due at once start in batches, all at their slot, none twice", async () => {
  const reals = Array.from({ length: 2000 }, (_, i) => ({ address: `192.0.2.${1 + (i % 200)}`, port: 1000 + i }));
  const env = setup(() => Promise.resolve(outcome(true)), () => 0.25); // every first slot at 250 ms
  env.sched.setTargets(targets(vs({ interval: 1, timeout: 0.5 }, reals)));
  env.sched.start();
  // Only one timer is pending whatever the number of reals.
  assert.equal(env.clock.timers.size, 1);
  await env.clock.advance(1_300);
  const firstRound = env.checks.filter((c) => c.at < 1000);
  assert.equal(firstRound.length, 2000);
  assert.ok(firstRound.every((c) => c.at === 250), "a batch started late");
  assert.equal(new Set(firstRound.map((c) => c.key)).size, 2000);
  assert.equal(env.checks.filter((c) => c.at === 1250).length, 2000);
  env.sched.stop();
  assert.equal(env.clock.timers.size, 0, "stop leaves no timer behind");
});
