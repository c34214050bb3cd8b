/**
 * POST /v1/send (docs/api/senderkit.md#send): validate (services/senderkit/send-input.ts), resolve a
 * template send to its rendered content (services/senderkit/template-send.ts), then one call to the
 * request's hub shard (services/senderkit/send.ts) → 202 `{id, status, livemode}`.
 * `Idempotency-Key` (1–255 printable ASCII, no spaces): a repeat within 24 hours in the same
 * workspace and environment returns the original send (and `Idempotent-Replayed: true`); with a
 * different body it is `422 idempotency_key_reused`. A send with a key goes to the shard that
 * remembers it, so concurrent duplicates meet in one object and make one message.
 */
import { Hono } from "hono";
import { MAX_MAIL_SEND_BYTES } from "../../../../shared/sendgrid/mail-send.ts";
import type { AppEnv } from "../../context.ts";
import { sha256Hex } from "../../lib/crypto.ts";
import { chooseShard, idempotencyKeyHash, layoutOf, type RequestPlace } from "../../lib/shards.ts";
import { hubStub } from "../../services/hub-client.ts";
import { parseSendBody, type RawSend } from "../../services/senderkit/send-input.ts";
import { skSend } from "../../services/senderkit/send.ts";
import { resolveTemplateSend } from "../../services/senderkit/template-send.ts";
import { skPrincipal } from "./auth.ts";
import { sendBudget } from "./budgets.ts";
import { envelopeNotSupported } from "../../services/senderkit/send-input.ts";
import { invalidRequest, SkError } from "./errors.ts";

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export const skSendApi = new Hono<AppEnv>().post("/", sendBudget, async (c) => {
  const principal = skPrincipal(c);
  const headerKey = c.req.header("idempotency-key");
  if (headerKey !== undefined && !IDEMPOTENCY_KEY.test(headerKey)) {
    throw invalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces", [
      {
        code: "custom",
        path: ["Idempotency-Key"],
        message: "1 to 255 printable ASCII characters, no spaces",
      },
    ]);
  }
  const raw = await c.req.text();
  if (raw.length > MAX_MAIL_SEND_BYTES) {
    throw invalidRequest(`The request body is larger than ${MAX_MAIL_SEND_BYTES} bytes`);
  }
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw invalidRequest("The request body is not valid JSON");
  }
  const now = Date.now();
  const parsed = parseSendBody(body, now);
  let send: RawSend;
  let template: { slug: string; pinnedVersion: number | null } | undefined;
  if (parsed.kind === "template") {
    const t = parsed.send;
    const r = await resolveTemplateSend(c.get("db"), {
      tenantId: principal.tenantId,
      mode: principal.environment,
      slug: t.template,
      ...(t.version !== undefined ? { version: t.version } : {}),
      ...(t.channel !== undefined ? { channel: t.channel } : {}),
      vars: t.vars,
    });
    if (!r.ok) throw new SkError(r.status, r.code, r.message);
    const envelope = (["cc", "bcc", "replyTo", "attachments"] as const).filter((f) => t[f] !== undefined);
    if (r.template.channel !== "email" && envelope.length > 0) {
      throw envelopeNotSupported(r.template.channel, [...envelope]);
    }
    const content: Record<string, unknown> = Object.fromEntries(
      Object.entries(r.output).filter(([, v]) => v !== undefined && v !== null && v !== ""),
    );
    if (r.template.channel === "email") {
      for (const f of envelope) content[f] = t[f];
      // SenderKit email needs subject and html; an empty rendered subject is still a subject.
      content.subject = (r.output as { subject?: string }).subject ?? "";
    }
    // The rendered template is a raw send of its channel: the same checks (E.164, subscription JSON…).
    const asRaw = parseSendBody(
      {
        channel: r.template.channel,
        to: t.to,
        content,
        vars: t.vars,
        metadata: t.metadata,
        ...(t.scheduledAt !== undefined ? { scheduledAt: t.scheduledAt } : {}),
      },
      now,
    );
    send = asRaw.send as RawSend;
    template = { slug: r.template.slug, pinnedVersion: r.pinnedVersion };
  } else {
    send = parsed.send;
  }

  const config = c.get("config");
  const scopedKey = headerKey === undefined ? null : `sk:${principal.environment}:${headerKey}`;
  const shard = chooseShard(
    layoutOf(config),
    c.req.raw.cf as RequestPlace | undefined,
    scopedKey === null ? null : idempotencyKeyHash(principal.tenantId, scopedKey),
  );
  const stub = hubStub(c.env, shard);
  const result = await skSend(
    {
      db: c.get("db"),
      shard,
      accept: (req) => stub.accept(req),
      acceptTest: (req) => stub.skAcceptTest(req),
      blobs: c.env.BLOBS,
      quota: {
        monthlyLimit: config.SENDERKIT_MONTHLY_LIMIT,
        gracePercent: config.SENDERKIT_QUOTA_GRACE_PERCENT,
      },
      now: () => now,
      log: (msg, extra) =>
        console.error(JSON.stringify({ level: "warn", msg, requestId: c.get("requestId"), ...extra })),
    },
    principal,
    {
      send,
      ...(template ? { template } : {}),
      ...(headerKey !== undefined ? { idempotency: { key: headerKey, bodyHash: await sha256Hex(raw) } } : {}),
    },
  );
  if (result.replayed) c.header("Idempotent-Replayed", "true");
  return c.json({ id: result.id, status: result.status, livemode: result.livemode }, 202);
});
