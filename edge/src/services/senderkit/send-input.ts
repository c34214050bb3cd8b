/**
 * The body of SenderKit's `POST /v1/send` (docs/api/senderkit.md#send), validated per the OpenAPI's
 * TemplateSend / RawEmailSend / RawSmsSend / RawPushSend / RawWebPushSend. Objects are strict: a field
 * this deployment does not honour is a 400, never accepted and ignored. Order of the checks:
 *  1. `template` and `content` together → invalid_request;
 *  2. cc / bcc / replyTo / attachments on a non-email send → envelope_not_supported (checked before
 *     the strict schema would call them unknown, so the caller gets SenderKit's own code);
 *  3. the channel's schema → invalid_request with zod's issues;
 *  4. `scheduledAt`: an offset is required, not more than SCHEDULE_SKEW_MS in the past, at most 30 days ahead.
 */
import { z } from "zod";
import { SkError, invalidRequest, zodIssues } from "../../surfaces/senderkit/errors.ts";

export const CHANNELS = ["email", "sms", "push", "web-push"] as const;
export type Channel = (typeof CHANNELS)[number];

/** How far in the past a `scheduledAt` may be (clock skew between the caller and us). */
export const SCHEDULE_SKEW_MS = 5_000;
export const MAX_SCHEDULE_AHEAD_MS = 30 * 24 * 3600 * 1000;
export const MAX_ATTACHMENTS = 50;
export const MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024;
/** E.164: a plus, a country code that does not start with 0, at most 15 digits in all. */
export const E164 = /^\+[1-9]\d{1,14}$/;

/** Metadata: at most 50 keys of at most 40 characters, values of at most 500 (docs/api/senderkit.md#send). */
const Metadata = z
  .record(z.string().min(1).max(40), z.union([z.string().max(500), z.number(), z.boolean()]))
  .refine((m) => Object.keys(m).length <= 50, "at most 50 metadata keys");
const Vars = z.record(z.string(), z.unknown());
const Email = z.email();
const ScheduledAt = z.iso.datetime({ offset: true });

const Attachment = z
  .strictObject({
    filename: z.string().min(1).max(255),
    contentType: z.string().min(1).max(255),
    content: z.base64(),
    inline: z.boolean().default(false),
    contentId: z.string().min(1).max(255).optional(),
  })
  .refine((a) => !a.inline || a.contentId !== undefined, {
    message: "contentId is required when inline is true",
    path: ["contentId"],
  });
export type SkAttachment = z.infer<typeof Attachment>;

const common = {
  to: z.string().min(1).max(4096),
  interpolate: z.boolean().default(false),
  vars: Vars.default({}),
  metadata: Metadata.default({}),
  scheduledAt: ScheduledAt.optional(),
};

export const RawEmailSend = z.strictObject({
  ...common,
  channel: z.literal("email"),
  to: Email,
  from: Email.optional(),
  content: z.strictObject({
    subject: z.string().max(998),
    preheader: z.string().max(1000).optional(),
    html: z.string().min(1),
    text: z.string().optional(),
    cc: z.array(Email).max(100).optional(),
    bcc: z.array(Email).max(100).optional(),
    replyTo: Email.optional(),
    attachments: z.array(Attachment).optional(),
  }),
});

const StringMap = z.record(z.string(), z.string());

export const RawSmsSend = z.strictObject({
  ...common,
  channel: z.literal("sms"),
  to: z.string().regex(E164, "must be an E.164 phone number such as +14155550123"),
  content: z.strictObject({ body: z.string().min(1).max(1600) }),
});

export const RawPushSend = z.strictObject({
  ...common,
  channel: z.literal("push"),
  to: z.string().min(1).max(4096),
  content: z.strictObject({
    title: z.string().max(1000),
    body: z.string().max(4000),
    data: StringMap.optional(),
    badge: z.int().min(0).optional(),
    sound: z.string().max(255).optional(),
  }),
});

/** The browser's PushSubscription (pushManager.subscribe()), serialized. */
export const PushSubscription = z.object({
  endpoint: z.url({ protocol: /^https$/ }),
  expirationTime: z.number().nullable().optional(),
  keys: z.object({ p256dh: z.base64url().min(1), auth: z.base64url().min(1) }),
});

export const RawWebPushSend = z.strictObject({
  ...common,
  channel: z.literal("web-push"),
  to: z.string().superRefine((s, ctx) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      ctx.addIssue({ code: "custom", message: "must be a JSON-serialized PushSubscription" });
      return;
    }
    const r = PushSubscription.safeParse(parsed);
    if (!r.success) {
      ctx.addIssue({
        code: "custom",
        message: `must be a JSON-serialized PushSubscription {endpoint (https), keys: {p256dh, auth}}: ${r.error.issues[0]?.path.join(".")} ${r.error.issues[0]?.message}`,
      });
    }
  }),
  content: z.strictObject({
    title: z.string().max(1000),
    body: z.string().max(4000),
    icon: z.string().max(2048).optional(),
    clickUrl: z.string().max(2048).optional(),
    data: StringMap.optional(),
    badge: z.int().min(0).optional(),
  }),
});

