/**
 * The submission server's only way in: the edge's own public API, with the client's API key as the
 * Bearer token. `send` is `POST /v3/mail/send`, so authentication, scopes, rate limits, the verified
 * sender check, Idempotency-Key and the hub's durable accept are exactly the API's; `checkKey` is
 * the cheapest authenticated call (`GET /v3/scopes`), made at AUTH and remembered briefly.
 * Every answer becomes the SMTP reply docs/smtp-submission.md#replies lists.
 */
import { createHash } from "node:crypto";
import { SmtpReply } from "./reply.ts";

export interface EdgeClientOptions {
  /** The edge's base URL (EDGE_URL: https, or http on loopback only). */
  edgeUrl: string;
  /** How long one call may take before the client is told to retry (451 / 454). */
  timeoutMs: number;
  /** How long a key that passed `checkKey` is taken as valid without asking again. */
  keyCacheMs: number;
}

export interface EdgeClient {
  /** Resolves when the key may send mail; rejects with SmtpReply 535 (refused) or 454 (try again). */
  checkKey(apiKey: string): Promise<void>;
  /** Resolves with the 250 text; rejects with the SmtpReply for the edge's refusal. */
  send(apiKey: string, json: string, idempotencyKey: string | undefined): Promise<string>;
}

type Answer = { status: number; body: unknown };

/** SendGrid's `{errors:[{field,message}]}` or our `{detail}`, as one line. */
function describe(body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as { errors?: { field?: unknown; message?: unknown }[]; detail?: unknown };
    if (Array.isArray(b.errors) && b.errors.length) {
      return b.errors
        .map((e) => (e.field ? `${String(e.field)}: ${String(e.message)}` : String(e.message)))
        .join("; ");
    }
    if (typeof b.detail === "string") return b.detail;
  }
  return "no details";
}

/** The ids of a 202: `{message_id}` or `{message_ids}` (docs/api/sendgrid.md#post-v3mailsend). */
function queuedAs(body: unknown): string {
  const b = (body ?? {}) as { message_id?: unknown; message_ids?: unknown };
  const ids = Array.isArray(b.message_ids)
    ? b.message_ids.map(String)
    : b.message_id
      ? [String(b.message_id)]
      : [];
  let text = ids.join(" ");
  // A reply line is short (RFC 5321 §4.5.3.1.5); the rest are on GET /v3/messages.
  if (text.length > 380) text = `${ids[0]} and ${ids.length - 1} more`;
  return `2.0.0 Ok: queued as ${text}`;
}

/** The edge's answer to mail/send → the SMTP reply (docs/smtp-submission.md#replies). */
export function sendReply(answer: Answer): { ok: true; message: string } | { ok: false; reply: SmtpReply } {
  const { status, body } = answer;
  const why = describe(body);
  const no = (code: number, text: string) => ({ ok: false as const, reply: new SmtpReply(code, text) });
  if (status === 202 || status === 200) return { ok: true, message: queuedAs(body) };
  if (status === 401) return no(535, `5.7.8 Authentication credentials invalid: ${why}`);
  if (status === 403) return no(550, `5.7.1 ${why}`);
  if (status === 413) return no(552, `5.3.4 Message too big: ${why}`);
  if (status === 400 || status === 415) return no(550, `5.6.0 ${why}`);
  if (status === 422) return no(554, `5.6.0 ${why}`);
  if (status === 429) return no(451, `4.7.1 Rate limit reached, try again later: ${why}`);
  // 5xx and anything unexpected: nothing was accepted that we know of, so the client keeps the
  // message and retries (with the same Idempotency-Key, so a send that did go through is not repeated).
  return no(451, `4.3.0 The service could not accept the message now (HTTP ${status}), try again later`);
}

export function createEdgeClient(opts: EdgeClientOptions): EdgeClient {
  const base = opts.edgeUrl.replace(/\/+$/, "");
  /** sha256(key) → until when it passed; the raw key is not kept beyond the sessions that use it. */
  const valid = new Map<string, number>();

  async function call(path: string, apiKey: string, init: RequestInit = {}): Promise<Answer> {
    const res = await fetch(`${base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${apiKey}`, ...(init.headers as Record<string, string>) },
      redirect: "error",
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    return { status: res.status, body };
  }

  return {
    async checkKey(apiKey) {
      const digest = createHash("sha256").update(apiKey).digest("hex");
      const now = Date.now();
      if ((valid.get(digest) ?? 0) > now) return;
      let answer: Answer;
      try {
        answer = await call("/v3/scopes", apiKey);
      } catch {
        // RFC 4954 §6: 454 is a temporary authentication failure; the client tries again later.
        throw new SmtpReply(454, "4.7.0 Temporary authentication failure, try again later");
      }
      if (answer.status === 200) {
        const scopes = (answer.body as { scopes?: unknown } | null)?.scopes;
        if (!Array.isArray(scopes) || !scopes.includes("mail.send")) {
          throw new SmtpReply(535, "5.7.8 Authentication credentials invalid: the API key lacks mail.send");
        }
        for (const [k, until] of valid) if (until <= now) valid.delete(k);
        valid.set(digest, now + opts.keyCacheMs);
        return;
      }
      if (answer.status === 401 || answer.status === 403) {
        throw new SmtpReply(535, `5.7.8 Authentication credentials invalid: ${describe(answer.body)}`);
      }
      throw new SmtpReply(454, "4.7.0 Temporary authentication failure, try again later");
    },

    async send(apiKey, json, idempotencyKey) {
      let answer: Answer;
      try {
        answer = await call("/v3/mail/send", apiKey, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(idempotencyKey ? { "idempotency-key": idempotencyKey } : {}),
          },
          body: json,
        });
      } catch {
        throw new SmtpReply(451, "4.3.0 The service is unreachable, try again later");
      }
      const reply = sendReply(answer);
      if (!reply.ok) throw reply.reply;
      return reply.message;
    },
  };
}
