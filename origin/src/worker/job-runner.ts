/**
 * Runs delivery jobs that arrive over the links, at most `capacity` at a time.
 *
 * At-least-once on the wire means a job id can arrive twice (a re-sent frame, a reconnect). The runner
 * keeps the ids it is running and the results of recently finished ones: a repeat of a running job is
 * ignored, a repeat of a finished one gets its stored result again, so nothing is delivered twice
 * because of the link itself.
 */
import type { DeliveryJob, RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { EdgeLink } from "../link/edge-link.ts";
import type { Metrics } from "../ops/metrics.ts";

export interface JobRunnerOptions {
  capacity: number;
  deliver: (job: DeliveryJob) => Promise<RecipientOutcome[]>;
  metrics: Metrics;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** How many finished job ids to remember for de-duplication. */
  rememberFinished?: number;
}

interface Queued {
  job: DeliveryJob;
  link: EdgeLink;
  receivedAt: number;
}

export class JobRunner {
  private readonly running = new Set<string>();
  private readonly finished = new Map<string, RecipientOutcome[]>();
  private readonly queue: Queued[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: JobRunnerOptions) {}

  get inFlight(): number {
    return this.running.size + this.queue.length;
  }

  freeCapacity(): number {
    return Math.max(0, this.opts.capacity - this.inFlight);
  }

  accept(jobs: DeliveryJob[], link: EdgeLink): void {
    const fresh: string[] = [];
    for (const job of jobs) {
      const done = this.finished.get(job.jobId);
      if (done) {
        link.sendResult(resultFrame(job, done));
        continue;
      }
      if (this.running.has(job.jobId) || this.queue.some((q) => q.job.jobId === job.jobId)) continue;
      fresh.push(job.jobId);
      this.queue.push({ job, link, receivedAt: Date.now() });
    }
    link.ack(fresh);
    this.pump();
  }

  /** Resolves when nothing is queued or running (used by the SIGTERM drain). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running.size < this.opts.capacity && this.queue.length > 0) {
      const next = this.queue.shift()!;
      this.running.add(next.job.jobId);
      this.opts.metrics.inFlight.set(this.running.size);
      void this.run(next);
    }
  }

  private async run({ job, link, receivedAt }: Queued): Promise<void> {
    const started = Date.now();
    let outcomes: RecipientOutcome[];
    try {
      outcomes = await this.opts.deliver(job);
    } catch (err) {
      // The engine is built never to throw; if it does anyway, the edge retries the job later.
      this.opts.log("error", "delivery threw", { jobId: job.jobId, error: String(err) });
      outcomes = job.recipients.map((recipient) => ({
        recipient,
        status: "deferred",
        response: `origin error: ${String(err)}`,
      }));
    }
    this.remember(job.jobId, outcomes);
    this.running.delete(job.jobId);
    for (const o of outcomes) this.opts.metrics.outcomes.inc({ status: o.status });
    this.opts.metrics.jobSeconds.observe((Date.now() - started) / 1000);
    this.opts.metrics.queueWaitSeconds.observe((started - receivedAt) / 1000);
    this.opts.metrics.inFlight.set(this.running.size);
    link.sendResult(resultFrame(job, outcomes));
    this.pump();
    if (this.inFlight === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private remember(jobId: string, outcomes: RecipientOutcome[]): void {
    this.finished.set(jobId, outcomes);
    const limit = this.opts.rememberFinished ?? 10_000;
    if (this.finished.size > limit) {
      const oldest = this.finished.keys().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
  }
}

function resultFrame(job: DeliveryJob, recipients: RecipientOutcome[]) {
  return { type: "result" as const, jobId: job.jobId, messageId: job.messageId, attempt: job.attempt, recipients };
}
