/**
 * The origin settings of the channel adapters (docs/channels.md#configuration), spread into
 * OriginConfigSchema (origin/src/config.ts). Provider hosts are fixed public ones; an operator may point
 * one elsewhere (a regional endpoint, a proxy, a loopback fake in tests), tenants never can. An
 * override must be https://, or http:// to a loopback host (the same rule as EDGE_URL): these requests
 * carry the providers' credentials.
 */
import { z } from "zod";
import { isLoopbackHost } from "../smtp/address-policy.ts";

const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

const providerUrl = (name: string, fallback: string) =>
  z
    .url()
    .superRefine((value, ctx) => {
      const url = new URL(value);
      if (url.protocol === "https:") return;
      if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return;
      ctx.addIssue({
        code: "custom",
        message: `must be https:// (http:// only for loopback hosts): it carries the ${name} credentials`,
      });
    })
    .transform((v) => v.replace(/\/+$/, ""))
    .default(fallback)
    .describe(`Base URL of ${name} (default ${fallback}); operators only, e.g. for a regional endpoint`);

export const DEFAULT_URLS = {
  twilio: "https://api.twilio.com",
  vonage: "https://rest.nexmo.com",
  fcm: "https://fcm.googleapis.com",
  fcmToken: "https://oauth2.googleapis.com/token",
  apnsProduction: "https://api.push.apple.com",
  apnsSandbox: "https://api.sandbox.push.apple.com",
  expo: "https://exp.host",
} as const;

export const channelConfigShape = {
  CHANNEL_TWILIO_API_URL: providerUrl("Twilio's Messages API", DEFAULT_URLS.twilio),
  CHANNEL_VONAGE_API_URL: providerUrl("Vonage's SMS API", DEFAULT_URLS.vonage),
  CHANNEL_FCM_API_URL: providerUrl("FCM's HTTP v1 API", DEFAULT_URLS.fcm),
  CHANNEL_FCM_TOKEN_URL: providerUrl("Google's OAuth 2.0 token endpoint (FCM)", DEFAULT_URLS.fcmToken),
  CHANNEL_APNS_URL: providerUrl("APNs (production)", DEFAULT_URLS.apnsProduction),
  CHANNEL_APNS_SANDBOX_URL: providerUrl("APNs (sandbox)", DEFAULT_URLS.apnsSandbox),
  CHANNEL_EXPO_API_URL: providerUrl("Expo's push API", DEFAULT_URLS.expo),
  CHANNEL_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(120_000)
    .default(15_000)
    .describe(
      "Longest one provider or push service request may take (connect to last byte) before the job is deferred",
    ),
  CHANNEL_ALLOW_PRIVATE: bool
    .default(false)
    .describe(
      "Let web push endpoints be http:// and resolve to private, loopback or link-local addresses (tests, closed networks); off: https:// and public addresses only",
    ),
};

export interface ChannelConfig {
  CHANNEL_TWILIO_API_URL: string;
  CHANNEL_VONAGE_API_URL: string;
  CHANNEL_FCM_API_URL: string;
  CHANNEL_FCM_TOKEN_URL: string;
  CHANNEL_APNS_URL: string;
  CHANNEL_APNS_SANDBOX_URL: string;
  CHANNEL_EXPO_API_URL: string;
  CHANNEL_TIMEOUT_MS: number;
  CHANNEL_ALLOW_PRIVATE: boolean;
}

/** The settings with every default applied (tests pass the overrides they need). */
export function channelConfig(overrides: Partial<ChannelConfig> = {}): ChannelConfig {
  return { ...z.object(channelConfigShape).parse({}), ...overrides };
}
