/**
 * What a provider connection's credentials must be (docs/channels.md#provider-connections): the
 * admin API's snake_case fields per provider, mapped onto exactly the provider object a channel job
 * carries (shared/link/channel-job.ts), which is validated again with the link's own schema — so a
 * connection that saves is one the origin's adapter (origin/src/channels/*) can use. Private keys
 * are imported with Web Crypto here, so a key that does not parse is a 422 now rather than a
 * `failed` message later.
 *
 * Which fields are secret: the ones sealed and never shown again (the API shows a hint: the last 4
 * characters of a token, a SHA-256 prefix of a PEM key). The others are shown as they are.
 */
import { z } from "zod";
import {
  ApnsProviderSchema,
  ExpoProviderSchema,
  FcmProviderSchema,
  TwilioProviderSchema,
  VapidProviderSchema,
  VonageProviderSchema,
  type ChannelName,
  type ChannelProvider,
} from "../../../shared/link/channel-job.ts";

export const PROVIDERS = ["twilio", "vonage", "fcm", "apns", "expo", "vapid"] as const;
export type ProviderKind = (typeof PROVIDERS)[number];

/** The providers each channel can use. */
export const CHANNEL_PROVIDERS: Record<ChannelName, readonly ProviderKind[]> = {
  sms: ["twilio", "vonage"],
  push: ["fcm", "apns", "expo"],
  "web-push": ["vapid"],
};

type ImportAlgorithm = Parameters<typeof crypto.subtle.importKey>[2];

const text = (max: number) => z.string().min(1).max(max);
const secret = z.string().min(1).max(8_192);

interface ProviderSpec {
  /** The admin API's credentials object (strict: an unknown field is refused, never ignored). */
  input: z.ZodType<Record<string, string>>;
  /** snake_case field → the job's camelCase field. */
  fields: Record<string, string>;
  secrets: readonly string[];
  /** The link's schema for this provider (shared/link/channel-job.ts). */
  link: z.ZodType<unknown>;
  /** A PEM private key field and the algorithm it must import as. */
  pem?: { field: string; algorithm: ImportAlgorithm };
}

const SPECS: Record<ProviderKind, ProviderSpec> = {
  twilio: {
    input: z.strictObject({
      account_sid: text(64),
      auth_token: secret,
      from: text(64).optional(),
      messaging_service_sid: text(64).optional(),
    }),
    fields: {
      account_sid: "accountSid",
      auth_token: "authToken",
      from: "from",
      messaging_service_sid: "messagingServiceSid",
    },
    secrets: ["auth_token"],
    link: TwilioProviderSchema,
  },
  vonage: {
    input: z.strictObject({ api_key: text(64), api_secret: secret, from: text(64) }),
    fields: { api_key: "apiKey", api_secret: "apiSecret", from: "from" },
    secrets: ["api_secret"],
    link: VonageProviderSchema,
  },
  fcm: {
    // The three fields of a Firebase service account's JSON key that the FCM HTTP v1 adapter uses.
    input: z.strictObject({ project_id: text(128), client_email: text(320), private_key: secret }),
    fields: { project_id: "projectId", client_email: "clientEmail", private_key: "privateKey" },
    secrets: ["private_key"],
    link: FcmProviderSchema,
    pem: { field: "private_key", algorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } },
  },
  apns: {
    input: z.strictObject({
      team_id: text(32),
      key_id: text(32),
      private_key: secret,
      topic: text(256),
      environment: z.enum(["production", "sandbox"]),
    }),
    fields: {
      team_id: "teamId",
      key_id: "keyId",
      private_key: "privateKey",
      topic: "topic",
      environment: "environment",
    },
    secrets: ["private_key"],
    link: ApnsProviderSchema,
    pem: { field: "private_key", algorithm: { name: "ECDSA", namedCurve: "P-256" } },
  },
  expo: {
    input: z.strictObject({ access_token: secret.optional() }),
    fields: { access_token: "accessToken" },
    secrets: ["access_token"],
    link: ExpoProviderSchema,
  },
  vapid: {
    input: z.strictObject({ subject: text(512), public_key: text(88), private_key: text(44) }),
    fields: { subject: "subject", public_key: "publicKey", private_key: "privateKey" },
    secrets: ["private_key"],
    link: VapidProviderSchema,
  },
};

export interface CheckedCredentials {
  /** The job's provider object (with `kind`): what is sealed. */
  provider: ChannelProvider;
  /** The fields that are not secret, snake_case, shown by the API. */
  settings: Record<string, string>;
  /** One hint per secret field that is set. */
  hints: Record<string, string>;
}

export type CredentialIssue = { path: (string | number)[]; message: string };

/** Thrown with the issues of a credentials object; the admin surface answers 422 with them. */
export class CredentialsError extends Error {
  override readonly name = "CredentialsError";
  constructor(readonly issues: CredentialIssue[]) {
    super(issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  }
}

/** Validates `raw` as `provider`'s credentials; throws CredentialsError. */
export async function checkCredentials(provider: ProviderKind, raw: unknown): Promise<CheckedCredentials> {
  const spec = SPECS[provider];
  const parsed = spec.input.safeParse(raw);
  if (!parsed.success) {
    throw new CredentialsError(
      parsed.error.issues.map((i) => ({ path: i.path as string[], message: i.message })),
    );
  }
  const out: Record<string, string> = { kind: provider };
  for (const [k, v] of Object.entries(parsed.data)) out[spec.fields[k]!] = v;
  const linked = spec.link.safeParse(out);
  if (!linked.success) {
    const back = Object.fromEntries(Object.entries(spec.fields).map(([s, c]) => [c, s]));
    throw new CredentialsError(
      linked.error.issues.map((i) => ({
        path: i.path.map((p) => (typeof p === "string" ? (back[p] ?? p) : p)) as string[],
        message: i.message,
      })),
    );
  }
  if (spec.pem) {
    const pem = parsed.data[spec.pem.field]!;
    if (!(await importsAsPkcs8(pem, spec.pem.algorithm))) {
      const what = provider === "fcm" ? "an RSA private key" : "a P-256 (.p8) private key";
      throw new CredentialsError([
        { path: [spec.pem.field], message: `must be ${what} in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)` },
      ]);
    }
  }
  const settings: Record<string, string> = {};
  const hints: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed.data)) {
    if (spec.secrets.includes(k)) hints[k] = await hintOf(v);
    else settings[k] = v;
  }
  return { provider: linked.data as ChannelProvider, settings, hints };
}

/** A token's last 4 characters; a PEM key's SHA-256 prefix (its last characters are the footer). */
async function hintOf(value: string): Promise<string> {
  if (!value.includes("-----BEGIN")) return value.length > 8 ? `…${value.slice(-4)}` : "…";
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value.trim())),
  );
  return `sha256:${Array.from(digest.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function importsAsPkcs8(pem: string, algorithm: ImportAlgorithm): Promise<boolean> {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) return false;
  try {
    const der = Uint8Array.from(atob(m[1]!.replace(/\s+/g, "")), (ch) => ch.charCodeAt(0));
    await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
    return true;
  } catch {
    return false;
  }
}
