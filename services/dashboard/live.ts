// A live ClusterState: everything of a site on the bus folded in as it arrives, plus a status
// query to every controller (request on query.view; each replies with controller.view) so the
// picture is complete without waiting for the next health summary. Messages that fail the event
// schema are skipped and counted, like everywhere else.
import { createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Model } from "../../shared/schemas/config.ts";
import { Event } from "../../shared/schemas/events.ts";
import { subjects } from "../../shared/subjects.ts";
import { metrics } from "../../shared/metrics.ts";
import { applyEvent, emptyState, type ClusterState } from "./cluster-view.ts";

export interface LiveOptions {
  /** Re-query the controllers this often (0 = only when query() is called). */
  queryEveryMs?: number;
  /** Called for every valid event after it was folded in; `significant` = an operator would see a change. */
  onEvent?: (ev: Event, significant: boolean) => void;
}

const dec = new TextDecoder();
/** The query's body: JSON, so careless subscribers of lvsflow.<site>.> can at least parse it. */
const QUERY = new TextEncoder().encode("{}");

export class LiveCluster {
  readonly state: ClusterState;
  private subs: Subscription[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inbox = createInbox();

  constructor(private nc: NatsConnection, readonly site: string, model: Model | null, private o: LiveOptions = {}) {
    this.state = emptyState(site, model);
  }

  start(): this {
    const query = subjects.queryView(this.site);
    const handle = (data: Uint8Array, subject: string) => {
      if (subject === query) return; // another viewer's status query, not an event
      let ev: Event;
      try {
        const p = Event.safeParse(JSON.parse(dec.decode(data)));
        if (!p.success) { metrics.rejected.inc({ subject: `lvsflow.${this.site}` }); return; }
        ev = p.data;
      } catch { metrics.rejected.inc({ subject: `lvsflow.${this.site}` }); return; }
      const significant = applyEvent(this.state, ev, Date.now());
      this.o.onEvent?.(ev, significant);
    };
    for (const subject of [subjects.all(this.site), this.inbox]) {
      const sub = this.nc.subscribe(subject);
      this.subs.push(sub);
      void (async () => { for await (const m of sub) handle(m.data, m.subject); })();
    }
    this.query();
    if (this.o.queryEveryMs) this.timer = setInterval(() => this.query(), this.o.queryEveryMs);
    return this;
  }

  /** Asks every controller for its view; replies arrive on our inbox and are folded in. */
  query(): void {
    if (this.nc.isClosed()) return;
    try { this.nc.publish(subjects.queryView(this.site), QUERY, { reply: this.inbox }); } catch { /* reconnecting */ }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const s of this.subs) s.unsubscribe();
  }
}
