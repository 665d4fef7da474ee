// Schedules the checks of every (virtual service, real server) pair and keeps their results.
// Each target runs on its own fixed grid (first slot at a random jitter, then every interval), so
// checks spread out instead of firing in bursts, and one slow real never delays another (unlike
// ldirectord's serial loop, reference §1.8). The clock is injected so tests can drive time.
import { realId } from "../../shared/schemas/config.ts";
import { SlotHeap } from "./slot-heap.ts";
import { checkBudgetMs, checkLabel, createCheckRunner, type CheckOutcome, type CheckTarget } from "./checks.ts";

export type CheckRunner = (target: CheckTarget, signal: AbortSignal) => Promise<CheckOutcome>;

export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, Math.max(0, ms)),
  clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface ProbeResult {
  key: string;
  vs: string;
  real: string;
  check: string;
  ok: boolean;
  /** Consecutive results equal to `ok`, including this one. */
  streak: number;
  /** True when `ok` differs from the previous result (or this is the first one). */
  changed: boolean;
  previous: boolean | null;
  outcome: CheckOutcome;
  at: number;
  target: CheckTarget;
}

export interface TargetState {
  key: string;
  vs: string;
  real: string;
  ok: boolean | null;
  streak: number;
  /** Clock time of the last result, null before the first. */
  lastCheckAt: number | null;
  lastOutcome: CheckOutcome | null;
  /** Slots skipped because the previous check of this target was still running. */
  skipped: number;
}

export interface SchedulerOptions {
  onResult: (r: ProbeResult) => void;
  run?: CheckRunner;
  clock?: Clock;
  /** Returns [0,1): where in the first interval a target's first check lands. */
  random?: () => number;
  /** Grace after the timeout before a check that ignores its abort signal counts as failed. */
  graceMs?: number;
  /** Called after every check, also the quiet ones (for metrics). */
  onCheck?: (outcome: CheckOutcome, target: CheckTarget) => void;
  /** Called when a slot is skipped because the previous check still runs. */
  onSkip?: (key: string) => void;
  /** Called when a check starts, with how late it is against its slot (ms; for metrics). */
  onLaunch?: (key: string, lateMs: number) => void;
}

interface Slot {
  target: CheckTarget;
  /** Changes when the check definition changes: a new definition starts a fresh history. */
  signature: string;
  state: TargetState;
  nextAt: number;
  /** Position in the due-time heap; -1 when not queued. */
  heapIndex: number;
  seq: number;
  /** Bumped for every check and on removal, so a late result of an older run is ignored. */
  gen: number;
  inFlight: { gen: number; ac: AbortController; timers: unknown[] } | null;
}

/** Checks started per timer turn at most; the rest follow after pending I/O has been handled. */
const MAX_BATCH = 500;

export function targetKey(t: CheckTarget): string {
  return `${t.vs.id}|${realId(t.real)}`;
}

/** What the check of a target depends on; weight or thresholds do not reset the history. */
function signatureOf(t: CheckTarget): string {
  const { address, port, request, receive } = t.real;
  return JSON.stringify([t.vs.protocol, t.vs.check, address, port, request, receive]);
}

export class ProbeScheduler {
  private readonly slots = new Map<string, Slot>();
  private readonly run: CheckRunner;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly graceMs: number;
  private running = false;
  private readonly due = new SlotHeap<Slot>();
  private seq = 0;
  /** The one timer, armed for the earliest due slot, and when it fires. */
  private timer: unknown = null;
  private timerAt = Infinity;
  private firing = false;

  constructor(private readonly opts: SchedulerOptions) {
    this.run = opts.run ?? createCheckRunner();
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.graceMs = opts.graceMs ?? 100;
  }

  /**
   * Sets the targets: new ones are scheduled, gone or redefined ones cancelled, the rest kept.
   * `firstWithinMs` bounds where a new target's first check lands (default: anywhere in its first
   * interval); a takeover uses a short spread so inherited reals are checked soon.
   */
  setTargets(targets: CheckTarget[], opts: { firstWithinMs?: number } = {}): void {
    const wanted = new Map<string, CheckTarget>();
    for (const t of targets) wanted.set(targetKey(t), t);
    for (const [key, slot] of this.slots) {
      const t = wanted.get(key);
      if (!t || signatureOf(t) !== slot.signature) this.remove(key);
      else slot.target = t; // same check, maybe a new weight: keep history and grid
    }
    for (const [key, t] of wanted) {
      if (this.slots.has(key)) continue;
      const slot: Slot = {
        target: t, signature: signatureOf(t), nextAt: 0, heapIndex: -1, seq: this.seq++, gen: 0, inFlight: null,
        state: { key, vs: t.vs.id, real: realId(t.real), ok: null, streak: 0, lastCheckAt: null, lastOutcome: null, skipped: 0 },
      };
      this.slots.set(key, slot);
      if (this.running) this.plan(slot, opts.firstWithinMs);
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const slot of this.slots.values()) this.plan(slot);
  }

