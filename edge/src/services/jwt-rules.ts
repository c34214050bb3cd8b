/** What every ScaiKey-signed token must meet, shared by the JWT verifier and the OIDC client (docs/api/sendgrid.md#scaikey-jwts). */
export const JWT_ALGORITHMS = ["RS256", "ES256"];
export const CLOCK_SKEW_S = 30;
