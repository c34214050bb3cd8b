/**
 * The edge ⇄ origin link: JSON frames over one WebSocket per (origin node, hub shard).
 * The full description, with the timing rules, is docs/link-protocol.md.
 *
 * The origin dials out to `GET /link?shard=N` with `Authorization: Bearer <ORIGIN_TOKEN>`.
 *
 *   origin → edge   hello   {protocol, nodeId, bootId, version, capacity, pools?}  first frame, once per connection;
 *                                                                    pools: the IP pool names the node delivers from
 *   edge → origin   welcome {protocol, shard, shards, leaseMs, hubs?, tracking?} reply to hello; hubs names shard
 *                                                                    0..shards-1; tracking: the token key and public URL
 *   edge → origin   jobs    {jobs[], channelJobs?[]}                 one or more frames per batch, each job costs one credit;
 *                                                                    channelJobs: SMS / push / web push (channel-job.ts)
 *   origin → edge   ack     {jobIds[]}                               "I hold these": (re)sets each lease to now + leaseMs.
 *                                                                    Sent when jobs are taken, then again every
 *                                                                    leaseMs / 5 for every job still held (renewal).
 *   origin → edge   release {jobIds[]}                               "I will not run these": back to the outbox at once
 *   origin → edge   result  {jobId, messageId, attempt, recipients[]} one per finished job; valid before hello too
 *   origin → edge   results {results[]}                              several results in one frame (after welcome)
 *   edge → origin   resultAck {jobIds[]}                             the edge has recorded these results
 *   origin → edge   credit  {credits}                                more room: hub may push that many more jobs
 *   origin → edge   inbound {events[]}                               bounces and complaints that came back by mail
 *                                                                    (docs/bounces.md), kept and re-sent until acknowledged
 *   edge → origin   inboundAck {eventKeys[]}                         the edge has recorded these (or knows it never will)
 *   both ways       ping / pong
 *
 * Delivery is at-least-once. A job id is unique per dispatch (`<messageId>.<attempt>`, where `attempt` is
 * the dispatch number: the Nth time the hub handed this message to an origin, not a failure count), so
 * the origin drops a job id it has already run and the edge drops a result for a dispatch it has already
 * recorded or superseded.
 *
 * `bootId` names one origin process: a hub that sees a node's hello with a new boot id knows the jobs
 * the previous incarnation held died with it and re-dispatches them at once. So a restarted origin sends
 * the results its predecessor journaled and never saw acknowledged BEFORE its hello: they are applied
 * by the dispatch they name while the hub still leases it (docs/link-protocol.md#restarts-and-boot-ids).
 *
 * Frames are validated with zod on both ends; a frame that fails validation is logged and dropped,
 * never half-applied. Sizes are UTF-8 bytes: Cloudflare caps a Durable Object WebSocket message at
 * 1 MiB (https://developers.cloudflare.com/durable-objects/platform/limits/), so the hub packs jobs
 * frames up to FRAME_BUDGET_BYTES and fails a job that alone exceeds it; the origin accepts frames up to
 * MAX_FRAME_BYTES.
 */
import { z } from "zod";
import { JobTrackingSchema } from "../tracking/settings.ts";
import { ChannelJobSchema, type ChannelJob } from "./channel-job.ts";
import { fastOriginFrame } from "./fast-frames.ts";

/**
 * 2: hello carries `bootId`; `release` frame; `ack` doubles as the periodic lease renewal.
 * 3: jobs may carry attachments and bodies by reference (`message.attachments`, `textRef`, `htmlRef`).
 *    A version, not an optional field: an older origin would drop them (zod strips unknown keys) and
 *    send the mail without its attachments, so it must be refused instead (docs/link-protocol.md#frames).
 *    And the `results` frame: an origin coalesces the results it finishes within one tick.
 * 4: jobs may name a stored template (`message.template`), which the origin renders. A version for
 *    the same reason: an older origin would drop the field and send the mail unrendered.
 * 5: jobs carry their tracking settings (`message.tracking`) and the welcome the token key
 *    (`tracking`): an older origin would send the mail without its unsubscribe link and footer.
 * 6: the jobs frame may carry channel jobs (`channelJobs`: SMS, mobile push, web push;
 *    shared/link/channel-job.ts) and outcomes `providerMessageId` and `gone`. A version: an older
 *    origin would drop the array (zod strips unknown keys) and the jobs would sit leased to it unrun.
 */
