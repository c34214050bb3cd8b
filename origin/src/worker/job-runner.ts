/**
 * Runs delivery jobs that arrive over the links, at most `capacity` at a time, and decides how much
 * work each link asks for. Timing rules: docs/link-protocol.md. Channel jobs (SMS, push, web push:
 * docs/link-protocol.md#channel-jobs) are run, journaled and reported the same way; `deliver` hands
 * each kind to its runner (origin/src/node.ts).
 *
 * Capacity and credits:
 *  - The node's capacity is split across its shard links: link i of n gets floor(C/n) (+1 for the first
 *    C mod n), at least 1. A link is granted credit only while its credits outstanding at the hub plus
 *    the jobs it holds stay within its share, and never while it is back-pressured (too many results
 *    waiting for resultAck). Shares shrink as links open (shard 0's welcome names the shard count); the
 *    excess of the first link drains through the queue below instead of being re-granted.
 *  - A job that arrives is acknowledged (`ack`, which starts its lease at the hub) only when it starts now
 *    or the queue holds fewer than `capacity` jobs: every queued job then starts within one job deadline.
 *    Anything more is released at once (back to the hub's outbox for a node with room), not left to sit.
 *  - A queued job whose lease the link can no longer vouch for (it was held across a long disconnect)
 *    is not started: it is released, and the hub's lease brings it back if the release cannot be sent.
 *
 * Timing, with L = the hub's lease (welcome.leaseMs): each job runs with `deadlineAt` = start + 0.4 × L
 * (the engine defers whatever is undecided by then); the link renews held jobs every L/5; the message
 * claim lasts max(JOB_CLAIM_TTL_MS, L + 0.4 × L). So job deadline < lease < claim, and a slow job is
 * never dispatched again while it still runs.
 *
 * At-least-once on the wire means a job id can arrive twice (a re-sent frame, a reconnect). The runner
 * keeps the ids it is running and the results of recently finished ones: a repeat of a running job is
 * ignored, a repeat of a finished one gets its stored result again, so nothing is delivered twice
 * because of the link itself.
 *
 * Across nodes (`coordination`, Redis when several nodes run) the unit is the message, not the job id:
 * the edge gives every dispatch a new id (`<messageId>.<dispatch>`), so a message whose result was lost
 * (its node's link was down past the lease) comes back under a NEW id, possibly to another node.
 *  - Before delivering, a node claims the message id (SET NX, the claim TTL above). Holding the claim, it
 *    reads the final outcomes (delivered/bounced/failed) stored by earlier attempts, delivers only the
 *    recipients without one, and stores the merged final outcomes with `completeJob`, which also drops
 *    the claim. Recipients already final get their stored outcome again instead of a second delivery.
 *    Deferred outcomes are not stored: the edge's retries carry exactly those recipients, and they must
 *    be tried again.
 *  - A message claimed by another node (or by this one, under an older dispatch) is NOT run, and nothing
 *    is reported for it: its slot is freed, and the edge's lease brings the job back (LINK_LEASE_MS) —
 *    by then the holder has usually stored its outcomes, which the next dispatch reuses. Reporting
 *    "deferred" instead would be wrong while the holder may be delivering right now, and waiting here
 *    would tie up capacity on a job another node owns. The cost is latency, never a loss: a holder that
 *    died stops blocking when its claim expires.
 *  - If the coordinator cannot be reached the job is reported deferred (the edge retries later) rather
 *    than delivered unguarded.
 *
 * Across restarts of this node (`journal`, origin/src/journal/outcome-journal.ts): every result is
 * written to the local outcome journal before it goes to the link (and, coordinated, before the
 * coordinator stores it), so what this process knew survives a kill -9. A job whose recipients all have
 * a final outcome in the journal is answered from it at once, not delivered again: after a restart the
 * hub may re-dispatch a message whose outcome the killed process knew but never reported. Final
 * outcomes in the journal count like stored ones above for a job that is only partly settled.
 * The journal does not wait for the job's end: the engine reports each SMTP transaction's outcomes
 * the moment the server's last reply is parsed (`onOutcome`), and the final ones among them are
 * journaled then, before the host-slot release, the throttle's bookkeeping and the job's other
 * domains, each of which may wait on Redis or a slow server: as the job's result once every
 * recipient has an outcome (a one-domain job: one write, as before), else as an early entry
 * (`appendEarly`) that answers a re-dispatch after a kill, which then delivers only the rest.
 */