  /** Cancels every timer and aborts every running check; late results are dropped. */
  stop(): void {
    this.running = false;
    for (const slot of this.slots.values()) this.cancel(slot);
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  states(): TargetState[] {
    return [...this.slots.values()].map((s) => ({ ...s.state }));
  }

  get size(): number {
    return this.slots.size;
  }

  private remove(key: string): void {
    const slot = this.slots.get(key);
    if (!slot) return;
    this.cancel(slot);
    this.slots.delete(key);
  }

  private cancel(slot: Slot): void {
    this.due.remove(slot);
    slot.gen++;
    if (slot.inFlight) {
      for (const h of slot.inFlight.timers) this.clock.clearTimer(h);
      slot.inFlight.ac.abort(new Error("stopped"));
      slot.inFlight = null;
    }
  }

  /** First slot: a random point in the first interval, so many reals do not fire together. */
  private plan(slot: Slot, withinMs?: number): void {
    const intervalMs = slot.target.vs.check.interval * 1000;
    slot.nextAt = this.clock.now() + Math.floor(this.random() * Math.min(intervalMs, withinMs ?? intervalMs));
    this.arm(slot);
  }

  private arm(slot: Slot): void {
    this.due.push(slot);
    this.rearm();
  }

  /** Keeps the one timer on the earliest due slot. */
  private rearm(): void {
    const top = this.due.peek();
    if (!top || !this.running || this.firing) return;
    if (this.timer !== null && this.timerAt <= top.nextAt) return;
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timerAt = top.nextAt;
    this.timer = this.clock.setTimer(() => this.fire(), top.nextAt - this.clock.now());
  }

  /**
   * Starts every due slot, at most MAX_BATCH per turn: a backlog is worked off in turns with I/O
   * in between (connects complete, results get recorded) instead of one long blocking burst.
   */
  private fire(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    this.firing = true;
    try {
      for (let n = 0; n < MAX_BATCH; n++) {
        const top = this.due.peek();
        if (!top || top.nextAt > now || !this.running) break;
        this.due.pop();
        this.tick(top);
      }
    } finally {
      this.firing = false;
    }
    this.rearm();
  }

  private tick(slot: Slot): void {
    if (!this.running || this.slots.get(slot.state.key) !== slot) return;
    const intervalMs = slot.target.vs.check.interval * 1000;
    const now = this.clock.now();
    const lateMs = now - slot.nextAt;
    // Drift-free grid: the next slot follows the planned one, not the moment the timer fired.
    // Slots already missed (a stalled event loop) are skipped rather than run in a burst.
    slot.nextAt += intervalMs;
    while (slot.nextAt <= now) slot.nextAt += intervalMs;
    this.arm(slot);
    if (slot.inFlight) {
      // The previous check still runs (timeout > interval): skip this slot instead of piling up.
      slot.state.skipped++;
      this.opts.onSkip?.(slot.state.key);
      return;
    }
    try { this.opts.onLaunch?.(slot.state.key, lateMs); } catch { /* metrics must not break scheduling */ }
    this.launch(slot);
  }

  private launch(slot: Slot): void {
    const gen = ++slot.gen;
    const ac = new AbortController();
    // The whole budget of the check: every retry's timeout and the delays between them.
    const timeoutMs = checkBudgetMs(slot.target.vs.check);
    const flight = { gen, ac, timers: [] as unknown[] };
    slot.inFlight = flight;
    const settle = (o: CheckOutcome) => {
      if (slot.gen !== gen || slot.inFlight !== flight) return; // stopped, removed or already settled
      for (const h of flight.timers) this.clock.clearTimer(h);
      slot.inFlight = null;
      this.record(slot, o);
    };
    // The check gets an abort at its timeout; if it still has not settled a little later, it is
    // recorded as failed anyway so a misbehaving check can never stall this target's schedule.
    // One timer per check (thousands run per second): the grace timer is armed only on overrun.
    flight.timers.push(this.clock.setTimer(() => {
      ac.abort(new Error(`timeout after ${timeoutMs / 1000}s`));
      if (slot.inFlight === flight) flight.timers.push(this.clock.setTimer(() => settle(failed(`no result within the ${timeoutMs / 1000}s timeout`, timeoutMs + this.graceMs)), this.graceMs));
    }, timeoutMs));
    let p: Promise<CheckOutcome>;
    try {
      p = Promise.resolve(this.run(slot.target, ac.signal));
    } catch (e) {
      p = Promise.resolve(failed(`check threw: ${String(e)}`, 0));
    }
    p.then(settle, (e: unknown) => settle(failed(`check threw: ${e instanceof Error ? e.message : String(e)}`, 0)));
  }

  private record(slot: Slot, outcome: CheckOutcome): void {
    const s = slot.state;
    const previous = s.ok;
    const changed = previous !== outcome.ok;
    s.streak = changed ? 1 : s.streak + 1;
    s.ok = outcome.ok;
    s.lastCheckAt = this.clock.now();
    s.lastOutcome = outcome;
    const c = slot.target.vs.check;
    try { this.opts.onCheck?.(outcome, slot.target); } catch { /* metrics must not break scheduling */ }
    // Quiet once the streak is past what any consumer counts (failurecount / rise count):
    // a steady real then costs no bus traffic; the periodic summary still shows it.
    if (!changed && s.streak > Math.max(c.failureCount, c.riseCount)) return;
    const r: ProbeResult = {
      key: s.key, vs: s.vs, real: s.real, check: checkLabel(c), ok: outcome.ok, streak: s.streak,
      changed, previous, outcome, at: s.lastCheckAt, target: slot.target,
    };
    try {
      this.opts.onResult(r);
    } catch {
      // A failing consumer must not break scheduling; the service logs in its own callback.
    }
  }
}

function failed(error: string, latencyMs: number): CheckOutcome {
  return { ok: false, latencyMs, error, httpStatus: null, matched: null };
}