export const LINK_PROTOCOL_VERSION = 6;
/** Content blocks besides text and HTML one job may carry (shared/sendgrid/content-types.ts). */
export const MAX_JOB_ALTERNATIVES = 8;
/** The platform's cap on one Durable Object WebSocket message, in bytes. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** What the hub packs into one frame at most, in UTF-8 bytes: under the cap with room to spare. */
export const FRAME_BUDGET_BYTES = 1_000_000;

export { utf8ByteLength } from "../utf8.ts";

const Address = z.object({ email: z.string(), name: z.string().optional() });
export type LinkAddress = z.infer<typeof Address>;

/** A DKIM private key and where it is published (`<selector>._domainkey.<domain>`). */
const DkimKeySchema = z.object({
  domain: z.string(),
  selector: z.string(),
  privateKeyPem: z.string(),
});
/** Signatures one job may carry (today at most two: rsa-sha256 and ed25519-sha256). */
export const MAX_DKIM_KEYS = 4;

/** An IP pool's name, as SendGrid bounds `ip_pool_name` (2 to 64 characters). */
export const IpPoolNameSchema = z.string().min(2).max(64);
/** Pools one origin may announce in its hello. */
export const MAX_IP_POOLS = 100;

/**
 * A blob the edge stored in R2 (edge/src/services/blobs.ts); the origin fetches it by `key` from
 * `GET /origin/blobs/<key>` and checks `size` and `sha256` before using it (docs/link-protocol.md#blobs).
 */
