/**
 * A live `/v1/send` on sms, push or web-push (docs/channels.md, docs/api/senderkit.md#send): the send
 * resolves its provider connection (the template's override, else the channel's default; none →
 * `400 provider_not_configured`) and becomes ONE message in its hub shard, accepted in one call as a
 * live email is: an outbox entry whose `channel` part the hub turns into a channel job (protocol 6,
 * shared/link/channel-job.ts) with the connection's credentials opened at dispatch, and the same
 * catalog rows (a `messages` row, its one recipient, a `processed` event, the SenderKit row). So the
 * channel message has the email's outbox, lease, retry policy, results and timeline.
 *
 * The message's one recipient key is what the origin echoes in its outcome: the phone number (sms),
 * the device token (push), the subscription's endpoint (web-push).
 */
import { newId } from "../../../../shared/ids.ts";
import {
  PushChannelJobSchema,
  SmsChannelJobSchema,
  WebPushChannelJobSchema,
  type ChannelJob,
  type ChannelName,
} from "../../../../shared/link/channel-job.ts";
import type { SkMessageRow } from "../../db/sk-messages.ts";
import type { NewEvent, NewMessage, NewRecipient } from "../../db/messages.ts";
import type { OutboxEntry } from "../../objects/origin-hub.ts";
import { invalidRequest, zodIssues } from "../../surfaces/senderkit/errors.ts";
import { catalogRowsOf, type AcceptedMessage } from "../outbox-entry.ts";
import type { SendConnection } from "../provider-connections.ts";
import type { RawSend } from "./send-input.ts";

/** The channel part of an outbox entry: the job's target and content, the connection still sealed. */
export interface ChannelEntry {
  channel: ChannelName;
  target: ChannelJob["target"];
  content: ChannelJob["content"];
  connectionId: string;
  credentialsSealed: string;
}

type ChannelSend = Exclude<RawSend, { channel: "email" }>;

const SCHEMAS = { sms: SmsChannelJobSchema, push: PushChannelJobSchema, "web-push": WebPushChannelJobSchema };

/**
 * The send's target and content as the link carries them, checked with the link's own schemas now,
 * so a send the API accepts is a job the origin takes (never a frame it would refuse at dispatch).
 */
export function channelPartsOf(
  send: ChannelSend,
): Pick<ChannelEntry, "target" | "content"> & { key: string } {
  let target: unknown;
  let content: unknown;
  let key: string;
  if (send.channel === "sms") {
    target = { to: send.to };
    content = { body: send.content.body };
    key = send.to;
  } else if (send.channel === "push") {
    const c = send.content;
    target = { token: send.to };
    content = {
      ...(c.title !== "" ? { title: c.title } : {}),
      body: c.body,
      ...(c.data !== undefined ? { data: c.data } : {}),
      ...(c.badge !== undefined ? { badge: c.badge } : {}),
      ...(c.sound !== undefined ? { sound: c.sound } : {}),
    };
    key = send.to;
  } else {
    // The API validated it as a PushSubscription; the job takes endpoint and keys only.
    const sub = JSON.parse(send.to) as { endpoint: string; keys: { p256dh: string; auth: string } };
    target = {
      subscription: { endpoint: sub.endpoint, keys: { p256dh: sub.keys.p256dh, auth: sub.keys.auth } },
    };
    content = send.content;
    key = sub.endpoint;
  }
  const shape = SCHEMAS[send.channel].shape;
  const t = shape.target.safeParse(target);
  if (!t.success) throw invalidRequest("Invalid request body", prefixed(zodIssues(t.error), "to"));
  const c = shape.content.safeParse(content);
  if (!c.success) throw invalidRequest("Invalid request body", prefixed(zodIssues(c.error), "content"));
  return { target: t.data as ChannelJob["target"], content: c.data as ChannelJob["content"], key };
}

function prefixed<T extends { path: (string | number)[] }>(issues: T[], first: string): T[] {
  // A target issue is the `to` field's (its parts are inside the string the caller sent).
  return issues.map((i) => ({ ...i, path: first === "to" ? ["to"] : [first, ...i.path] }));
}

/** The one message of a live channel send, as its hub shard accepts it. */
export function channelAccepted(args: {
  id: string;
  send: ChannelSend;
  row: SkMessageRow;
  connection: SendConnection;
  apiKeyId: string | null;
  notBefore: number;
  now: number;
}): AcceptedMessage {
  const { id, send, row, connection, now } = args;
  const parts = channelPartsOf(send);
  const tenantId = row.tenantId;
  const summary =
    send.channel === "sms"
      ? send.content.body
      : [send.content.title, send.content.body].filter(Boolean).join(": ");
  const entry: OutboxEntry = {
    messageId: id,
    tenantId,
    recipients: [parts.key],
    // The email part stays empty but for the text the catalog shows (its text_body); the job is `channel`.
    message: {
      from: { email: "" },
      to: [{ email: parts.key }],
      subject: "",
      text: summary,
      headers: {},
      messageIdHeader: `${id.slice(4).toLowerCase()}@${send.channel}`,
    },
    dkim: null,
    notBefore: args.notBefore,
    channel: {
      channel: send.channel,
      target: parts.target,
      content: parts.content,
      connectionId: connection.id,
      credentialsSealed: connection.credentialsSealed,
    },
  };
  const message: NewMessage = {
    id,
    tenantId,
    status: "queued",
    mode: "live",
    apiKeyId: args.apiKeyId,
    fromEmail: "",
    fromName: null,
    subject: "",
    toEmails: [parts.key],
    recipients: { to: [{ email: parts.key }], cc: [], bcc: [], replyTo: [] },
    headers: {},
    categories: [],
    customArgs: {},
    textBody: summary,
    htmlBody: null,
    templateId: null,
    batchId: null,
    messageIdHeader: entry.message.messageIdHeader,
    dispatches: 0,
    deferrals: 0,
    createdAt: now,
    updatedAt: now,
  };
  const recipients: NewRecipient[] = [
    { messageId: id, tenantId, email: parts.key.toLowerCase(), kind: "to" },
  ];
  const events: NewEvent[] = [
    {
      id: newId("evt", now),
      tenantId,
      messageId: id,
      eventType: "processed",
      recipientEmail: parts.key.toLowerCase(),
      timestamp: now,
      attempt: 0,
      metadata: { channel: send.channel, provider_connection_id: connection.id },
    },
  ];
  const catalog = catalogRowsOf(message, recipients, events);
  catalog.senderkit = { ...row, id, provider: connection.provider };
  return { entry, catalog };
}
