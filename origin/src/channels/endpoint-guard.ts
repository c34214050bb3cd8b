/**
 * Web push endpoints come from tenants (a browser's PushSubscription, docs/channels.md#the-web-push-endpoint-guard), so
 * the origin must not be made to POST to its own network: an endpoint must be https:// without
 * credentials in it, and every address its host resolves to must be public (the IANA special-purpose
 * registries, origin/src/smtp/address-policy.ts: no loopback, private, link-local, CGNAT or cloud
 * metadata address). The request then connects to the vetted address itself, with the host name
 * only as TLS server name and Host header, so a DNS answer that changes between the check and the
 * connection cannot slip past it. CHANNEL_ALLOW_PRIVATE lifts both rules (tests, closed networks).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { nonPublicReason } from "../smtp/address-policy.ts";

export type VettedEndpoint =
  { ok: true; url: URL; address: string } | { ok: false; reason: string; transient: boolean };

export async function vetEndpoint(raw: string, allowPrivate: boolean): Promise<VettedEndpoint> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: "the endpoint is not a URL", transient: false };
  }
  if (url.protocol !== "https:" && !(allowPrivate && url.protocol === "http:"))
    return { ok: false, reason: `the endpoint must be https://, not ${url.protocol}//`, transient: false };
  if (url.username || url.password)
    return { ok: false, reason: "the endpoint must not carry credentials", transient: false };
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return {
        ok: false,
        reason: `the endpoint's host ${host} does not resolve (${code ?? String(err)})`,
        transient: code !== "ENOTFOUND",
      };
    }
  }
  if (addresses.length === 0)
    return { ok: false, reason: `the endpoint's host ${host} has no address`, transient: true };
  if (!allowPrivate) {
    for (const address of addresses) {
      const why = nonPublicReason(address);
      if (why)
        return {
          ok: false,
          reason: `the endpoint's host ${host} resolves to ${address}: ${why}`,
          transient: false,
        };
    }
  }
  return { ok: true, url, address: addresses[0]! };
}