export const BlobRefSchema = z.object({
  key: z.string().regex(/^blobs\/\d{8}\/[A-Za-z0-9_-]{1,64}\/[0-9a-f]{64}$/),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type BlobRef = z.infer<typeof BlobRefSchema>;

/** One attachment of a message, by reference (the request's `attachments[i]` without its content). */
export const AttachmentRefSchema = BlobRefSchema.extend({
  filename: z.string(),
  type: z.string(),
  disposition: z.enum(["attachment", "inline"]),
  contentId: z.string().optional(),
});
export type AttachmentRef = z.infer<typeof AttachmentRefSchema>;
/** The most attachments one job may carry (the Mail Send limit). */
export const MAX_JOB_ATTACHMENTS = 10;

/**
 * A template version's content as the edge stored it in R2 (edge/src/services/template-snapshots.ts):
 * `templates/<tenant id>/<sha256 hex>`, content-addressed, fetched and checked like a BlobRef.
 */
export const TemplateSnapshotRefSchema = z.object({
  key: z.string().regex(/^templates\/[A-Za-z0-9_-]{1,64}\/[0-9a-f]{64}$/),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type TemplateSnapshotRef = z.infer<typeof TemplateSnapshotRefSchema>;

/**
 * The stored template a message is rendered from, by reference, with this personalization's data
 * (docs/templates.md#where-rendering-happens). The origin renders subject, HTML and text from the
 * snapshot: a dynamic one with `data` (dynamic_template_data); a legacy one around the message's
 * own `subject` / `text` / `html` (its `<%subject%>` and `<%body%>` tags), with `substitutions`
 * and `sections` applied to the template's own text.
 */
export const JobTemplateSchema = z.object({
  templateId: z.string(),
  versionId: z.string(),
  generation: z.enum(["dynamic", "legacy"]),
  snapshot: TemplateSnapshotRefSchema,
  data: z.record(z.string(), z.unknown()).optional(),
  substitutions: z.record(z.string(), z.string()).optional(),
  sections: z.record(z.string(), z.string()).optional(),
});
export type JobTemplate = z.infer<typeof JobTemplateSchema>;

/** Everything the origin needs to build, sign and deliver one message (one SendGrid personalization). */
export const DeliveryJobSchema = z.object({
  jobId: z.string(),
  messageId: z.string(),
  tenantId: z.string(),
  /** Dispatch number (1 for the first hand-over, +1 on every re-dispatch); part of the job id. */
  attempt: z.number().int().min(1),
  /** Envelope recipients still to be tried this dispatch (a retry carries only the deferred ones). */
  recipients: z.array(z.string()).min(1),
  message: z.object({
    from: Address,
    replyTo: z.array(Address).optional(),
    to: z.array(Address),
    cc: z.array(Address).optional(),
    subject: z.string(),
    text: z.string().optional(),
    html: z.string().optional(),
    /** The text body stored in R2 instead of `text` (UTF-8), when it would not fit a frame. */
    textRef: BlobRefSchema.optional(),
    /** The HTML body stored in R2 instead of `html` (UTF-8). */
    htmlRef: BlobRefSchema.optional(),
    /** Attachments in request order; inline ones are referenced from the HTML as cid:<contentId>. */
    attachments: z.array(AttachmentRefSchema).max(MAX_JOB_ATTACHMENTS).optional(),
    /** The stored template to render the message from (protocol 4); absent: the message as it is. */
    template: JobTemplateSchema.optional(),
    /** Custom headers, already validated at the edge (no CR/LF, no reserved names). */
    headers: z.record(z.string(), z.string()),
    /** Message-ID header value without angle brackets, fixed at the edge so retries keep it. */
    messageIdHeader: z.string(),
    /**
     * Content blocks besides text/plain and text/html (text/calendar, text/x-amp-html, …), in request
     * order, each one more part of multipart/alternative (shared/sendgrid/content-types.ts). Absent: none.
     */
    alternatives: z
      .array(z.object({ type: z.string().min(1).max(255), value: z.string() }))
      .max(MAX_JOB_ALTERNATIVES)
      .optional(),
    /**
     * Tracking to apply (protocol 5; the tenant's defaults merged with the request's settings,
     * docs/api/tracking.md#settings). Absent: none, and no List-Unsubscribe (a sandbox or older job).
     */
    tracking: JobTrackingSchema.optional(),
  }),
  /** The first (or only) key to sign with; the RSA key of a dual-signing domain. */
  dkim: DkimKeySchema.nullable(),
  /**
   * Keys to sign with after `dkim`, each a DKIM-Signature of its own over the same headers (dual
   * signing: an ed25519-sha256 signature beside the rsa-sha256 one, RFC 8463). Absent: none. Added
   * without a protocol version: an older origin drops the field (zod strips unknown keys) and signs
   * with `dkim` alone, which verifies on its own, so edges and origins upgrade in either order.
   */
  dkimAdditional: z
    .array(DkimKeySchema)
    .max(MAX_DKIM_KEYS - 1)
    .optional(),
  /**
   * The IP pool (`ip_pool_name`) to deliver from: only an origin that announced it in its hello may
   * send the job, from one of the pool's source addresses; another defers it (docs/link-protocol.md).
   * Absent: the origin's default pool, or the address its system picks. Added without a protocol
   * version: an origin older than the field announces no pools, so the hub never hands it such a job.
   */
  ipPool: IpPoolNameSchema.optional(),
  /**
   * Set on the jobs of a message re-queued by POST /v3/messages/{id}/retry: the first dispatch of that
   * retry. Final outcomes an origin stored for earlier dispatches of the message are not reused for it
   * (docs/link-protocol.md#retried-messages). Absent: every stored outcome of the message counts.
   */
  freshFrom: z.number().int().min(1).optional(),
});
export type DeliveryJob = z.infer<typeof DeliveryJobSchema>;
/** Any job off the link: an email delivery job or a channel job (`isChannelJob` tells them apart). */
export type LinkJob = DeliveryJob | ChannelJob;
export { ChannelJobSchema, isChannelJob, type ChannelJob } from "./channel-job.ts";
export type DkimKey = z.infer<typeof DkimKeySchema>;

/** Every key a job is signed with, in signing order (docs/link-protocol.md#frames). */
export function jobDkimKeys(job: Pick<DeliveryJob, "dkim" | "dkimAdditional">): DkimKey[] {
  return job.dkim ? [job.dkim, ...(job.dkimAdditional ?? [])] : [...(job.dkimAdditional ?? [])];
}

export const RecipientStatus = z.enum(["delivered", "deferred", "bounced", "failed"]);
export type RecipientStatus = z.infer<typeof RecipientStatus>;

export const RecipientOutcomeSchema = z.object({
  recipient: z.string(),
  status: RecipientStatus,
  /** Basic SMTP reply code (250, 451, 550…), absent when no server answered. */
  smtpCode: z.number().int().optional(),
  /** RFC 3463 enhanced status code such as "5.1.1", when the server sent one. */
  enhancedCode: z.string().optional(),
  response: z.string(),
  /** For bounces: hard (address is bad), soft (temporary that ran out), block (policy / reputation). */
  bounceType: z.enum(["hard", "soft", "block"]).optional(),
  mxHost: z.string().optional(),
  /** The local (source) IP address the SMTP session with `mxHost` was bound to, when the origin chose one. */
  sourceAddress: z.string().max(64).optional(),
  /** Whether the session with `mxHost` was encrypted (STARTTLS). */
  tls: z.boolean().optional(),
  /** Its TLS protocol version when `tls` is true, e.g. "TLSv1.3". */
  tlsVersion: z.string().max(32).optional(),
  /**
   * Present when the recipient domain has an MTA-STS policy in mode enforce or testing (RFC 8461);
   * `failure` says how the delivery fell short of it (enforce: why it was deferred; testing: what
   * an enforced policy would have refused). docs/operations.md, "TLS and MTA-STS".
   */
  mtaSts: z
    .object({ mode: z.enum(["enforce", "testing"]), failure: z.string().max(1_000).optional() })
    .optional(),
  latencyMs: z.number().optional(),
  /** A channel job's provider-assigned id (Twilio's SM…, FCM's message name, apns-id, …), when accepted. */
  providerMessageId: z.string().max(256).optional(),
  /**
   * A channel job's target no longer exists (an unregistered device token, a web push subscription the
   * push service answered 404/410 for, a number the carrier says is gone): stop sending to it.
   */
  gone: z.literal(true).optional(),
  /**
   * For a deferral the origin can time (its own rate limit, back-off or warm-up allowance): retry no
   * sooner than this many ms after the result is recorded. Optional; older hubs ignore it.
   */
  retryAfterMs: z
    .number()
    .int()
    .min(0)
    .max(31 * 86_400_000)
    .optional(),
});
export type RecipientOutcome = z.infer<typeof RecipientOutcomeSchema>;

/**
 * One bounce or complaint the origin's inbound server classified (docs/bounces.md). `eventKey` is
 * stable across re-sends and across the remote MTA's own retries of the same report, so the edge
 * records it once however often it arrives.
 */
export const InboundEventSchema = z.object({
  eventKey: z.string().regex(/^[0-9A-Z]{26}$/),
  type: z.enum(["bounce", "spam_report"]),
  messageId: z.string().min(1).max(64),
  /** null when the report named none (FBL reports are often redacted). */
  recipient: z.string().max(320).nullable(),
  /** How the message id was found; a "message-id" event carries the header, which the edge compares. */
  messageIdSource: z.enum(["verp", "message-id", "x-message-id"]),
  messageIdHeader: z.string().max(998).optional(),
  bounceType: z.enum(["hard", "soft", "block"]).optional(),
  /** The reason vocabulary of docs/bounces.md. */
  reason: z.string().max(64).optional(),
  /** RFC 3463 enhanced status code. */
  status: z.string().max(16).nullable().optional(),
  diagnostic: z.string().max(2_000).optional(),
  /** ARF Feedback-Type (RFC 5965 §3.1). */
  feedbackType: z.string().max(64).optional(),
  format: z.string().max(32).optional(),
  /** Unix ms when the inbound server accepted the report. */
  receivedAt: z.number().int().min(0),
});
export type InboundEvent = z.infer<typeof InboundEventSchema>;

/** One finished job's outcome, one entry per recipient (a `result` frame, or one of a `results` frame). */
export const LinkResultSchema = z.object({
  jobId: z.string(),
  messageId: z.string(),
  attempt: z.number().int().min(1),
  recipients: z.array(RecipientOutcomeSchema).min(1),
});
export type LinkResult = z.infer<typeof LinkResultSchema>;
/**
 * Results per `results` frame. The origin also keeps a frame under FRAME_BUDGET_BYTES; a frame is
 * handled in one go by the hub, so this also bounds one frame's work there.
 */
export const MAX_RESULTS_PER_FRAME = 500;
/** Events per `inbound` frame: far under FRAME_BUDGET_BYTES at the field limits above. */
export const MAX_INBOUND_EVENTS_PER_FRAME = 100;

export const OriginFrameSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("hello"),
    protocol: z.number().int(),
    nodeId: z.string().min(1).max(128),
    /** Random per origin process; a new one tells the hub the node restarted and lost what it held. */
    bootId: z.string().min(1).max(64),
    version: z.string().max(64),
    /** Jobs the node can take right now (after a reconnect, its free room, which may be 0). */
    capacity: z.number().int().min(0).max(10_000),
    /**
     * The IP pools this node delivers from (IP_POOLS). The hub keeps each node's latest list in its
     * storage and refuses a send naming a pool no node announced. Absent (an older origin): none.
     */
    pools: z.array(IpPoolNameSchema).max(MAX_IP_POOLS).optional(),
  }),
  z.object({
    type: z.literal("ack"),
    jobIds: z.array(z.string()).max(10_000),
    /**
     * Jobs of this link that reached a later stage since the last renewal (docs/link-protocol.md#stages):
     * `rendered` (the MIME is built and signed), `sending` (SMTP delivery has started). Sent on the
     * periodic renewal only, never in a frame of its own. Absent: nothing new (an older hub ignores it).
     */
    stages: z
      .object({
        rendered: z.array(z.string()).max(10_000).optional(),
        sending: z.array(z.string()).max(10_000).optional(),
      })
      .optional(),
  }),
  z.object({ type: z.literal("release"), jobIds: z.array(z.string()).max(10_000) }),
  LinkResultSchema.extend({ type: z.literal("result") }),
  /**
   * The results a node finished within one tick, coalesced (docs/link-protocol.md#results-and-resultack);
   * each is handled exactly as a `result` frame of its own. Sent only after `welcome`: before it the
   * origin does not know the hub's protocol, and sends `result` frames.
   */
  z.object({
    type: z.literal("results"),
    results: z.array(LinkResultSchema).min(1).max(MAX_RESULTS_PER_FRAME),
  }),
  z.object({ type: z.literal("credit"), credits: z.number().int().min(1).max(10_000) }),
  z.object({
    type: z.literal("inbound"),
    events: z.array(InboundEventSchema).min(1).max(MAX_INBOUND_EVENTS_PER_FRAME),
  }),
  z.object({ type: z.literal("ping") }),
  z.object({ type: z.literal("pong") }),
]);
export type OriginFrame = z.infer<typeof OriginFrameSchema>;

