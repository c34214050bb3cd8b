/**
 * The public tracking routes (docs/api/tracking.md), no authentication: the signed token is the
 * credential (shared/tracking/token.ts).
 *
 *   GET  /t/o/{token}.gif   the open pixel: a 1×1 transparent GIF (42 bytes), never cached
 *   GET  /t/c/{token}?u=…   the click: 302 to `u`, only if the token was signed for exactly that URL
 *   GET  /t/u/{token}       the unsubscribe page
 *   POST /t/u/{token}       its form (action = unsubscribe_all | unsubscribe_group | resubscribe_group,
 *                           group_id for the group actions), and the RFC 8058 one-click POST that
 *                           List-Unsubscribe names (body `List-Unsubscribe=One-Click`)
 *
 * A token that is not one of ours is 404, one whose signature does not match (or a click whose `u`
 * is missing, not http(s), or not the signed URL) 400. Every hit's event is made durable before the
 * answer: one call to the hub shard its message id names, which keeps it and writes it to D1 and the
 * webhooks in batches (services/tracking-events.ts, "Durable path"); the pixel and the click read no
 * other storage. Only if that shard cannot be reached is the event written best effort after the
 * answer (`waitUntil`). The page and its POST read and write the suppression store
 * (edge/src/db/suppressions.ts); a POST applies the suppression before answering, so the next send
 * is dropped, and records its event too (the store's triggers add the same suppression again, which
 * changes nothing).
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../../context.ts";
import { tenantSuppressions } from "../../db/suppressions.ts";
import { getTenant } from "../../db/tenants.ts";
import { trackingSigner } from "../../services/tracking-key.ts";
import { hubStub, ownerOf } from "../../services/hub-client.ts";
import { legacyShardFor } from "../../lib/shards.ts";
import {
  clientOf,
  machineOpen,
  queueTrackingHits,
  trackingEvents,
  writeTrackingEvents,
  type TrackingHit,
} from "../../services/tracking-events.ts";
import type { UnsubscribeClaims } from "../../../../shared/tracking/token.ts";
import { renderConfirmation, renderError, renderUnsubscribePage } from "./unsubscribe-page.ts";

/** GIF89a, 1×1, one transparent colour: 42 bytes. */
export const PIXEL_GIF = Uint8Array.from(
  atob("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"),
  (ch) => ch.charCodeAt(0),
);

const NO_CACHE = {
  "cache-control": "private, no-cache, no-store, must-revalidate",
  pragma: "no-cache",
  expires: "0",
};

/** The largest form body a POST may carry (a handful of group ids). */
const MAX_FORM_BYTES = 8 * 1024;

type C = Context<AppEnv>;

const refusal = (status: 400 | 404, reason: string) =>
  new Response(
    JSON.stringify({ detail: status === 404 ? "Not Found" : `Invalid tracking link: ${reason}` }),
    {
      status,
      headers: { "content-type": "application/json", ...NO_CACHE },
    },
  );

const htmlResponse = (status: number, html: string) =>
  new Response(html, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      ...NO_CACHE,
      // Nothing on the page loads from elsewhere; the forms post to the page itself.
      "content-security-policy":
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
    },
  });

/**
 * Records the hits in the hub shard of their message (ids that name no shard: the unplaced shard
 * their id hashes to), before the answer. A shard that cannot be reached does not fail the hit: its
 * events are written best effort after the answer instead, and the failure is logged.
 * `inOrder` (the unsubscribe POSTs, which change suppressions): the events are written to D1 first,
 * in the request, so their triggers apply in the order of the requests (writeTrackingEvents).
 */
async function record(c: C, hits: TrackingHit[], inOrder = false): Promise<void> {
  const config = c.get("config");
  if (inOrder) await writeTrackingEvents(c.get("db"), await trackingEvents(hits));
  const byShard = new Map<string, { shard: ReturnType<typeof legacyShardFor>; hits: TrackingHit[] }>();
  for (const h of hits) {
    const shard = ownerOf(config, h.messageId) ?? legacyShardFor(h.messageId, config.HUB_SHARDS);
    const key = `${shard.region ?? ""}:${shard.index}`;
    const group = byShard.get(key);
    if (group) group.hits.push(h);
    else byShard.set(key, { shard, hits: [h] });
  }
  await Promise.all(
    [...byShard.values()].map(async ({ shard, hits: list }) => {
      try {
        await hubStub(c.env, shard).recordTracking(await trackingEvents(list));
      } catch (err) {
        console.warn(
          JSON.stringify({
            level: "warn",
            msg: "tracking hit not kept by its hub shard; written best effort",
            events: list.map((h) => `${h.type}:${h.messageId}`),
            error: err instanceof Error ? err.message : String(err),
          }),
        );
        const write = queueTrackingHits(c.get("db"), c.env, list);
        if (write) c.executionCtx.waitUntil(write);
      }
    }),
  );
}

