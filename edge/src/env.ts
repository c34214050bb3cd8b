/**
 * Bindings and configuration. Vars and secrets are zod-parsed once per isolate at the entry point
 * (a misconfigured deployment answers 500 with the list of bad settings instead of failing later);
 * code below receives the typed `Config`, never raw `env.X` strings.
 *
 * The binding types come from `npm run cf-typegen` (`wrangler types`, from wrangler.toml's bindings,
 * [vars] and [secrets] required), written to edge/worker-configuration.d.ts and checked to be current
 * by `npm test`; there is no open index signature, so a misspelt binding name does not type-check.
 */
/// <reference path="../worker-configuration.d.ts" />
import { z } from "zod";
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import { parseAllowlist } from "./services/webhook-ssrf.ts";
import { isHubRegion, LOCATION_HINTS, MAX_SHARDS_PER_REGION, type HubRegion } from "./lib/shards.ts";

/**
 * The generated `Env` plus the optional settings wrangler cannot list: [secrets] required makes a
 * deploy fail when one is missing, and these may be absent (their defaults are in ConfigSchema).
 */
export interface Bindings extends Env {
  /** Rotation only: comma-separated previous SECRETS_KEYs that still open (docs/operations.md). */
  SECRETS_KEY_PREVIOUS?: string;
  MAX_QUEUE_AGE_MS?: string;
  /** Seconds a rotated-out DKIM key stays published (docs/configuration.md, services/dkim-rotation.ts). */
  DKIM_ROTATION_OVERLAP_S?: string;
  /** Host name of the origin's inbound (bounce) server, listed as sender domains' MX (docs/configuration.md). */
  BOUNCE_MX_HOST?: string;
  /** Webhook destinations that may be non-public (docs/configuration.md#webhooks). */
  WEBHOOK_ALLOW_PRIVATE?: string;
  /** How long a failed webhook delivery's body is kept for re-sending (docs/configuration.md#webhooks). */
  WEBHOOK_RESEND_RETENTION_MS?: string;
  /** The edge's public base URL for tracking links (docs/configuration.md#tracking). */
  PUBLIC_URL?: string;
  /** ScaiKey JWTs (docs/configuration.md#scaikey): all three, or none (JWTs then get 401). */
  SCAIKEY_JWKS_URL?: string;
  SCAIKEY_ISSUER?: string;
  SCAIKEY_AUDIENCE?: string;
  /** /v3/auth login through ScaiKey (docs/configuration.md#scaikey): all three, or none. */
  SCAIKEY_CLIENT_ID?: string;
  SCAIKEY_CLIENT_SECRET?: string;
  SCAIKEY_REDIRECT_URI?: string;
}

const isBase64Key = (v: string): boolean => {
  try {
    return atob(v).length === 32;
  } catch {
    return false;
  }
};

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

const secret = (name: string) =>
  z
    .string({ error: `${name} is not set (wrangler secret put ${name}, or .dev.vars locally)` })
    .min(32, `${name} must be at least 32 characters`);

// Vars arrive as strings; a missing one takes the default.
const intFromString = (def: string) => z.coerce.number().int().positive().default(Number(def));

