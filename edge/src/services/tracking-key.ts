/**
 * The edge's tracking token key (shared/tracking/token.ts): derived from TRACKING_SECRET once per
 * isolate, used here to verify /t/* tokens and handed to origins in the link's welcome, which sign
 * with it (docs/link-protocol.md#tracking). The secret itself never leaves the edge.
 */
import {
  base64url,
  createTrackingSigner,
  deriveTrackingKey,
  type TrackingSigner,
} from "../../../shared/tracking/token.ts";
import type { Config } from "../env.ts";

interface Derived {
  secret: string;
  key: Uint8Array<ArrayBuffer>;
  signer: TrackingSigner;
}
let derived: Promise<Derived> | null = null;

async function derive(secret: string): Promise<Derived> {
  const key = await deriveTrackingKey(secret);
  return { secret, key, signer: createTrackingSigner(key) };
}

function current(config: Pick<Config, "TRACKING_SECRET">): Promise<Derived> {
  const d = derived;
  if (d) {
    return d.then((v) => {
      if (v.secret === config.TRACKING_SECRET) return v;
      derived = derive(config.TRACKING_SECRET);
      return derived;
    });
  }
  derived = derive(config.TRACKING_SECRET);
  derived.catch(() => (derived = null));
  return derived;
}

export async function trackingSigner(config: Pick<Config, "TRACKING_SECRET">): Promise<TrackingSigner> {
  return (await current(config)).signer;
}

/** The welcome frame's `tracking` (shared/link/protocol.ts). */
export async function trackingWelcome(
  config: Pick<Config, "TRACKING_SECRET" | "PUBLIC_URL">,
): Promise<{ key: string; baseUrl?: string }> {
  const { key } = await current(config);
  return { key: base64url(key), ...(config.PUBLIC_URL ? { baseUrl: config.PUBLIC_URL } : {}) };
}