import { claimOwner } from "../coord/coordinator.ts";
import type { Coordinator } from "../coord/index.ts";
import {
  FRAME_BUDGET_BYTES,
  RecipientOutcomeSchema,
  utf8ByteLength,
  type DeliveryJob,
  type LinkJob,
  type RecipientOutcome,
} from "../../../shared/link/protocol.ts";
import type { ResultFrame } from "../journal/outcome-journal.ts";
import type { EdgeLink } from "../link/edge-link.ts";
import type { Metrics } from "../ops/metrics.ts";

/** The runner's port to the outcome journal (origin/src/journal/outcome-journal.ts). */
export interface OutcomeLog {
  /** Writes a result before it is sent; throws if the disk refuses it. */
  append(frame: ResultFrame, shard: number): void;
  /** Final outcomes journaled for a message, by recipient (only of dispatches ≥ `fromAttempt`, when given). */
  finalOutcomes(messageId: string, fromAttempt?: number): Map<string, RecipientOutcome>;
  /** Writes the final outcomes of a job still running (see the header); throws if the disk refuses it. */
  appendEarly?(frame: ResultFrame, shard: number): void;
}

/** `J`: the jobs this runner takes; a node runs LinkJob (email and channel jobs), tests often email only. */
export interface JobRunnerOptions<J extends LinkJob = DeliveryJob> {
  capacity: number;
  /**
   * The delivery engine; `deadlineAt` (Unix ms) is when undecided recipients come back deferred, and
   * `onOutcome` is called with each SMTP transaction's outcomes as soon as they are known.
   */
  deliver: (
    job: J,
    opts: {
      deadlineAt: number;
      onOutcome?: (outcomes: RecipientOutcome[]) => void;
      /** The job reached a later lifecycle stage (reported to the hub with the next lease renewal). */
      onStage?: (stage: "rendered" | "sending") => void;
    },
  ) => Promise<RecipientOutcome[]>;
  metrics: Metrics;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** How many finished job ids to remember for de-duplication. */
  rememberFinished?: number;
  /** The local outcome journal (see the header); without it a restart forgets what this process knew. */
  journal?: OutcomeLog;
  /** Message claims and final outcomes shared with other nodes; without it only the memory above is used. */
  coordination?: {
    coordinator: Coordinator;
    nodeId: string;
    /** This process's boot id (hello.bootId): with the node id, the owner of its claims. */
    bootId: string;
    /** JOB_CLAIM_TTL_MS; raised to lease + job deadline when shorter (the claim must outlive the lease). */
    claimTtlMs: number;
    /** How long final outcomes stay available to later attempts. */
    resultTtlMs: number;
  };
}

const FINAL = new Set<RecipientOutcome["status"]>(["delivered", "bounced", "failed"]);

/** A job's `onOutcome` and what it journaled as the job's result, if it did (`earlyJournal`). */
interface EarlyJournal {
  onOutcome: (outcomes: RecipientOutcome[]) => void;
  written: { list: RecipientOutcome[]; frame: ResultFrame } | null;
}

interface Queued<J extends LinkJob> {
  job: J;
  link: EdgeLink;
  receivedAt: number;
}

