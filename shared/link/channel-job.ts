/**
 * A channel job: one SMS, mobile push or web push notification for the origin to hand to a provider
 * (docs/channels.md). It travels in the `jobs` frame's `channelJobs` array (protocol 6,
 * docs/link-protocol.md#channel-jobs) through the same outbox, lease, retry policy and result path as
 * an email delivery job: same `jobId` (`<messageId>.<attempt>`, jobIdFor), same `attempt` (the
 * dispatch number), one credit each, and its outcome comes back in a `result` / `results` frame.
 *
 * Shape, by `channel`:
 *   sms       target {to: E.164}                       content {body}
 *             provider twilio {accountSid, authToken, from | messagingServiceSid} | vonage {apiKey, apiSecret, from}
 *   push      target {token}                           content {title?, body, data?, badge?, sound?}
 *             provider fcm {projectId, clientEmail, privateKey} | apns {teamId, keyId, privateKey, topic,
 *             environment} | expo {accessToken?}
 *   web-push  target {subscription {endpoint, keys {p256dh, auth}}, ttl?, urgency?, topic?}
 *             content {title, body, icon?, clickUrl?, data?, badge?}
 *             provider vapid {subject, publicKey, privateKey}
 * The provider union is per channel, so a job can never pair an SMS target with a push provider.
 *
 * `recipients` is exactly one key, chosen by the edge (the message's `to` as the API received it is
 * the natural one); the origin never interprets it, it only echoes it as the outcome's `recipient`.
 * The provider's credentials travel decrypted, like a delivery job's DKIM keys: the link is TLS and
 * authenticated (docs/link-protocol.md#connecting); the origin keeps them in memory only.
 *
 * Outcomes (docs/channels.md#outcomes): accepted by the provider → `delivered` with the provider's id
 * in `providerMessageId` (and `response`); 429 / 5xx / network / timeout → `deferred` (`retryAfterMs`
 * from Retry-After); invalid number, unregistered token, 404/410 from a push service → `bounced` hard,
 * `gone: true` when the target no longer exists; bad credentials or a refused connection → `failed`.
 */
import { z } from "zod";

/** E.164: "+", a country code that does not start with 0, at most 15 digits in all (ITU-T E.164 §6). */
export const E164_PATTERN = /^\+[1-9]\d{1,14}$/;

/** Channels a channel job may name: SenderKit's channel names besides `email`. */
export const CHANNEL_NAMES = ["sms", "push", "web-push"] as const;
export type ChannelName = (typeof CHANNEL_NAMES)[number];

/** Most entries of a push `data` map (string values, as FCM requires and the SenderKit API types them). */
export const MAX_PUSH_DATA_KEYS = 64;
/** Twilio's and Vonage's cap on one message body, in characters (concatenated segments). */
export const MAX_SMS_BODY_CHARS = 1_600;
/** Bounds a notification's text fields so one job stays far below a frame (providers cap the payload at 4 KiB). */
const MAX_PUSH_TEXT = 4_096;

const secret = z.string().min(1).max(8_192);
const shortText = z.string().min(1).max(256);
const dataMap = z
  .record(z.string().min(1).max(256), z.string().max(MAX_PUSH_TEXT))
  .refine((d) => Object.keys(d).length <= MAX_PUSH_DATA_KEYS, `at most ${MAX_PUSH_DATA_KEYS} keys`);
const base64url = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .regex(/^[A-Za-z0-9_-]+=*$/, "must be base64url");

const JobBase = z.object({
  jobId: z.string(),
  messageId: z.string(),
  tenantId: z.string(),
  /** Dispatch number (1 for the first hand-over, +1 on every re-dispatch); part of the job id. */
  attempt: z.number().int().min(1),
  /** Exactly one key, echoed as the outcome's `recipient` (see the header). */
  recipients: z.array(z.string().min(1).max(8_192)).length(1),
  /** The provider connection's id at the edge, for logs and metrics; the origin does not look it up. */
  connectionId: z.string().max(128).optional(),
  /** As on a delivery job (docs/link-protocol.md#retried-messages); absent for a first send. */
  freshFrom: z.number().int().min(1).optional(),
});

// ---------------------------------------------------------------------------------------- SMS

/** Twilio Programmable Messaging (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource). */
export const TwilioProviderSchema = z
  .object({
    kind: z.literal("twilio"),
    accountSid: z.string().min(1).max(64),
    authToken: secret,
    /** A Twilio number or alphanumeric sender id; or `messagingServiceSid`, exactly one of the two. */
    from: z.string().min(1).max(64).optional(),
    messagingServiceSid: z.string().min(1).max(64).optional(),
  })
  .refine((p) => (p.from === undefined) !== (p.messagingServiceSid === undefined), {
    message: "exactly one of from and messagingServiceSid",
  });

/** Vonage SMS API (https://developer.vonage.com/en/api/sms). */
export const VonageProviderSchema = z.object({
  kind: z.literal("vonage"),
  apiKey: z.string().min(1).max(64),
  apiSecret: secret,
  /** E.164 number (without "+", as Vonage takes it, is also accepted) or an alphanumeric sender id. */
  from: z.string().min(1).max(64),
});

