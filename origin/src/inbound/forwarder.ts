/**
 * Carries inbound events (events.ts) to the edge and keeps each until the edge acknowledges it,
 * like delivery results (docs/link-protocol.md): re-sent when a link comes up and every
 * `resendIntervalMs` while unacknowledged; the edge records each event key once.
 *
 * Memory is bounded: at most `maxPending` events wait. `submit` refuses a message whose events do not
 * fit, and the SMTP server answers it with a 4xx, so the sending MTA keeps the report and retries: the
 * back-pressure ends at the sender's queue, and nothing is held here that was not accepted.
 *
 * Which link: the edge records an inbound event from any shard (it writes D1, which every shard
 * shares, and needs no outbox state), so the choice only spreads the load: a hash of the message id
 * over the links, or any link that is up when that one is not.
 */
import { MAX_INBOUND_EVENTS_PER_FRAME, type InboundEvent } from "../../../shared/link/protocol.ts";

export interface InboundLink {
  readonly connected: boolean;
  sendInbound(events: InboundEvent[]): boolean;
}

export interface InboundForwarderOptions {
  links: () => InboundLink[];
  /** INBOUND_MAX_PENDING_EVENTS. */
  maxPending: number;
  resendIntervalMs?: number;
  log?: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
}

interface Pending {
  event: InboundEvent;
  sentAt: number;
  waiters: (() => void)[];
}

export class InboundForwarder {
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  /** Events the edge acknowledged (tests and /metrics). */
  acknowledged = 0;

  constructor(private readonly opts: InboundForwarderOptions) {}

  get size(): number {
    return this.pending.size;
  }

  /** True when no more events fit: the SMTP server answers 452 before DATA. */
  get full(): boolean {
    return this.pending.size >= this.opts.maxPending;
  }

  start(): void {
    const every = this.opts.resendIntervalMs ?? 15_000;
    this.timer = setInterval(() => this.flush(every), every);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Queues events; the promise resolves when the edge has acknowledged all of them. Returns null
   * (nothing queued) when they do not fit in `maxPending`.
   */
  submit(events: InboundEvent[]): Promise<void> | null {
    const fresh = events.filter((e) => !this.pending.has(e.eventKey));
    if (this.pending.size + fresh.length > this.opts.maxPending) return null;
    const waits: Promise<void>[] = [];
    for (const event of events) {
      let p = this.pending.get(event.eventKey);
      if (!p) {
        p = { event, sentAt: 0, waiters: [] };
        this.pending.set(event.eventKey, p);
      }
      const entry = p;
      waits.push(new Promise<void>((resolve) => entry.waiters.push(resolve)));
    }
    this.send(fresh.map((e) => this.pending.get(e.eventKey)!));
    return Promise.all(waits).then(() => undefined);
  }

  acknowledge(eventKeys: string[]): void {
    for (const key of eventKeys) {
      const p = this.pending.get(key);
      if (!p) continue;
      this.pending.delete(key);
      this.acknowledged++;
      for (const w of p.waiters) w();
    }
  }

  /** A link came up: everything still unacknowledged goes again (the edge de-duplicates). */
  linkUp(): void {
    this.flush(0);
  }

  private flush(olderThanMs: number): void {
    const now = Date.now();
    this.send([...this.pending.values()].filter((p) => now - p.sentAt >= olderThanMs));
  }

  private send(entries: Pending[]): void {
    if (entries.length === 0) return;
    const links = this.opts.links();
    const up = links.filter((l) => l.connected);
    if (up.length === 0) return; // kept; sent when a link comes up
    const byLink = new Map<InboundLink, Pending[]>();
    for (const p of entries) {
      const preferred = links[spread(p.event.messageId) % links.length];
      const link = preferred?.connected ? preferred : up[spread(p.event.eventKey) % up.length]!;
      byLink.set(link, [...(byLink.get(link) ?? []), p]);
    }
    const now = Date.now();
    for (const [link, list] of byLink) {
      for (let i = 0; i < list.length; i += MAX_INBOUND_EVENTS_PER_FRAME) {
        const chunk = list.slice(i, i + MAX_INBOUND_EVENTS_PER_FRAME);
        if (!link.sendInbound(chunk.map((p) => p.event))) break;
        for (const p of chunk) p.sentAt = now;
      }
    }
  }
}

/** FNV-1a: cheap and even, like the edge's hash of message ids. */
function spread(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