export const trackingApi = new Hono<AppEnv>();

trackingApi.get("/o/:file", async (c) => {
  const file = c.req.param("file");
  if (!file.endsWith(".gif")) return refusal(404, "not a pixel");
  const v = await (await trackingSigner(c.get("config"))).verifyOpen(file.slice(0, -".gif".length));
  if (!v.ok) return refusal(v.status, v.reason);
  const { userAgent, ip } = clientOf(c.req.raw);
  const proxy = machineOpen(userAgent, ip);
  await record(c, [
    {
      type: "open",
      ...v.claims,
      metadata: { user_agent: userAgent, ip, machine_open: proxy !== null, ...(proxy ?? {}) },
      at: Date.now(),
    },
  ]);
  return new Response(PIXEL_GIF, {
    headers: { "content-type": "image/gif", "content-length": String(PIXEL_GIF.length), ...NO_CACHE },
  });
});

trackingApi.get("/c/:token", async (c) => {
  const signer = await trackingSigner(c.get("config"));
  const v = await signer.verifyClick(c.req.param("token"), c.req.query("u") ?? null);
  if (!v.ok) return refusal(v.status, v.reason);
  const { url, ...claims } = v.claims;
  const { userAgent, ip } = clientOf(c.req.raw);
  await record(c, [
    {
      type: "click",
      ...claims,
      discriminator: url,
      metadata: { url, user_agent: userAgent, ip },
      at: Date.now(),
    },
  ]);
  // The URL as serialized by the WHATWG parser: non-ASCII in the path or query percent-encoded and
  // the host in punycode, so the header is ASCII whatever the message's link held.
  return new Response(null, {
    status: 302,
    headers: {
      location: new URL(url).href,
      "cache-control": "private, no-store",
      "referrer-policy": "no-referrer",
    },
  });
});

async function verifiedUnsubscribe(c: C): Promise<UnsubscribeClaims | Response> {
  const v = await (await trackingSigner(c.get("config"))).verifyUnsubscribe(c.req.param("token") ?? "");
  if (v.ok) return v.claims;
  return v.status === 404
    ? htmlResponse(404, renderError("Link not found", "This unsubscribe link is not valid."))
    : htmlResponse(
        400,
        renderError("Invalid link", "This unsubscribe link has been altered and cannot be used."),
      );
}

/** The groups the page shows: the message's groups_to_display, else its own group. */
const pageGroupIds = (t: UnsubscribeClaims) =>
  t.groupsToDisplay.length > 0 ? t.groupsToDisplay : t.asmGroupId !== null ? [t.asmGroupId] : [];

trackingApi.get("/u/:token", async (c) => {
  const t = await verifiedUnsubscribe(c);
  if (t instanceof Response) return t;
  const db = c.get("db");
  const [tenant, groups, unsubscribed, global] = await Promise.all([
    getTenant(db, t.tenantId),
    tenantSuppressions(db, t.tenantId).listGroupsForPage(pageGroupIds(t)),
    tenantSuppressions(db, t.tenantId).groupSuppressionsOf(t.recipient),
    tenantSuppressions(db, t.tenantId).isGloballyUnsubscribed(t.recipient),
  ]);
  if (!tenant) return htmlResponse(404, renderError("Link not found", "This unsubscribe link is not valid."));
  const off = new Set(unsubscribed);
  return htmlResponse(
    200,
    renderUnsubscribePage({
      tenantName: tenant.name,
      recipient: t.recipient,
      groups: groups.map((g) => ({ ...g, unsubscribed: off.has(g.id) })),
      globallyUnsubscribed: global,
    }),
  );
});

