// The recorder's durable buffer: a JetStream stream (file storage, nats-server 2.9) that captures
// every recorded subject as it is published, whether or not the recorder or Redis is up. The
// recorder reads it from the sequence after its Redis cursor; publishers never wait for it.
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type ConsumerMessages } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { recordedSubjects } from "../../shared/subjects.ts";
import type { BufferRetention } from "./retention.ts";

export function bufferStreamName(site: string): string {
  return `LVSFLOW_RECORD_${site.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

export interface BufferState { firstSeq: number; lastSeq: number; messages: number; bytes: number }

export class DurableBuffer {
  private constructor(private readonly nc: NatsConnection, private readonly jsm: JetStreamManager, readonly stream: string, private readonly log: Logger) {}

  /** Creates or updates the stream; throws when JetStream is not available. */
  static async open(nc: NatsConnection, site: string, retention: BufferRetention, log: Logger): Promise<DurableBuffer> {
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    const name = bufferStreamName(site);
    const cfg = {
      name,
      subjects: recordedSubjects(site),
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: nanos(retention.maxAgeMs),
      max_bytes: retention.maxBytes,
      num_replicas: retention.replicas,
      description: "lvsflow recorder buffer: audited events and controller input journals on their way to Redis",
    };
    try {
      const info = await jsm.streams.info(name);
      const c = info.config;
      if (JSON.stringify([...c.subjects ?? []].sort()) !== JSON.stringify([...cfg.subjects].sort()) || c.max_age !== cfg.max_age || c.max_bytes !== cfg.max_bytes) {
        await jsm.streams.update(name, { subjects: cfg.subjects, max_age: cfg.max_age, max_bytes: cfg.max_bytes, discard: cfg.discard });
        log.info({ stream: name }, "updated the buffer stream's subjects and limits");
      }
    } catch (e) {
      if (!/stream not found/i.test(String(e))) throw e;
      await jsm.streams.add(cfg);
      log.info({ stream: name, subjects: cfg.subjects }, "created the buffer stream");
    }
    return new DurableBuffer(nc, jsm, name, log);
  }

  async state(): Promise<BufferState> {
    const s = (await this.jsm.streams.info(this.stream)).state;
    return { firstSeq: s.first_seq, lastSeq: s.last_seq, messages: s.messages, bytes: s.bytes };
  }

  /**
   * Messages from `startSeq` on, in stream order, through an ephemeral consumer without acks
   * (the Redis cursor is the acknowledgement). The consumer is removed when `stop()` is called,
   * or by the server after 30 s of inactivity.
   */
  async read(startSeq: number, batch = 500): Promise<{ messages: ConsumerMessages; stop: () => Promise<void> }> {
    const ci = await this.jsm.consumers.add(this.stream, {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: startSeq,
      inactive_threshold: nanos(30_000),
      mem_storage: true,
      description: "lvsflow recorder",
    });
    const consumer = await jetstream(this.nc).consumers.get(this.stream, ci.name);
    const messages = await consumer.consume({ max_messages: batch, idle_heartbeat: 2000, expires: 10_000 });
    const stop = async () => {
      messages.stop();
      await this.jsm.consumers.delete(this.stream, ci.name).catch(() => undefined);
    };
    return { messages, stop };
  }
}
