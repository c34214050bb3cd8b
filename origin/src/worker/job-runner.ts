/**
 * Runs delivery jobs that arrive over the links, at most `capacity` at a time.
 *
 * At-least-once on the wire means a job id can arrive twice (a re-sent frame, a reconnect). The runner
 * keeps the ids it is running and the results of recently finished ones: a repeat of a running job is
 * ignored, a repeat of a finished one gets its stored result again, so nothing is delivered twice
 * because of the link itself.
 *
 * Across nodes (`coordination`, Redis when several nodes run) the unit is the message, not the job id:
 * the edge gives every dispatch a new id (`<messageId>.<attempt>`), so a message whose result was lost
 * (its node's link was down past the lease) comes back under a NEW id, possibly to another node.
 *  - Before delivering, a node claims the message id (SET NX, JOB_CLAIM_TTL_MS). Holding the claim, it
 *    reads the final outcomes (delivered/bounced/failed) stored by earlier attempts, delivers only the
 *    recipients without one, and stores the merged final outcomes with `completeJob`, which also drops
 *    the claim. Recipients already final get their stored outcome again instead of a second delivery.
 *    Deferred outcomes are not stored: the edge's retries carry exactly those recipients, and they must
 *    be tried again.
 *  - A message claimed by another node (or by this one, under an older attempt) is NOT run, and nothing
 *    is reported for it: its credit goes back to the edge, and the edge's lease brings the job back
 *    (LINK_LEASE_MS) — by then the holder has usually stored its outcomes, which the next attempt reuses.
 *    Reporting "deferred" instead would be wrong while the holder may be delivering right now, and
 *    waiting here would tie up capacity on a job another node owns. The cost is latency, never a loss:
 *    a holder that died stops blocking when its claim expires.
 *  - If the coordinator cannot be reached the job is reported deferred (the edge retries later) rather
 *    than delivered unguarded.
 */
import type { Coordinator } from "../coord/index.ts";
import {
  RecipientOutcomeSchema,
  type DeliveryJob,
  type RecipientOutcome,
} from "../../../shared/link/protocol.ts";
import type { EdgeLink } from "../link/edge-link.ts";
import type { Metrics } from "../ops/metrics.ts";

export interface JobRunnerOptions {
  capacity: number;
  deliver: (job: DeliveryJob) => Promise<RecipientOutcome[]>;
  metrics: Metrics;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** How many finished job ids to remember for de-duplication. */
  rememberFinished?: number;
  /** Message claims and final outcomes shared with other nodes; without it only the memory above is used. */
  coordination?: {
    coordinator: Coordinator;
    nodeId: string;
    /** Should exceed the longest delivery, or a second node may start the same message. */
    claimTtlMs: number;
    /** How long final outcomes stay available to later attempts. */
    resultTtlMs: number;
  };
}

const FINAL = new Set<RecipientOutcome["status"]>(["delivered", "bounced", "failed"]);

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
    const coordination = this.opts.coordination;
    const outcomes = coordination ? await this.runCoordinated(job, coordination) : await this.deliver(job);
    this.running.delete(job.jobId);
    this.opts.metrics.inFlight.set(this.running.size);
    if (outcomes === null) {
      // Claimed elsewhere: report nothing (see the header), but give the edge its credit back.
      link.grantCredits(1);
    } else {
      this.remember(job.jobId, outcomes);
      for (const o of outcomes) this.opts.metrics.outcomes.inc({ status: o.status });
      this.opts.metrics.jobSeconds.observe((Date.now() - started) / 1000);
      this.opts.metrics.queueWaitSeconds.observe((started - receivedAt) / 1000);
      link.sendResult(resultFrame(job, outcomes));
    }
    this.pump();
    if (this.inFlight === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async deliver(job: DeliveryJob): Promise<RecipientOutcome[]> {
    try {
      return await this.opts.deliver(job);
    } catch (err) {
      // The engine is built never to throw; if it does anyway, the edge retries the job later.
      this.opts.log("error", "delivery threw", { jobId: job.jobId, error: String(err) });
      return deferAll(job, `origin error: ${String(err)}`);
    }
  }

  /** Outcomes to report, or null when another holder owns the message (report nothing). */
  private async runCoordinated(
    job: DeliveryJob,
    c: NonNullable<JobRunnerOptions["coordination"]>,
  ): Promise<RecipientOutcome[] | null> {
    const key = job.messageId;
    const inOrder = (known: Map<string, RecipientOutcome>) =>
      job.recipients.map(
        (r) => known.get(r) ?? { recipient: r, status: "deferred" as const, response: "no outcome recorded" },
      );
    let settled: Map<string, RecipientOutcome>;
    try {
      // Fast path: every recipient already has a final outcome (a re-dispatch after a lost result).
      settled = this.parseFinal(await c.coordinator.getCompletedJob(key), job);
      if (job.recipients.every((r) => settled.has(r))) {
        this.opts.log("info", "job already completed; reporting the stored outcomes", { jobId: job.jobId });
        return inOrder(settled);
      }
      if (!(await c.coordinator.claimJob(key, c.nodeId, c.claimTtlMs))) {
        this.opts.log("info", "message claimed by another worker; leaving it to the edge's lease", {
          jobId: job.jobId,
        });
        return null;
      }
      // Read again under the claim: the previous holder may have completed between the two calls.
      settled = this.parseFinal(await c.coordinator.getCompletedJob(key), job);
    } catch (err) {
      this.opts.log("warn", "coordinator unavailable; deferring job", {
        jobId: job.jobId,
        error: String(err),
      });
      return deferAll(job, `origin coordination unavailable: ${String(err)}`);
    }

    const pending = [...new Set(job.recipients)].filter((r) => !settled.has(r));
    const fresh = pending.length > 0 ? await this.deliver({ ...job, recipients: pending }) : [];
    for (const o of fresh) if (FINAL.has(o.status)) settled.set(o.recipient, o);
    try {
      await c.coordinator.completeJob(key, JSON.stringify([...settled.values()]), c.resultTtlMs);
    } catch (err) {
      // The delivery happened; report it. The claim expires by its TTL.
      this.opts.log("error", "could not store job outcomes", { jobId: job.jobId, error: String(err) });
    }
    const known = new Map(settled);
    for (const o of fresh) if (!known.has(o.recipient)) known.set(o.recipient, o);
    return inOrder(known);
  }

  private parseFinal(json: string | null, job: DeliveryJob): Map<string, RecipientOutcome> {
    const settled = new Map<string, RecipientOutcome>();
    if (json === null) return settled;
    try {
      const parsed = RecipientOutcomeSchema.array().safeParse(JSON.parse(json));
      if (!parsed.success) throw new Error(parsed.error.message);
      for (const o of parsed.data) if (FINAL.has(o.status)) settled.set(o.recipient, o);
    } catch (err) {
      // Unreadable: deliver as if nothing were stored (at-least-once), and overwrite it afterwards.
      this.opts.log("warn", "ignoring unreadable stored outcomes", {
        jobId: job.jobId,
        error: String(err),
      });
    }
    return settled;
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

function deferAll(job: DeliveryJob, response: string): RecipientOutcome[] {
  return job.recipients.map((recipient) => ({ recipient, status: "deferred", response }));
}

function resultFrame(job: DeliveryJob, recipients: RecipientOutcome[]) {
  return {
    type: "result" as const,
    jobId: job.jobId,
    messageId: job.messageId,
    attempt: job.attempt,
    recipients,
  };
}