export const TemplateSend = z.strictObject({
  template: z.string().min(1).max(255),
  version: z.int().min(1).optional(),
  channel: z.enum(CHANNELS).optional(),
  to: z.string().min(1).max(4096),
  vars: Vars.default({}),
  metadata: Metadata.default({}),
  scheduledAt: ScheduledAt.optional(),
  cc: z.array(Email).max(100).optional(),
  bcc: z.array(Email).max(100).optional(),
  replyTo: Email.optional(),
  attachments: z.array(Attachment).optional(),
});

export type RawEmail = z.infer<typeof RawEmailSend>;
export type RawSend =
  RawEmail | z.infer<typeof RawSmsSend> | z.infer<typeof RawPushSend> | z.infer<typeof RawWebPushSend>;
export type TemplateSendBody = z.infer<typeof TemplateSend>;
export type SendBody = { kind: "raw"; send: RawSend } | { kind: "template"; send: TemplateSendBody };

const ENVELOPE = ["cc", "bcc", "replyTo", "attachments"] as const;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function parseWith<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (!r.success) throw invalidRequest("Invalid request body", zodIssues(r.error));
  return r.data;
}

export function envelopeNotSupported(channel: string, fields: string[]): SkError {
  return new SkError(
    400,
    "envelope_not_supported",
    `${fields.join(", ")} ${fields.length === 1 ? "is" : "are"} email-only; a ${channel} send cannot carry ${fields.length === 1 ? "it" : "them"}`,
  );
}

/** The body → a validated send, or an SkError in SenderKit's codes. `now` checks scheduledAt. */
export function parseSendBody(body: unknown, now: number): SendBody {
  if (!isRecord(body)) throw invalidRequest("The request body must be a JSON object");
  let out: SendBody;
  if ("template" in body) {
    if ("content" in body) throw invalidRequest("Provide either template or content, never both");
    out = { kind: "template", send: parseWith(TemplateSend, body) };
  } else {
    const channel = body.channel;
    if (typeof channel !== "string" || !(CHANNELS as readonly string[]).includes(channel)) {
      throw invalidRequest("Provide either template (a template send) or channel and content (a raw send)", [
        {
          code: "invalid_value",
          path: ["channel"],
          message: `channel must be one of ${CHANNELS.join(", ")}`,
          values: [...CHANNELS],
        },
      ]);
    }
    if (channel !== "email") {
      const content = isRecord(body.content) ? body.content : {};
      const used = ENVELOPE.filter((f) => f in content || f in body);
      if (used.length > 0) throw envelopeNotSupported(channel, [...used]);
    }
    const schema = { email: RawEmailSend, sms: RawSmsSend, push: RawPushSend, "web-push": RawWebPushSend }[
      channel as Channel
    ];
    out = { kind: "raw", send: parseWith(schema as z.ZodType<RawSend>, body) };
  }
  if (out.send.scheduledAt !== undefined) checkScheduledAt(out.send.scheduledAt, now);
  const attachments =
    out.kind === "template"
      ? out.send.attachments
      : out.send.channel === "email"
        ? out.send.content.attachments
        : undefined;
  if (attachments) checkAttachments(attachments);
  return out;
}

function checkScheduledAt(value: string, now: number): void {
  const at = Date.parse(value);
  const issue = (message: string) =>
    invalidRequest(`scheduledAt ${message}`, [{ code: "custom", path: ["scheduledAt"], message }]);
  if (at < now - SCHEDULE_SKEW_MS) throw issue("must be in the future");
  if (at > now + MAX_SCHEDULE_AHEAD_MS) throw issue("must be at most 30 days ahead");
}

/** Decoded size of base64 without decoding it. */
const decodedBytes = (b64: string) =>
  Math.floor((b64.length * 3) / 4) - (b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0);

function checkAttachments(list: SkAttachment[]): void {
  const total = list.reduce((n, a) => n + decodedBytes(a.content), 0);
  if (list.length > MAX_ATTACHMENTS || total > MAX_ATTACHMENT_BYTES) {
    throw new SkError(
      400,
      "attachment_too_large",
      `At most ${MAX_ATTACHMENTS} attachments and ${MAX_ATTACHMENT_BYTES} bytes decoded in total per message; this one has ${list.length} attachments, ${total} bytes`,
    );
  }
}