export const SmsChannelJobSchema = JobBase.extend({
  channel: z.literal("sms"),
  target: z.object({ to: z.string().regex(E164_PATTERN, "must be an E.164 number (+ and 2–15 digits)") }),
  content: z.object({ body: z.string().min(1).max(MAX_SMS_BODY_CHARS) }),
  provider: z.discriminatedUnion("kind", [TwilioProviderSchema, VonageProviderSchema]),
});

// ---------------------------------------------------------------------------------- mobile push

/** Firebase Cloud Messaging HTTP v1 with a service account (https://firebase.google.com/docs/cloud-messaging/send/v1-api). */
export const FcmProviderSchema = z.object({
  kind: z.literal("fcm"),
  projectId: z.string().min(1).max(128),
  /** The service account's `client_email`. */
  clientEmail: z.string().min(3).max(320),
  /** The service account's `private_key`: a PKCS#8 RSA key in PEM. */
  privateKey: secret,
});

/** Apple Push Notification service with token-based auth (https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns). */
export const ApnsProviderSchema = z.object({
  kind: z.literal("apns"),
  teamId: z.string().min(1).max(32),
  keyId: z.string().min(1).max(32),
  /** The .p8 signing key (PKCS#8 P-256 in PEM). */
  privateKey: secret,
  /** The app's bundle id (`apns-topic`). */
  topic: z.string().min(1).max(256),
  environment: z.enum(["production", "sandbox"]),
});

/** Expo push service (https://docs.expo.dev/push-notifications/sending-notifications/). */
export const ExpoProviderSchema = z.object({
  kind: z.literal("expo"),
  /** Set when the Expo project requires access tokens ("enhanced security for push notifications"). */
  accessToken: secret.optional(),
});

export const PushChannelJobSchema = JobBase.extend({
  channel: z.literal("push"),
  /** A device token: an FCM registration token, an APNs device token (hex), an Expo push token. */
  target: z.object({ token: z.string().min(1).max(4_096) }),
  content: z.object({
    title: z.string().max(MAX_PUSH_TEXT).optional(),
    body: z.string().min(1).max(MAX_PUSH_TEXT),
    data: dataMap.optional(),
    badge: z.number().int().min(0).max(1_000_000).optional(),
    sound: shortText.optional(),
  }),
  provider: z.discriminatedUnion("kind", [FcmProviderSchema, ApnsProviderSchema, ExpoProviderSchema]),
});

// ------------------------------------------------------------------------------------ web push

/** VAPID (RFC 8292): the connection's key pair and contact. */
export const VapidProviderSchema = z.object({
  kind: z.literal("vapid"),
  /** A `mailto:` or `https:` contact URI (RFC 8292 §2.1). */
  subject: z
    .string()
    .max(512)
    .regex(/^(mailto:|https:\/\/)\S+$/, "must be a mailto: or https: URI"),
  /** The uncompressed P-256 public key, base64url (65 bytes → 87 characters). */
  publicKey: base64url(86, 88),
  /** The P-256 private key, base64url (32 bytes → 43 characters). */
  privateKey: base64url(42, 44),
});

/** A browser PushSubscription (https://www.w3.org/TR/push-api/#pushsubscription-interface), its JSON form. */
export const PushSubscriptionSchema = z.object({
  endpoint: z.url().max(2_048),
  keys: z.object({
    /** The user agent's P-256 ECDH public key, base64url (RFC 8291 §3.2). */
    p256dh: base64url(86, 88),
    /** The 16-byte authentication secret, base64url (RFC 8291 §3.2). */
    auth: base64url(22, 24),
  }),
});

export const WebPushChannelJobSchema = JobBase.extend({
  channel: z.literal("web-push"),
  target: z.object({
    subscription: PushSubscriptionSchema,
    /** Seconds the push service keeps an undelivered message (RFC 8030 §5.2); default 4 weeks. */
    ttl: z.number().int().min(0).max(2_419_200).optional(),
    /** RFC 8030 §5.3. */
    urgency: z.enum(["very-low", "low", "normal", "high"]).optional(),
    /** Replaces an undelivered message with the same topic (RFC 8030 §5.4): ≤ 32 base64url characters. */
    topic: z
      .string()
      .max(32)
      .regex(/^[A-Za-z0-9_-]+$/)
      .optional(),
  }),
  /** Sent, encrypted, as this JSON object (what the service worker reads with `event.data.json()`). */
  content: z.object({
    title: z.string().max(MAX_PUSH_TEXT),
    body: z.string().max(MAX_PUSH_TEXT),
    icon: z.string().max(2_048).optional(),
    clickUrl: z.string().max(2_048).optional(),
    data: dataMap.optional(),
    badge: z.number().int().min(0).max(1_000_000).optional(),
  }),
  provider: VapidProviderSchema,
});

export const ChannelJobSchema = z.discriminatedUnion("channel", [
  SmsChannelJobSchema,
  PushChannelJobSchema,
  WebPushChannelJobSchema,
]);
export type ChannelJob = z.infer<typeof ChannelJobSchema>;
export type SmsChannelJob = z.infer<typeof SmsChannelJobSchema>;
export type PushChannelJob = z.infer<typeof PushChannelJobSchema>;
export type WebPushChannelJob = z.infer<typeof WebPushChannelJobSchema>;
export type ChannelProvider = ChannelJob["provider"];

/** True for a channel job (a delivery job has no `channel`). */
export function isChannelJob<T extends object>(job: T | ChannelJob): job is ChannelJob {
  return "channel" in job;
}