export class JobRunner<J extends LinkJob = DeliveryJob> {
  private readonly running = new Set<string>();
  private readonly finished = new Map<string, RecipientOutcome[]>();
  private readonly queue: Queued<J>[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly links: EdgeLink[] = [];
  /** Jobs queued or running, per link. */
  private readonly heldBy = new Map<EdgeLink, number>();
  private warnedClaim = false;

  constructor(private readonly opts: JobRunnerOptions<J>) {}

  get inFlight(): number {
    return this.running.size + this.queue.length;
  }

  freeCapacity(): number {
    return Math.max(0, this.opts.capacity - this.inFlight);
  }

  /** Adds a shard link; from now on the node's capacity is shared with it. */
  register(link: EdgeLink): void {
    this.links.push(link);
    this.heldBy.set(link, 0);
  }

  /** This link's part of the node's capacity (see the header). */
  shareOf(link: EdgeLink): number {
    const n = Math.max(1, this.links.length);
    const i = Math.max(0, this.links.indexOf(link));
    const c = this.opts.capacity;
    return Math.max(1, Math.floor(c / n) + (i < c % n ? 1 : 0));
  }

  /** Jobs this link may still take: its share minus what it holds. Sent in hello. */
  roomFor(link: EdgeLink): number {
    return Math.max(0, this.shareOf(link) - (this.heldBy.get(link) ?? 0));
  }

  /** Grants each connected link the credit that brings it up to its share, unless it is back-pressured. */
  refill(): void {
    for (const link of this.links) {
      if (!link.connected || link.isDraining || link.backPressured) continue;
      const want = this.roomFor(link) - link.creditsOutstanding;
      if (want > 0) link.grantCredits(want);
    }
  }

  accept(jobs: J[], link: EdgeLink): void {
    const take: Queued<J>[] = [];
    const giveBack: string[] = [];
    const now = Date.now();
    for (const job of jobs) {
      const done = this.finished.get(job.jobId);
      if (done) {
        link.sendResult(resultFrame(job, done));
        continue;
      }
      if (this.running.has(job.jobId) || this.queue.some((q) => q.job.jobId === job.jobId)) continue;
      // Every recipient already final in the journal (a re-dispatch after a restart): answer, do not deliver.
      const journaled = this.opts.journal?.finalOutcomes(job.messageId, job.freshFrom);
      if (journaled && journaled.size > 0 && job.recipients.every((r) => journaled.has(r))) {
        this.opts.log("info", "job already completed by this node; reporting the journaled outcomes", {
          jobId: job.jobId,
        });
        const frame = this.journaled(
          job,
          link,
          job.recipients.map((r) => journaled.get(r)!),
        );
        this.remember(job.jobId, frame.recipients);
        link.sendResult(frame);
        continue;
      }
      // A draining node starts nothing new: credit it granted before SIGTERM may still bring jobs,
      // and those go straight back to the outbox for another node.
      if (link.isDraining) {
        giveBack.push(job.jobId);
        continue;
      }
      // Starts now, or waits behind fewer than `capacity` jobs (so within one job deadline): take it.
      const ahead = this.running.size + this.queue.length + take.length;
      if (ahead < 2 * this.opts.capacity) take.push({ job, link, receivedAt: now });
      else giveBack.push(job.jobId);
    }
    const acked = new Set(link.take(take.map((q) => q.job.jobId)));
    for (const q of take) {
      // Not acknowledged (the link dropped meanwhile): the hub gives it back to the outbox itself.
      if (!acked.has(q.job.jobId)) continue;
      this.queue.push(q);
      this.heldBy.set(link, (this.heldBy.get(link) ?? 0) + 1);
    }
    if (giveBack.length > 0) {
      this.opts.log("info", "releasing jobs to the edge", {
        reason: link.isDraining ? "draining" : "node full",
        count: giveBack.length,
        shard: link.shard,
      });
      link.release(giveBack);
    }
    this.pump();
    this.refill();
  }

  /** Resolves when nothing is queued or running (used by the SIGTERM drain). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running.size < this.opts.capacity && this.queue.length > 0) {
      const next = this.queue.shift()!;
      const now = Date.now();
      const deadlineAt = now + next.link.jobDeadlineMs;
      if (deadlineAt > next.link.leaseSafeUntil(next.job.jobId)) {
        // Held across a disconnect long enough that the hub may hand it to someone else before it
        // would finish: do not start it.
        this.opts.log("warn", "job's lease at risk; not starting it", { jobId: next.job.jobId });
        next.link.release([next.job.jobId]);
        this.unhold(next.link);
        continue;
      }
      this.running.add(next.job.jobId);
      this.opts.metrics.inFlight.set(this.running.size);
      void this.run(next, deadlineAt);
    }
    this.notifyIdle();
  }

  private unhold(link: EdgeLink): void {
    this.heldBy.set(link, Math.max(0, (this.heldBy.get(link) ?? 0) - 1));
  }

  private notifyIdle(): void {
    if (this.inFlight !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async run({ job, link, receivedAt }: Queued<J>, deadlineAt: number): Promise<void> {
    const started = Date.now();
    const coordination = this.opts.coordination;
    const frame = coordination
      ? await this.runCoordinated(job, coordination, link, deadlineAt)
      : await this.runLocal(job, link, deadlineAt);
    this.running.delete(job.jobId);
    this.unhold(link);
    this.opts.metrics.inFlight.set(this.running.size);
    if (frame === null) {
      // Claimed elsewhere: report nothing (see the header); the slot is free again.
      link.forget(job.jobId);
    } else {
      this.remember(job.jobId, frame.recipients);
      for (const o of frame.recipients) this.opts.metrics.outcomes.inc({ status: o.status });
      this.opts.metrics.jobSeconds.observe((Date.now() - started) / 1000);
      this.opts.metrics.queueWaitSeconds.observe((started - receivedAt) / 1000);
      link.sendResult(frame);
    }
    this.pump();
    this.refill();
  }

  /** Without a coordinator: the journal's final outcomes stand, the rest is delivered. */
  private async runLocal(job: J, link: EdgeLink, deadlineAt: number): Promise<ResultFrame> {
    const known =
      this.opts.journal?.finalOutcomes(job.messageId, job.freshFrom) ?? new Map<string, RecipientOutcome>();
    const pending = [...new Set(job.recipients)].filter((r) => !known.has(r));
    const early = pending.length > 0 ? this.earlyJournal(job, link, known) : undefined;
    const fresh =
      pending.length > 0
        ? await this.deliver({ ...job, recipients: pending }, deadlineAt, early?.onOutcome, link)
        : [];
    for (const o of fresh) known.set(o.recipient, o);
    return this.journaled(job, link, inOrder(job, known), early);
  }

  /**
   * The result frame, written to the journal first (see the header). A journal the disk refuses is
   * logged and the result sent anyway: the outcome is known, and the edge must hear it.
   */
  private journaled(job: J, link: EdgeLink, outcomes: RecipientOutcome[], early?: EarlyJournal): ResultFrame {
    // Journaled already by `onOutcome`, outcome for outcome the same: not written twice.
    const written = early?.written;
    if (written && written.list.length === outcomes.length && written.list.every((o, i) => o === outcomes[i]))
      return written.frame;
    const frame = resultFrame(job, outcomes);
    try {
      this.opts.journal?.append(frame, link.shard);
    } catch (err) {
      this.opts.log("error", "could not write the outcome journal; reporting without it", {
        jobId: job.jobId,
        error: String(err),
      });
    }
    return frame;
  }

  /**
   * The engine's `onOutcome` for a job (see the header): journals the final outcomes known so far at
   * once. While some recipient is still undecided that is an early entry, rewritten with all of them
   * at each call; deferrals wait for the result. Once every recipient has an outcome (one domain:
   * the first call) the job's result itself is journaled then, and `journaled` does not write it a
   * second time. A journal the disk refuses is logged; the result is journaled again at the end.
   */
  private earlyJournal(
    job: J,
    link: EdgeLink,
    prior: ReadonlyMap<string, RecipientOutcome>,
  ): EarlyJournal | undefined {
    const journal = this.opts.journal;
    if (!journal?.appendEarly) return undefined;
    const seen = new Map(prior);
    const finals = new Map<string, RecipientOutcome>();
    const early: EarlyJournal = {
      written: null,
      onOutcome: (outcomes) => {
        let added = false;
        for (const o of outcomes) {
          seen.set(o.recipient, o);
          if (FINAL.has(o.status)) {
            finals.set(o.recipient, o);
            added = true;
          }
        }
        if (!added) return;
        try {
          if (job.recipients.every((r) => seen.has(r))) {
            const list = inOrder(job, seen);
            const frame = resultFrame(job, list);
            journal.append(frame, link.shard);
            early.written = { list, frame };
          } else {
            journal.appendEarly!(resultFrame(job, [...finals.values()]), link.shard);
          }
        } catch (err) {
          this.opts.log("error", "could not write the outcome journal early; it is written with the result", {
            jobId: job.jobId,
            error: String(err),
          });
        }
      },
    };
    return early;
  }

  private async deliver(
    job: J,
    deadlineAt: number,
    onOutcome: ((outcomes: RecipientOutcome[]) => void) | undefined,
    link: EdgeLink,
  ): Promise<RecipientOutcome[]> {
    const onStage = (stage: "rendered" | "sending") => link.noteStage?.(job.jobId, stage);
    try {
      return await this.opts.deliver(job, { deadlineAt, onStage, ...(onOutcome ? { onOutcome } : {}) });
    } catch (err) {
      // The engine is built never to throw; if it does anyway, the edge retries the job later.
      this.opts.log("error", "delivery threw", { jobId: job.jobId, error: String(err) });
      return deferAll(job, `origin error: ${String(err)}`);
    }
  }

  /** The claim must outlive the lease and the job's deadline (header). */
  private claimTtl(configured: number, link: EdgeLink): number {
    const floor = link.leaseMs + link.jobDeadlineMs;
    if (configured >= floor) return configured;
    if (!this.warnedClaim) {
      this.warnedClaim = true;
      this.opts.log("warn", "JOB_CLAIM_TTL_MS is shorter than the lease plus the job deadline; using that", {
        configured,
        used: floor,
      });
    }
    return floor;
  }

  /** The result to report (journaled), or null when another holder owns the message (report nothing). */
  private async runCoordinated(
    job: J,
    c: NonNullable<JobRunnerOptions<J>["coordination"]>,
    link: EdgeLink,
    deadlineAt: number,
  ): Promise<ResultFrame | null> {
    // A retried message (job.freshFrom, docs/link-protocol.md#retried-messages) claims and stores its
    // outcomes under a key of its own: the outcomes stored before the retry are not its answer.
    const key = job.freshFrom === undefined ? job.messageId : `${job.messageId}@${job.freshFrom}`;
    const withJournal = (stored: Map<string, RecipientOutcome>) => {
      for (const [r, o] of this.opts.journal?.finalOutcomes(job.messageId, job.freshFrom) ?? [])
        stored.set(r, o);
      return stored;
    };
    let settled: Map<string, RecipientOutcome>;
    try {
      // Fast path: every recipient already has a final outcome (a re-dispatch after a lost result).
      settled = withJournal(this.parseFinal(await c.coordinator.getCompletedJob(key), job));
      if (job.recipients.every((r) => settled.has(r))) {
        this.opts.log("info", "job already completed; reporting the stored outcomes", { jobId: job.jobId });
        return this.journaled(job, link, inOrder(job, settled));
      }
      if (
        !(await c.coordinator.claimJob(
          key,
          claimOwner(c.nodeId, c.bootId),
          this.claimTtl(c.claimTtlMs, link),
        ))
      ) {
        this.opts.log("info", "message claimed by another worker; leaving it to the edge's lease", {
          jobId: job.jobId,
        });
        return null;
      }
      // Read again under the claim: the previous holder may have completed between the two calls.
      settled = withJournal(this.parseFinal(await c.coordinator.getCompletedJob(key), job));
    } catch (err) {
      this.opts.log("warn", "coordinator unavailable; deferring job", {
        jobId: job.jobId,
        error: String(err),
      });
      return this.journaled(job, link, deferAll(job, `origin coordination unavailable: ${String(err)}`));
    }

    const pending = [...new Set(job.recipients)].filter((r) => !settled.has(r));
    const early = pending.length > 0 ? this.earlyJournal(job, link, settled) : undefined;
    const fresh =
      pending.length > 0
        ? await this.deliver({ ...job, recipients: pending }, deadlineAt, early?.onOutcome, link)
        : [];
    for (const o of fresh) if (FINAL.has(o.status)) settled.set(o.recipient, o);
    const known = new Map(settled);
    for (const o of fresh) if (!known.has(o.recipient)) known.set(o.recipient, o);
    // Journaled before the coordinator's round trip: a kill -9 in between loses nothing.
    const frame = this.journaled(job, link, inOrder(job, known), early);
    try {
      await c.coordinator.completeJob(key, JSON.stringify([...settled.values()]), c.resultTtlMs);
    } catch (err) {
      // The delivery happened; report it. The claim expires by its TTL.
      this.opts.log("error", "could not store job outcomes", { jobId: job.jobId, error: String(err) });
    }
    return frame;
  }

  private parseFinal(json: string | null, job: J): Map<string, RecipientOutcome> {
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

/** One outcome per job recipient, in the job's order; a recipient without one is deferred. */
function inOrder(job: LinkJob, known: Map<string, RecipientOutcome>): RecipientOutcome[] {
  return job.recipients.map(
    (r) => known.get(r) ?? { recipient: r, status: "deferred" as const, response: "no outcome recorded" },
  );
}

function deferAll(job: LinkJob, response: string): RecipientOutcome[] {
  return job.recipients.map((recipient) => ({ recipient, status: "deferred", response }));
}

/**
 * The result frame; servers' replies are shortened if the whole would not fit one link frame (the hub
 * reads at most the platform's 1 MiB per message, shared/link/protocol.ts).
 */
function resultFrame(job: LinkJob, recipients: RecipientOutcome[]): ResultFrame {
  const frame = (rs: RecipientOutcome[]) => ({
    type: "result" as const,
    jobId: job.jobId,
    messageId: job.messageId,
    attempt: job.attempt,
    recipients: rs,
  });
  let out = frame(recipients);
  for (const cap of [2_000, 300, 60]) {
    if (utf8ByteLength(JSON.stringify(out)) <= FRAME_BUDGET_BYTES) return out;
    out = frame(
      recipients.map((r) =>
        r.response.length > cap ? { ...r, response: `${r.response.slice(0, cap)}…` } : r,
      ),
    );
  }
  return out;
}
