/**
 * One job's message, built and signed: buildMime, then DKIM with every key the job carries (one,
 * or two for a dual-signing domain: docs/link-protocol.md#frames). This is the
 * work the compose pool (pool.ts) runs in worker threads; `serveCompose` is the worker side of that
 * pool's protocol, kept here so a test can wrap it (a worker that crashes on demand).
 */
import type { MessagePort } from "node:worker_threads";
import { jobDkimKeys } from "../../../shared/link/protocol.ts";
import type { ComposableJob } from "./build-mime.ts";
import { buildMimeReusing } from "./mime-template.ts";
import { signDkim } from "./dkim.ts";
import { renderJobTemplate } from "./render-template.ts";
import { embedImages } from "./embed-images.ts";
import { applyTracking, type TrackedJob } from "./tracking.ts";

export interface ComposeOptions {
  /** DKIM_FAST_PATH: false signs every message with mailauth's dkimSign (dkim.ts). */
  dkimFastPath?: boolean;
}

/** A template that cannot be rendered with this message's data: the message fails with this text. */
export class TemplateRenderError extends Error {
  override name = "TemplateRenderError";
}

export async function composeMessage(job: ComposableJob, options: ComposeOptions = {}): Promise<Buffer> {
  if (job.message.template) {
    if (!job.templateSnapshot) throw new TemplateRenderError("the job's template was not fetched");
    const r = renderJobTemplate(job.message, job.templateSnapshot);
    if (!r.ok) throw new TemplateRenderError(r.error);
    job = { ...job, message: r.message };
  }
  // Images proxied or embedded (docs/api/images.md#image_embed_mode), then links, pixel, footers and
  // List-Unsubscribe on the final bodies (docs/api/tracking.md).
  job = await applyTracking(await embedImages(job as TrackedJob));
  // buildMime, or the bytes of an earlier personalization of the same content with its own To,
  // Message-ID and Date (mime-template.ts).
  const mime = await buildMimeReusing(job);
  const keys = jobDkimKeys(job);
  return keys.length > 0
    ? signDkim(mime, keys, options.dkimFastPath === false ? { fastPath: false } : {})
    : mime;
}

/** One request of a batch. */
export interface ComposeRequest {
  id: number;
  /** With its fetched attachments, copied to the worker with the request (structured clone). */
  job: ComposableJob;
}
/** Pool → worker: requests in one message (pool.ts, BATCH). */
export interface ComposeBatch {
  requests: ComposeRequest[];
}
/** The answer to one request: the message, or why it cannot be built or signed (an error as a value). */
export type ComposeRequestReply =
  { id: number; ok: true; raw: Uint8Array } | { id: number; ok: false; error: string };
/**
 * Worker → pool: `ready` once its modules are loaded (request timeouts start from there), then per
 * batch the replies to all of its requests, in one message.
 */
export type ComposeReply = { ready: true } | { replies: ComposeRequestReply[] };

/** What the pool hands every worker as `workerData`. */
export interface ComposeWorkerData {
  options: ComposeOptions;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Answers compose batches on `port` until the thread ends: the requests of a batch in order, then
 * one message with every reply. Each message's bytes are copied into an ArrayBuffer of their own and
 * transferred, so neither a pooled Buffer's neighbours nor a second copy cross the thread boundary.
 * Batches are answered in the order they came (one at a time), so a request never waits behind a
 * later batch.
 */
export function serveCompose(
  port: MessagePort,
  data: ComposeWorkerData,
  before: (request: ComposeRequest) => void | Promise<void> = () => {},
): void {
  let previous: Promise<void> = Promise.resolve();
  port.on("message", (batch: ComposeBatch) => {
    previous = previous.then(async () => {
      const replies: ComposeRequestReply[] = [];
      const transfer: ArrayBuffer[] = [];
      for (const request of batch.requests) {
        try {
          await before(request);
          const raw = await composeMessage(request.job, data.options);
          const own = new Uint8Array(raw.length);
          own.set(raw);
          replies.push({ id: request.id, ok: true, raw: own });
          transfer.push(own.buffer);
        } catch (err) {
          replies.push({ id: request.id, ok: false, error: errorText(err) });
        }
      }
      const reply: ComposeReply = { replies };
      port.postMessage(reply, transfer);
    });
    // A batch that could not be answered (postMessage threw) must not stop the ones after it: end
    // the thread as an uncaught error would, and the pool retries its requests in a fresh worker.
    previous = previous.catch((err: unknown) => {
      setImmediate(() => {
        throw err;
      });
    });
  });
  const ready: ComposeReply = { ready: true };
  port.postMessage(ready);
}
