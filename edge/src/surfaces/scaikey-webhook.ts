/**
 * `POST /webhooks/scaikey` (docs/scaikey.md#webhook): ScaiKey's identity sync events, applied to the
 * local mirror (services/scaikey-mirror.ts). Authenticated by ScaiKey's signature, not a credential:
 * `X-Scaikey-Signature: t=<unix seconds>,v1=<hex>` where v1 is HMAC-SHA256 over `<t>.<raw body>`
 * keyed with the subscription's signing secret (stored sealed by `scaisend register`).
 *
 * Invariants:
 *  - Every v1 in the header is compared in constant time (lib/crypto.ts); one match is enough, so
 *    ScaiKey may send two during a secret rotation.
 *  - `t` must be within REPLAY_WINDOW_S of the edge's clock; an older signature is refused even if
 *    it is valid, and within the window an event id already applied is answered 200 and not applied
 *    again (db/identity.ts scaikey_events). Records also carry `updated_at`, so a late, older
 *    event never overwrites a newer state.
 *  - Errors are `{"detail": …}`: 401 for the signature (and when no secret is registered), 400 for
 *    a body that is not an event this receiver knows, 409 for a record whose parent is not mirrored
 *    yet (ScaiKey retries it), 413 past MAX_BODY_BYTES.
 */
import { Hono } from "hono";
import type { z } from "zod";
import { AppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";
import { recordScaiKeyEvent, scaiKeyEventSeen } from "../db/identity.ts";
import { timingSafeEqualStrings } from "../lib/crypto.ts";
import { secretsKeyring } from "../lib/dkim-key-box.ts";
import {
  applyMembership,
  applyPartner,
  applyTenant,
  applyUser,
  deletePartner,
  deleteTenant,
  deleteUser,
  type Outcome,
} from "../services/scaikey-mirror.ts";
import {
  DeletedRecord,
  describeIssues,
  EVENT_TYPES,
  EventEnvelope,
  MembershipRecord,
  PartnerRecord,
  TenantRecord,
  UserRecord,
  type EventType,
} from "../services/scaikey-records.ts";
import { webhookSecret } from "../services/scaikey-registration.ts";
import { hmacSignature } from "../services/webhook-signing.ts";
import { renderFastApi } from "./errors.ts";

export const REPLAY_WINDOW_S = 300;
export const MAX_BODY_BYTES = 256 * 1024;
export const SIGNATURE_HEADER = "X-Scaikey-Signature";

const unauthorized = (why: string) => new AppError("unauthorized", why);
const bad = (why: string) => new AppError("invalid_request", why);

/** `t=<digits>,v1=<hex>[,v1=<hex>…]`; anything else is malformed. */
function parseSignature(header: string | undefined): { t: string; v1: string[] } {
  if (header === undefined) throw unauthorized(`Missing ${SIGNATURE_HEADER}`);
  let t: string | undefined;
  const v1: string[] = [];
  for (const part of header.split(",")) {
    const [k, v, ...rest] = part.trim().split("=");
    if (rest.length > 0 || v === undefined) throw unauthorized(`Malformed ${SIGNATURE_HEADER}`);
    if (k === "t" && /^\d{1,12}$/.test(v) && t === undefined) t = v;
    else if (k === "v1" && /^[0-9a-f]{64}$/i.test(v)) v1.push(v.toLowerCase());
    else if (k === "t" || k === "v1") throw unauthorized(`Malformed ${SIGNATURE_HEADER}`);
    // Other schemes (v0, a future v2) are not ours to check: skipped, as Stripe-style headers allow.
  }
  if (t === undefined || v1.length === 0)
    throw unauthorized(`Malformed ${SIGNATURE_HEADER}: needs t= and v1=`);
  return { t, v1 };
}

function parseData<S extends z.ZodType>(schema: S, data: unknown): z.infer<S> {
  const r = schema.safeParse(data);
  if (!r.success) throw bad(`Invalid event data: ${describeIssues(r.error, "data")}`);
  return r.data;
}

export const scaikeyWebhook = new Hono<AppEnv>()
  .post("/", async (c) => {
    const signature = parseSignature(c.req.header(SIGNATURE_HEADER));
    const nowS = Math.floor(Date.now() / 1000);
    if (Math.abs(nowS - Number(signature.t)) > REPLAY_WINDOW_S) {
      throw unauthorized(`${SIGNATURE_HEADER} timestamp is outside the ${REPLAY_WINDOW_S} s window`);
    }
    const tooLarge = () =>
      new AppError("payload_too_large", `The body may be at most ${MAX_BODY_BYTES} bytes`);
    // A declared length over the limit is refused before the body is read.
    if (Number(c.req.header("content-length") ?? 0) > MAX_BODY_BYTES) throw tooLarge();
    const raw = await c.req.arrayBuffer();
    if (raw.byteLength > MAX_BODY_BYTES) throw tooLarge();
    const body = new TextDecoder().decode(raw);
    const db = c.get("db");
    const secret = await webhookSecret(db, secretsKeyring(c.get("config")));
    if (secret === undefined)
      throw unauthorized("No ScaiKey webhook secret is registered on this deployment");
    const expected = await hmacSignature(secret, signature.t, body);
    let matched = false;
    // Every candidate is compared (no early exit), so timing says nothing about which one failed.
    for (const v of signature.v1) if (await timingSafeEqualStrings(v, expected)) matched = true;
    if (!matched) throw unauthorized(`${SIGNATURE_HEADER} does not match the body`);

    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw bad("The body is not valid JSON");
    }
    const envelope = EventEnvelope.safeParse(json);
    if (!envelope.success) throw bad(`Invalid event: ${describeIssues(envelope.error)}`);
    const { id, type, data } = envelope.data;
    if (!(EVENT_TYPES as readonly string[]).includes(type)) {
      throw bad(`Unsupported event type ${JSON.stringify(type)}; supported: ${EVENT_TYPES.join(", ")}`);
    }
    if (await scaiKeyEventSeen(db, id)) return c.json({ id, type, outcome: "duplicate" });
    const now = Date.now();
    let outcome: Outcome;
    switch (type as EventType) {
      case "partner.created":
      case "partner.updated":
        outcome = await applyPartner(db, parseData(PartnerRecord, data), now);
        break;
      case "partner.deleted":
        outcome = await deletePartner(db, parseData(DeletedRecord, data));
        break;
      case "tenant.created":
      case "tenant.updated":
        outcome = await applyTenant(db, parseData(TenantRecord, data), now);
        break;
      case "tenant.deleted":
        outcome = await deleteTenant(db, parseData(DeletedRecord, data), now);
        break;
      case "user.created":
      case "user.updated":
        outcome = await applyUser(db, parseData(UserRecord, data), now);
        break;
      case "user.deleted":
        outcome = await deleteUser(db, parseData(DeletedRecord, data));
        break;
      case "group_membership.created":
      case "group_membership.updated":
        outcome = await applyMembership(db, parseData(MembershipRecord, data), true);
        break;
      case "group_membership.deleted":
        outcome = await applyMembership(db, parseData(MembershipRecord, data), false);
        break;
    }
    // Recorded once applied: a failure above leaves the event for ScaiKey's retry.
    await recordScaiKeyEvent(db, id, now);
    return c.json({ id, type, outcome });
  })
  .onError(renderFastApi);
