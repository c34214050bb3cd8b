/**
 * The /v3/auth login settings (docs/configuration.md#scaikey): the SCAIKEY_CLIENT_* settings when
 * they are set, otherwise the client `scaisend register` registered (docs/scaikey.md#register), whose
 * secret is sealed in D1. Either way the issuer and key set are SCAIKEY_ISSUER / SCAIKEY_JWKS_URL,
 * so a registration made against another issuer is not used.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Db } from "../db/client.ts";
import type { Config } from "../env.ts";
import { secretsKeyring } from "../lib/dkim-key-box.ts";
import type { OidcSettings } from "./oidc.ts";
import { registeredClient } from "./scaikey-registration.ts";

const notConfigured = () =>
  // Not a fault of the moment (503) but a feature this deployment does not serve.
  new AppError("not_found", "Login through ScaiKey is not configured on this deployment");

export async function oidcSettings(config: Config, db: Db): Promise<OidcSettings> {
  const { SCAIKEY_ISSUER, SCAIKEY_CLIENT_ID, SCAIKEY_CLIENT_SECRET, SCAIKEY_REDIRECT_URI, SCAIKEY_JWKS_URL } =
    config;
  if (!SCAIKEY_ISSUER || !SCAIKEY_JWKS_URL) throw notConfigured();
  const secrets = secretsKeyring(config);
  if (SCAIKEY_CLIENT_ID && SCAIKEY_CLIENT_SECRET && SCAIKEY_REDIRECT_URI) {
    return {
      issuer: SCAIKEY_ISSUER,
      clientId: SCAIKEY_CLIENT_ID,
      clientSecret: SCAIKEY_CLIENT_SECRET,
      redirectUri: SCAIKEY_REDIRECT_URI,
      jwksUrl: SCAIKEY_JWKS_URL,
      secrets,
    };
  }
  const client = await registeredClient(db, secrets);
  if (!client || client.issuer !== SCAIKEY_ISSUER) throw notConfigured();
  return { ...client, jwksUrl: SCAIKEY_JWKS_URL, secrets };
}