export const EdgeFrameSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("welcome"),
    protocol: z.number().int(),
    shard: z.number().int(),
    shards: z.number().int().min(1),
    leaseMs: z.number().int(),
    /** Every shard's name by link index (`/link?shard=N` reaches hubs[N]); absent from older edges. */
    hubs: z.array(z.string()).optional(),
    /**
     * What the origin signs tracking links with (docs/link-protocol.md#tracking): `key`, base64url,
     * is derived from TRACKING_SECRET (never the secret itself); `baseUrl` is the edge's PUBLIC_URL,
     * absent when unset (the origin then uses its EDGE_URL).
     */
    tracking: z.object({ key: z.string().min(43).max(128), baseUrl: z.url().optional() }).optional(),
  }),
  z.object({
    type: z.literal("jobs"),
    jobs: z.array(DeliveryJobSchema),
    /** SMS, push and web push jobs (protocol 6; docs/link-protocol.md#channel-jobs); one credit each. */
    channelJobs: z.array(ChannelJobSchema).optional(),
  }),
  z.object({ type: z.literal("resultAck"), jobIds: z.array(z.string()) }),
  z.object({ type: z.literal("inboundAck"), eventKeys: z.array(z.string()) }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
  z.object({ type: z.literal("ping") }),
  z.object({ type: z.literal("pong") }),
]);
export type EdgeFrame = z.infer<typeof EdgeFrameSchema>;

