/**
 * A few Prometheus metrics in the text exposition format (version 0.0.4). Hand-written because the
 * origin needs a handful of instruments, not a metrics library.
 */

type Labels = Record<string, string>;
const labelKey = (l: Labels) =>
  Object.entries(l)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "\\$&")}"`)
    .join(",");

class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${v}`);
    return lines.join("\n");
  }
}

class Gauge {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), value);
  }
  /** Drops a label set (a destination with no connection left), so the exposition stays small. */
  delete(labels: Labels = {}): void {
    this.values.delete(labelKey(labels));
  }
  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels));
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${v}`);
    return lines.join("\n");
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    this.buckets.forEach((b, i) => {
      if (v <= b) this.counts[i]!++;
    });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    );
    return lines.join("\n");
  }
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Message sizes, 1 KiB to the 20 MiB SUBMISSION_MAX_MESSAGE_BYTES default (and past it). */
const BYTES = [
  1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 10_485_760, 20_971_520, 41_943_040,
];

export function createMetrics() {
  return {
    inFlight: new Gauge("scaisend_origin_jobs_in_flight", "Delivery jobs being worked on"),
    linkUp: new Gauge("scaisend_origin_link_connected", "1 when the link to a hub shard is up"),
    outcomes: new Counter("scaisend_origin_recipient_outcomes_total", "Recipient outcomes by status"),
    jobSeconds: new Histogram("scaisend_origin_delivery_seconds", "Time to deliver one job", SECONDS),
    queueWaitSeconds: new Histogram(
      "scaisend_origin_queue_wait_seconds",
      "Time a job waited for a free slot",
      SECONDS,
    ),
    // Destination limits and warm-up (delivery/throttle.ts, delivery/warmup.ts; docs/operations.md).
    destinationConnections: new Gauge(
      "scaisend_origin_destination_connections",
      "SMTP transactions this node has in progress per destination domain (provider domains share one)",
    ),
    warmupAllowance: new Gauge(
      "scaisend_origin_warmup_allowance",
      "Today's warm-up allowance in recipients per sender (a domain, or * for this node)",
    ),
    warmupRemaining: new Gauge(
      "scaisend_origin_warmup_remaining",
      "Recipients left of today's warm-up allowance per sender, as of this node's last count",
    ),
    throttled: new Counter(
      "scaisend_origin_throttled_recipients_total",
      "Recipients deferred by the origin's own limits, by reason (rate, backoff, concurrency, warmup)",
    ),
    coordinatorDegraded: new Gauge(
      "scaisend_origin_coordinator_degraded",
      "1 while Redis does not answer and the per-destination limits are kept per node",
    ),
    ipPoolMissing: new Counter(
      "scaisend_origin_ip_pool_missing_jobs_total",
      "Jobs deferred because they name an IP pool this node does not have (another node takes them), by pool",
    ),
    inboundMessages: new Counter(
      "scaisend_origin_inbound_messages_total",
      "Inbound bounce and complaint messages by kind (dsn, arf, auto_reply, …) and outcome (recorded, ignored, deferred, refused)",
    ),
    // SMTP submission (submission/server.ts; docs/operations.md#health-readiness-and-metrics). Labels
    // are the listener (starttls, implicit_tls), a result or a reply code: never a key or an address.
    submissionConnections: new Gauge(
      "scaisend_origin_submission_connections",
      "Open SMTP submission connections per listener (starttls, implicit_tls)",
    ),
    submissionConnectionsTotal: new Counter(
      "scaisend_origin_submission_connections_total",
      "SMTP submission connections accepted per listener (starttls, implicit_tls)",
    ),
    submissionAuth: new Counter(
      "scaisend_origin_submission_auth_total",
      "SMTP submission AUTH attempts per listener by result (success, failure, error, limited)",
    ),
    submissionMessages: new Counter(
      "scaisend_origin_submission_messages_total",
      "SMTP submission messages accepted (answered 250 after the edge's 202)",
    ),
    submissionRefusals: new Counter(
      "scaisend_origin_submission_refusals_total",
      "4xx and 5xx replies of the SMTP submission listeners by reply code",
    ),
    submissionMessageBytes: new Histogram(
      "scaisend_origin_submission_message_size_bytes",
      "Size of each message received in DATA, accepted or not",
      BYTES,
    ),
    submissionAcceptSeconds: new Histogram(
      "scaisend_origin_submission_accept_seconds",
      "Time from the end of DATA to the edge's 202 for an accepted message",
      SECONDS,
    ),
    render(): string {
      return (
        [
          this.inFlight,
          this.linkUp,
          this.outcomes,
          this.jobSeconds,
          this.queueWaitSeconds,
          this.destinationConnections,
          this.warmupAllowance,
          this.warmupRemaining,
          this.throttled,
          this.coordinatorDegraded,
          this.inboundMessages,
          this.ipPoolMissing,
          this.submissionConnections,
          this.submissionConnectionsTotal,
          this.submissionAuth,
          this.submissionMessages,
          this.submissionRefusals,
          this.submissionMessageBytes,
          this.submissionAcceptSeconds,
        ]
          .map((m) => m.render())
          .join("\n") + "\n"
      );
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** What the submission listeners record (submission/server.ts). */
export type SubmissionMetrics = Pick<
  Metrics,
  | "submissionConnections"
  | "submissionConnectionsTotal"
  | "submissionAuth"
  | "submissionMessages"
  | "submissionRefusals"
  | "submissionMessageBytes"
  | "submissionAcceptSeconds"
>;