trackingApi.post("/u/:token", async (c) => {
  const t = await verifiedUnsubscribe(c);
  if (t instanceof Response) return t;
  const length = Number(c.req.header("content-length") ?? "0");
  if (length > MAX_FORM_BYTES)
    return htmlResponse(413, renderError("Request too large", "The form is too large."));
  const type = (c.req.header("content-type") ?? "").toLowerCase();
  if (!type.startsWith("application/x-www-form-urlencoded") && !type.startsWith("multipart/form-data"))
    return htmlResponse(
      400,
      renderError("Invalid request", "Send the form as application/x-www-form-urlencoded."),
    );
  let form: Record<string, string | File | (string | File)[]>;
  try {
    form = await c.req.parseBody({ all: true });
  } catch {
    return htmlResponse(400, renderError("Invalid request", "The form could not be read."));
  }
  const db = c.get("db");
  const now = Date.now();
  const { ip, userAgent } = clientOf(c.req.raw);
  const base = { tenantId: t.tenantId, messageId: t.messageId, recipient: t.recipient, at: now };
  const values = (k: string) => {
    const v = form[k];
    return (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter(
      (x): x is string => typeof x === "string",
    );
  };

  // RFC 8058 §3.1: the one-click POST; with an ASM group it leaves that group (as SendGrid does).
  if (values("List-Unsubscribe").includes("One-Click")) {
    if (
      t.asmGroupId !== null &&
      (await tenantSuppressions(db, t.tenantId).unsubscribeFromGroup(t.asmGroupId, t.recipient, now))
    ) {
      await record(
        c,
        [
          {
            ...base,
            type: "group_unsubscribe",
            discriminator: String(t.asmGroupId),
            metadata: { asm_group_id: t.asmGroupId, one_click: true, ip, user_agent: userAgent },
          },
        ],
        true,
      );
    } else {
      await tenantSuppressions(db, t.tenantId).unsubscribeGlobally(t.recipient, now);
      await record(
        c,
        [{ ...base, type: "unsubscribe", metadata: { one_click: true, ip, user_agent: userAgent } }],
        true,
      );
    }
    return new Response("Unsubscribed.\n", {
      headers: { "content-type": "text/plain; charset=utf-8", ...NO_CACHE },
    });
  }

  const tenant = await getTenant(db, t.tenantId);
  if (!tenant) return htmlResponse(404, renderError("Link not found", "This unsubscribe link is not valid."));
  const back = new URL(c.req.url).pathname;
  const action = values("action")[0];
  if (action === "unsubscribe_all") {
    await tenantSuppressions(db, t.tenantId).unsubscribeGlobally(t.recipient, now);
    await record(c, [{ ...base, type: "unsubscribe", metadata: { ip, user_agent: userAgent } }], true);
    return htmlResponse(
      200,
      renderConfirmation(
        tenant.name,
        `${t.recipient} is unsubscribed from all email from ${tenant.name}.`,
        back,
      ),
    );
  }
  if (action === "unsubscribe_group" || action === "resubscribe_group") {
    const allowed = new Set(pageGroupIds(t));
    const ids = values("group_id").map((v) => (/^\d{1,15}$/.test(v) ? Number(v) : NaN));
    if (ids.length === 0)
      return htmlResponse(
        400,
        renderError("Nothing selected", "Select at least one type of email (group_id)."),
      );
    if (ids.some((id) => !allowed.has(id)))
      return htmlResponse(
        400,
        renderError("Invalid request", "group_id names a group this message does not offer."),
      );
    const groups = await tenantSuppressions(db, t.tenantId).listGroupsForPage(ids);
    if (groups.length !== new Set(ids).size)
      return htmlResponse(
        400,
        renderError("Invalid request", "group_id names a group that no longer exists."),
      );
    const hits: TrackingHit[] = [];
    for (const g of groups) {
      if (action === "unsubscribe_group")
        await tenantSuppressions(db, t.tenantId).unsubscribeFromGroup(g.id, t.recipient, now);
      else await tenantSuppressions(db, t.tenantId).resubscribeToGroup(g.id, t.recipient);
      hits.push({
        ...base,
        type: action === "unsubscribe_group" ? "group_unsubscribe" : "group_resubscribe",
        discriminator: String(g.id),
        metadata: { asm_group_id: g.id, ip, user_agent: userAgent },
      });
    }
    await record(c, hits, true);
    const names = groups.map((g) => g.name).join(", ");
    return htmlResponse(
      200,
      renderConfirmation(
        tenant.name,
        action === "unsubscribe_group"
          ? `${t.recipient} is unsubscribed from: ${names}.`
          : `${t.recipient} is subscribed again to: ${names}.`,
        back,
      ),
    );
  }
  return htmlResponse(
    400,
    renderError("Invalid request", "action must be unsubscribe_all, unsubscribe_group or resubscribe_group."),
  );
});