export type ParsedFrame<T> = { ok: true; frame: T } | { ok: false; error: string };

function parseWith<T>(schema: z.ZodType<T>, raw: string | ArrayBuffer): ParsedFrame<T> {
  let data: unknown;
  try {
    data = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
  } catch {
    return { ok: false, error: "frame is not JSON" };
  }
  const result = schema.safeParse(data);
  if (!result.success) return { ok: false, error: z.prettifyError(result.error) };
  return { ok: true, frame: result.data };
}

/** The hot frames take a plain-code fast path that returns what the schema would (link/fast-frames.ts). */
export function parseOriginFrame(raw: string | ArrayBuffer): ParsedFrame<OriginFrame> {
  let data: unknown;
  try {
    data = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
  } catch {
    return { ok: false, error: "frame is not JSON" };
  }
  const fast = fastOriginFrame(data, MAX_RESULTS_PER_FRAME);
  if (fast) return { ok: true, frame: fast };
  const result = OriginFrameSchema.safeParse(data);
  if (!result.success) return { ok: false, error: z.prettifyError(result.error) };
  return { ok: true, frame: result.data };
}
export const parseEdgeFrame = (raw: string | ArrayBuffer) => parseWith(EdgeFrameSchema, raw);

/** Job ids are unique per dispatch so both ends can de-duplicate without extra state. */
export const jobIdFor = (messageId: string, dispatch: number) => `${messageId}.${dispatch}`;

/** The inverse of jobIdFor. */
export function splitJobId(jobId: string): { messageId: string; dispatch: number } {
  const dot = jobId.lastIndexOf(".");
  return { messageId: jobId.slice(0, dot), dispatch: Number(jobId.slice(dot + 1)) };
}
