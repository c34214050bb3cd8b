/** The /v3/auth login settings from the configuration (docs/configuration.md#scaikey). */
import { AppError } from "../../../shared/errors.ts";
import type { Config } from "../env.ts";
import { secretsKeyring } from "../lib/dkim-key-box.ts";
import type { OidcSettings } from "./oidc.ts";

export function oidcSettings(config: Config): OidcSettings {
  const { SCAIKEY_ISSUER, SCAIKEY_CLIENT_ID, SCAIKEY_CLIENT_SECRET, SCAIKEY_REDIRECT_URI, SCAIKEY_JWKS_URL } =
    config;
  if (
    !SCAIKEY_ISSUER ||
    !SCAIKEY_CLIENT_ID ||
    !SCAIKEY_CLIENT_SECRET ||
    !SCAIKEY_REDIRECT_URI ||
    !SCAIKEY_JWKS_URL
  ) {
    // Not a fault of the moment (503) but a feature this deployment does not serve.
    throw new AppError("not_found", "Login through ScaiKey is not configured on this deployment");
  }
  return {
    issuer: SCAIKEY_ISSUER,
    clientId: SCAIKEY_CLIENT_ID,
    clientSecret: SCAIKEY_CLIENT_SECRET,
    redirectUri: SCAIKEY_REDIRECT_URI,
    jwksUrl: SCAIKEY_JWKS_URL,
    secrets: secretsKeyring(config),
  };
}
