// NATS connection and typed publish/subscribe. Every inbound message is validated against the
// event schema; an invalid one is rejected, counted, logged and reported — never thrown.
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { Event, makeEvent, type EventOf, type EventType } from "./schemas/events.ts";
import { subjects } from "./subjects.ts";
import { metrics } from "./metrics.ts";
import { natsConnectOptions, scrubKnownSecrets, type NatsAuth } from "./secrets.ts";

export interface BusOptions {
  servers: string[];
  name: string;
  site: string;
  node: string;
  service: EventOf<"bus.rejected">["source"]["service"];
  log: Logger;
  user?: string;
  pass?: string;
  /** Credentials and TLS (shared/secrets.ts natsAuthFromEnv): nkey, user/password, CA, client certificate. */
  auth?: NatsAuth;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Bus {
  nc: NatsConnection | null = null;
  connected = false;
  private rejectedReports = 0;
  private listeners: ((up: boolean) => void)[] = [];
  private closedResolve!: () => void;
  readonly closed = new Promise<void>((r) => (this.closedResolve = r));

  constructor(readonly opts: BusOptions) {}

  /** Connects, retrying for ever: a service must come up (and stay up) while the bus is away. */
  async connect(): Promise<this> {
    const { log } = this.opts;
    this.nc = await connect({
      servers: this.opts.servers,
      name: this.opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      pingInterval: 2000,
      maxPingOut: 2,
      ...(this.opts.user ? { user: this.opts.user, pass: this.opts.pass } : {}),
      ...natsConnectOptions(this.opts.auth),
    });
    this.connected = true;
    metrics.busConnected.set(1);
    log.info({ server: this.nc.getServer() }, "bus connected");
    void (async () => {
      for await (const s of this.nc!.status()) {
        if (s.type === "disconnect") { this.connected = false; metrics.busConnected.set(0); log.warn("bus disconnected; keeping last state"); this.listeners.forEach((l) => l(false)); }
        else if (s.type === "reconnect") { this.connected = true; metrics.busConnected.set(1); log.info("bus reconnected"); this.listeners.forEach((l) => l(true)); }
        // The server refusing a publish or subscription (permissions) must be visible, not silent.
        else if (s.type === "error") log.error({ err: String(s.error) }, "bus error");
      }
    })();
    void this.nc.closed().then(() => { this.connected = false; this.closedResolve(); });
    return this;
  }

  /** Called with false when the connection drops and true when it is back. */
  onStatus(listener: (up: boolean) => void): void {
    this.listeners.push(listener);
  }

  publish(subject: string, ev: Event): void {
    // While disconnected, drop rather than buffer: a stale decision delivered late is worse than none.
    if (!this.nc || this.nc.isClosed() || !this.connected) return;
    try {
      // Safety net: a registered secret value never leaves the process inside an event.
      this.nc.publish(subject, enc.encode(scrubKnownSecrets(JSON.stringify(ev))));
      metrics.published.inc({ type: ev.type });
    } catch (e) {
      this.opts.log.warn({ err: String(e), subject }, "publish failed");
    }
  }

  /**
   * Subscribes and hands each valid event to `handler`. `types` limits what this subscriber
   * accepts: anything else on its subjects is rejected like malformed input.
   */
  subscribe<T extends EventType>(subject: string, types: readonly T[], handler: (ev: EventOf<T>, subject: string) => void | Promise<void>, queue?: string): Subscription {
    const sub = this.nc!.subscribe(subject, queue ? { queue } : {});
    void (async () => {
      try {
      for await (const m of sub) {
        let ev: Event;
        try {
          const parsed = Event.safeParse(JSON.parse(dec.decode(m.data)));
          if (!parsed.success) { this.reject(m.subject, parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")); continue; }
          ev = parsed.data;
        } catch (e) {
          this.reject(m.subject, `not JSON: ${String(e).slice(0, 120)}`);
          continue;
        }
        if (!(types as readonly string[]).includes(ev.type)) { this.reject(m.subject, `unexpected event type ${ev.type}`); continue; }
        try {
          await handler(ev as EventOf<T>, m.subject);
        } catch (e) {
          this.opts.log.error({ err: e instanceof Error ? e.stack : String(e), subject: m.subject, eventId: ev.id }, "handler failed");
        }
      }
      } catch (e) {
        // The server refused the subscription (permissions): say so loudly, never crash the service.
        this.opts.log.error({ err: String(e), subject }, "subscription ended by the server");
      }
    })();
    return sub;
  }

  private reject(subject: string, reason: string): void {
    metrics.rejected.inc({ subject: subject.split(".").slice(0, 3).join(".") });
    this.opts.log.warn({ subject, reason }, "rejected invalid event");
    // Report to the audit history, but bounded so a flood cannot become a flood of reports.
    if (this.rejectedReports++ < 100 || this.rejectedReports % 1000 === 0) {
      const { site, service, node } = this.opts;
      this.publish(subjects.rejected(site, service, node), makeEvent("bus.rejected", { subject, reason, service }, { source: { service, node } }));
    }
  }

  async close(): Promise<void> {
    if (this.nc && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc?.close());
  }
}
