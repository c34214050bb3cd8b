/**
 * The blob step before a job is built (docs/link-protocol.md#blobs): wraps the delivery engine's
 * `deliver` so that a job naming blobs gets them first. A job without references passes untouched.
 *  - Each reference must lie under the job's own tenant (`blobs/<day>/<tenant id>/<sha256>`): the
 *    edge writes them so, and a job that names another tenant's blob fails rather than send it.
 *  - Bodies by reference become `text` / `html` again; attachments' bytes go in `attachmentBytes`
 *    (compose/build-mime.ts), in order; a stored template's snapshot (`templates/<tenant>/<sha256>`)
 *    goes in `templateSnapshot`, for the compose step to render (compose/render-template.ts).
 *  - A blob that is gone (404) fails the job's recipients with the reason, which the edge records
 *    as the message's error_message: it can never be built. Any other fetch failure defers them, so
 *    the hub retries on its schedule; nothing accepted is dropped because the edge was unreachable.
 */
import type { BlobRef, DeliveryJob, RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { ComposableJob } from "../compose/build-mime.ts";
import { BlobMissingError, type BlobFetcher } from "./blob-fetcher.ts";

type Deliver<O extends { deadlineAt?: number }> = (job: DeliveryJob, opts: O) => Promise<RecipientOutcome[]>;

/** The job's references, bodies first, then attachments in order. */
export function blobRefsOf(job: DeliveryJob): BlobRef[] {
  const m = job.message;
  return [...(m.textRef ? [m.textRef] : []), ...(m.htmlRef ? [m.htmlRef] : []), ...(m.attachments ?? [])];
}

/** `blobs/<day>/<tenant>/<sha256>`, or a template snapshot's `templates/<tenant>/<sha256>`. */
const tenantOf = (key: string) => {
  const parts = key.split("/");
  return parts[0] === "templates" ? parts[1] : parts[2];
};

export function withBlobs<O extends { deadlineAt?: number }>(
  blobs: BlobFetcher,
  deliver: Deliver<O>,
): Deliver<O> {
  return async (job, opts) => {
    const snapshot = job.message.template?.snapshot;
    const refs = [...blobRefsOf(job), ...(snapshot ? [snapshot] : [])];
    if (refs.length === 0) return deliver(job, opts);
    const outcome = (status: "failed" | "deferred", response: string): RecipientOutcome[] =>
      job.recipients.map((recipient) => ({ recipient, status, response }));

    const foreign = refs.find((r) => tenantOf(r.key) !== job.tenantId);
    if (foreign) return outcome("failed", `the job names a blob outside its tenant: ${foreign.key}`);

    // Leave at least half of the job's time to SMTP. Whole milliseconds: timers refuse fractions.
    const timeoutMs =
      opts.deadlineAt !== undefined
        ? Math.max(1_000, Math.floor((opts.deadlineAt - Date.now()) / 2))
        : undefined;
    let fetched: Buffer[];
    try {
      fetched = await Promise.all(
        refs.map((r) => blobs.get(r, timeoutMs !== undefined ? { timeoutMs } : {})),
      );
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (err instanceof BlobMissingError) {
        return outcome(
          "failed",
          `Could not build the message: an attachment, body or template is no longer stored (${reason})`,
        );
      }
      return outcome(
        "deferred",
        `Could not fetch the message's attachments or body from the edge: ${reason}`,
      );
    }

    const m = job.message;
    let i = 0;
    const { textRef, htmlRef, ...rest } = m;
    const message: DeliveryJob["message"] = { ...rest };
    if (textRef) message.text = fetched[i++]!.toString("utf8");
    if (htmlRef) message.html = fetched[i++]!.toString("utf8");
    const attachmentBytes = fetched.slice(i, i + (m.attachments?.length ?? 0));
    const resolved: ComposableJob = {
      ...job,
      message,
      attachmentBytes,
      ...(snapshot ? { templateSnapshot: fetched[fetched.length - 1]! } : {}),
    };
    return deliver(resolved, opts);
  };
}