export const ConfigSchema = z.object({
  ORIGIN_TOKEN: secret("ORIGIN_TOKEN"),
  ADMIN_TOKEN: secret("ADMIN_TOKEN"),
  SECRETS_KEY: z
    .string({ error: "SECRETS_KEY is not set (base64 of 32 random bytes)" })
    .refine(isBase64Key, "SECRETS_KEY must be base64 of exactly 32 bytes"),
  // Keys of an unfinished rotation; they open sealed values but never seal (docs/operations.md).
  SECRETS_KEY_PREVIOUS: z
    .string()
    .default("")
    .transform((v) =>
      v
        .split(",")
        .map((k) => k.trim())
        .filter(Boolean),
    )
    .refine(
      (keys) => keys.every(isBase64Key),
      "SECRETS_KEY_PREVIOUS must be comma-separated base64 keys of exactly 32 bytes each",
    ),
  TRACKING_SECRET: secret("TRACKING_SECRET"),
  // Where recipients reach /t/* (tracking links, List-Unsubscribe): https, or http on loopback.
  // Unset: origins use their EDGE_URL (docs/configuration.md#tracking).
  PUBLIC_URL: z
    .preprocess((v) => (v === "" ? undefined : v), z.url().optional())
    .refine((v) => {
      if (v === undefined) return true;
      const u = new URL(v);
      return u.protocol === "https:" || (u.protocol === "http:" && LOOPBACK_HOST.test(u.hostname));
    }, "PUBLIC_URL must be https:// (http:// only for a loopback host)"),
  // Operator configuration, never tenant input; https keeps the answers from being forged on the
  // way, and plain http is allowed only to a resolver on loopback (tests, local development).
  DNS_RESOLVER_URL: z
    .url()
    .default("https://cloudflare-dns.com/dns-query")
    .refine((v) => {
      const u = new URL(v);
      return u.protocol === "https:" || (u.protocol === "http:" && LOOPBACK_HOST.test(u.hostname));
    }, "DNS_RESOLVER_URL must be https:// (http:// only for a loopback resolver)"),
  DNS_TIMEOUT_MS: intFromString("5000"),
  // After a DKIM rotation switches keys, the old record stays listed as required this long (7 days:
  // longer than MAX_QUEUE_AGE_MS, so mail signed with the old key has left the outbox and arrived).
  DKIM_ROTATION_OVERLAP_S: z.coerce
    .number()
    .int()
    .min(0)
    .default(7 * 24 * 3600),
  // The inbound server's host name: sender domains then list (and verify) an MX record pointing
  // at it, where the origin's VERP bounces to `bounces+…@<sender domain>` arrive (docs/bounces.md).
  // Unset when the origin sends with RETURN_PATH_DOMAIN (the operator publishes that one domain's MX).
  BOUNCE_MX_HOST: z
    .string()
    .trim()
    .toLowerCase()
    .regex(
      /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/,
      "BOUNCE_MX_HOST must be a host name such as mx.scaisend.example.com",
    )
    .optional(),
  MAIL_SEND_RATE_LIMIT: intFromString("10000"),
  // SenderKit's /v1: requests per second per API key, sends and reads in separate budgets (docs/api/senderkit.md#rate-limits).
  SENDERKIT_SEND_RATE_LIMIT: intFromString("1000"),
  SENDERKIT_READ_RATE_LIMIT: intFromString("1000"),
  // SenderKit's monthly quota of live sends per tenant (0: none) and its grace, unless the tenant has its own.
  SENDERKIT_MONTHLY_LIMIT: z.coerce.number().int().min(0).default(0),
  SENDERKIT_QUOTA_GRACE_PERCENT: z.coerce.number().int().min(0).max(1000).default(20),
  // How long a `GET /v1/messages?tail=1` stream stays open before the server closes it (clients
  // reconnect and get a fresh backfill; docs/api/senderkit.md#live-tail). One poll loop per stream.
  SENDERKIT_TAIL_MAX_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 3600)
    .default(30 * 60),
  // How long an isolate serves an API key's principal and a tenant's sender domains from memory
  // (edge/src/services/catalog-cache.ts): a revoked key or un-verified domain elsewhere stops working
  // here within this window. 0 turns the cache off.
  AUTH_CACHE_TTL_MS: z.coerce.number().int().min(0).max(300_000).default(10_000),
  RETRY_SCHEDULE: z
    .string()
    .default(DEFAULT_RETRY_SCHEDULE)
    .refine((v) => {
      try {
        parseRetrySchedule(v);
        return true;
      } catch {
        return false;
      }
    }, "RETRY_SCHEDULE must look like 1m,5m,1h*3"),
  // How long a job stays with the origin that acknowledged it without a renewal. Origins renew every
  // LINK_LEASE_MS / 5 and give each job 0.4 × LINK_LEASE_MS (docs/link-protocol.md): deadline < lease < claim.
  LINK_LEASE_MS: intFromString("300000"),
  // Shards and where they live (edge/src/lib/shards.ts, docs/configuration.md). A message id names
  // its shard with one base32 character, hence at most 32 per region.
  HUB_SHARDS: intFromString("1").refine(
    (n) => n <= MAX_SHARDS_PER_REGION,
    `HUB_SHARDS must be at most ${MAX_SHARDS_PER_REGION}`,
  ),
  HUB_REGIONS: z
    .string()
    .default("")
    .transform((v) => [
      ...new Set(
        v
          .split(",")
          .map((r) => r.trim())
          .filter(Boolean),
      ),
    ])
    .refine(
      (rs) => rs.every(isHubRegion),
      `HUB_REGIONS must be a comma-separated list of ${LOCATION_HINTS.join(", ")}`,
    )
    .transform((rs) => rs as HubRegion[]),
  HUB_SHARDS_PER_REGION: intFromString("1").refine(
    (n) => n <= MAX_SHARDS_PER_REGION,
    `HUB_SHARDS_PER_REGION must be at most ${MAX_SHARDS_PER_REGION}`,
  ),
  // How long accepted messages wait in their hub before the batched write to the D1 catalog (list
  // endpoints lag by about this much; GET /v3/messages/{id} does not: it asks the hub).
  CATALOG_FLUSH_MS: intFromString("50"),
  MAX_QUEUE_AGE_MS: intFromString(String(72 * 3600 * 1000)),
  // Host names, addresses and CIDR ranges webhooks may reach although they are not public (the SSRF
  // guard, edge/src/services/webhook-ssrf.ts): an operator's own receiver, or a test's on loopback.
  WEBHOOK_ALLOW_PRIVATE: z
    .string()
    .default("")
    .refine(
      (v) => typeof parseAllowlist(v) !== "string",
      "WEBHOOK_ALLOW_PRIVATE must be comma-separated host names, IP addresses and CIDR ranges",
    ),
  // How long a failed webhook delivery keeps its body so it can be re-sent (objects/webhook-queue.ts,
  // docs/api/webhooks.md#retry-now); at most the 7 days the delivery log keeps the delivery itself.
  WEBHOOK_RESEND_RETENTION_MS: intFromString(String(3 * 24 * 3600 * 1000)).refine(
    (n) => n <= 7 * 24 * 3600 * 1000,
    "WEBHOOK_RESEND_RETENTION_MS must be at most 604800000 (7 days, the delivery log's retention)",
  ),
  // Where ScaiKey publishes the keys its JWTs are signed with, and the `iss` / `aud` they must
  // carry (edge/src/services/jwt-auth.ts). Operator configuration: https, or http on loopback.
  SCAIKEY_JWKS_URL: z
    .preprocess((v) => (v === "" ? undefined : v), z.url().optional())
    .refine((v) => {
      if (v === undefined) return true;
      const u = new URL(v);
      return u.protocol === "https:" || (u.protocol === "http:" && LOOPBACK_HOST.test(u.hostname));
    }, "SCAIKEY_JWKS_URL must be https:// (http:// only for a loopback host)"),
  SCAIKEY_ISSUER: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional()),
  SCAIKEY_AUDIENCE: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional()),
  // The OAuth client ScaiSend is at ScaiKey, for /v3/auth/login, callback and refresh
  // (edge/src/services/oidc.ts); the redirect URI is where ScaiKey sends the browser back.
  SCAIKEY_CLIENT_ID: z.preprocess((v) => (v === "" ? undefined : v), z.string().max(255).optional()),
  SCAIKEY_CLIENT_SECRET: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional()),
  SCAIKEY_REDIRECT_URI: z.preprocess((v) => (v === "" ? undefined : v), z.url().optional()),
  DEV_MODE: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true"),
});

