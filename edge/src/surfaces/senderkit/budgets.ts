/**
 * SenderKit's two rate budgets per API key (docs/api/senderkit.md#rate-limits): sends (POST /v1/send,
 * DELETE /v1/messages/{id}) and reads (the rest), so listing never competes with sending. The
 * lease-based limiter of /v3 (middleware/rate-limit.ts); its 429 becomes `rate_limited` with
 * Retry-After and `limit` (errors.ts).
 */
import { rateLimit } from "../../middleware/rate-limit.ts";

export const readBudget = rateLimit({
  name: "sk.read",
  per: "credential",
  limit: (c) => c.SENDERKIT_READ_RATE_LIMIT,
  windowMs: 1000,
});

export const sendBudget = rateLimit({
  name: "sk.send",
  per: "credential",
  limit: (c) => c.SENDERKIT_SEND_RATE_LIMIT,
  windowMs: 1000,
});