export type Config = z.infer<typeof ConfigSchema>;

const cache = new WeakMap<object, Config>();

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

export function loadConfig(env: Bindings): ConfigResult {
  const hit = cache.get(env);
  if (hit) return { ok: true, config: hit };
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) };
  }
  const scaikey = [parsed.data.SCAIKEY_JWKS_URL, parsed.data.SCAIKEY_ISSUER, parsed.data.SCAIKEY_AUDIENCE];
  if (scaikey.some((v) => v !== undefined) && scaikey.some((v) => v === undefined)) {
    return {
      ok: false,
      problems: [
        "SCAIKEY_JWKS_URL, SCAIKEY_ISSUER and SCAIKEY_AUDIENCE must be set together (or none of them)",
      ],
    };
  }
  const login = [
    parsed.data.SCAIKEY_CLIENT_ID,
    parsed.data.SCAIKEY_CLIENT_SECRET,
    parsed.data.SCAIKEY_REDIRECT_URI,
  ];
  if (login.some((v) => v !== undefined)) {
    const issuer = URL.parse(parsed.data.SCAIKEY_ISSUER ?? "");
    const problem = login.some((v) => v === undefined)
      ? "SCAIKEY_CLIENT_ID, SCAIKEY_CLIENT_SECRET and SCAIKEY_REDIRECT_URI must be set together (or none of them)"
      : parsed.data.SCAIKEY_JWKS_URL === undefined
        ? "SCAIKEY_CLIENT_ID needs SCAIKEY_JWKS_URL, SCAIKEY_ISSUER and SCAIKEY_AUDIENCE"
        : !issuer ||
            !(
              issuer.protocol === "https:" ||
              (issuer.protocol === "http:" && LOOPBACK_HOST.test(issuer.hostname))
            )
          ? "SCAIKEY_ISSUER must be an https:// URL (http:// only for a loopback host) to log in through it"
          : undefined;
    if (problem) return { ok: false, problems: [problem] };
  }
  cache.set(env, parsed.data);
  return { ok: true, config: parsed.data };
}
