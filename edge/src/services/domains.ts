/**
 * Sender domains (docs/api/admin.md#sender-domains): create with a fresh RSA-2048 DKIM key (private key sealed at rest),
 * list the DNS records to publish, and verify them through DNS-over-HTTPS. Verification is idempotent.
 */
import { AppError } from "../../../shared/errors.ts";
import { newId } from "../../../shared/ids.ts";
import type { Db } from "../db/client.ts";
import {
  findDomainByName,
  getDomain,
  insertDomain,
  listDomainKeysAfter,
  replaceSealedKeys,
  updateDomain,
  type DomainRow,
  type SealedKeyReplacement,
} from "../db/domains.ts";
import { resealDkimPrivateKey, sealDkimPrivateKey } from "../lib/dkim-key-box.ts";
import { dkimRecordValue, generateDkimKeyPair } from "../lib/dkim-keys.ts";
import { keyId, type Keyring } from "../lib/secret-box.ts";
import { parseTags, type TxtLookup } from "./dns-check.ts";

export const DKIM_SELECTOR = "scaisend";
/** The SPF mechanism that authorizes the origin's servers; the record published is `v=spf1 <this> ~all`. */
export const DEFAULT_SPF_MECHANISM = "mx";

export interface DomainDeps {
  db: Db;
  /** SECRETS_KEY (seals new keys) and SECRETS_KEY_PREVIOUS. */
  secrets: Keyring;
  devMode: boolean;
  now: () => number;
}

export interface DnsRecord {
  purpose: "dkim" | "spf" | "dmarc";
  type: "TXT";
  host: string;
  value: string;
}

export interface CreateDomainInput {
  domain: string;
  dmarcPolicy: "none" | "quarantine" | "reject";
  dmarcRuaEmail?: string | undefined;
}

export async function createDomain(
  deps: DomainDeps,
  tenantId: string,
  input: CreateDomainInput,
): Promise<DomainRow> {
  const domain = input.domain.toLowerCase();
  if (await findDomainByName(deps.db, tenantId, domain)) {
    throw new AppError("conflict", `Domain already exists: ${domain}`);
  }
  const keys = await generateDkimKeyPair();
  const now = deps.now();
  const id = newId("dom", now);
  return insertDomain(deps.db, {
    id,
    tenantId,
    domain,
    dkimSelector: DKIM_SELECTOR,
    dkimPublicKey: keys.publicKeyB64,
    // Bound to this domain's id, so the sealed value opens for no other row.
    dkimPrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, id, keys.privateKeyPem),
    dmarcPolicy: input.dmarcPolicy,
    dmarcRuaEmail: input.dmarcRuaEmail ?? null,
    // Local development only: there is no DNS to publish to, so the domain counts as verified.
    verified: deps.devMode,
    verifiedAt: deps.devMode ? now : null,
    isActive: true,
    createdAt: now,
  });
}

export function dnsRecordsFor(d: DomainRow): DnsRecord[] {
  const dmarc = [
    `v=DMARC1`,
    `p=${d.dmarcPolicy}`,
    ...(d.dmarcRuaEmail ? [`rua=mailto:${d.dmarcRuaEmail}`] : []),
  ];
  return [
    {
      purpose: "dkim",
      type: "TXT",
      host: `${d.dkimSelector}._domainkey.${d.domain}`,
      value: dkimRecordValue(d.dkimPublicKey),
    },
    { purpose: "spf", type: "TXT", host: d.domain, value: `v=spf1 ${DEFAULT_SPF_MECHANISM} ~all` },
    { purpose: "dmarc", type: "TXT", host: `_dmarc.${d.domain}`, value: dmarc.join("; ") },
  ];
}

export async function requireDomain(db: Db, tenantId: string, id: string): Promise<DomainRow> {
  const d = await getDomain(db, tenantId, id);
  if (!d) throw new AppError("not_found", `Domain not found: ${id}`);
  return d;
}

export interface VerifyOutcome {
  domain: DomainRow;
  verified: boolean;
  checks: { purpose: DnsRecord["purpose"]; host: string; ok: boolean; message?: string }[];
  errors: { record: string; message: string }[];
}

/** Checks DKIM (key matches), SPF (a v=spf1 record with our mechanism) and DMARC (a policy exists). */
export async function verifyDomain(
  deps: DomainDeps,
  lookup: TxtLookup,
  tenantId: string,
  id: string,
): Promise<VerifyOutcome> {
  const d = await requireDomain(deps.db, tenantId, id);
  const [dkim, spf, dmarc] = dnsRecordsFor(d);
  const checks = await Promise.all([
    check(dkim!, lookup, (values) =>
      values.some((v) => parseTags(v).get("p") === d.dkimPublicKey)
        ? null
        : values.length === 0
          ? "no DKIM record found"
          : "DKIM record found but its public key (p=) does not match this domain's key",
    ),
    check(spf!, lookup, (values) => {
      const spfs = values.filter((v) => /^v=spf1(\s|$)/i.test(v.trim()));
      if (spfs.length === 0) return "no SPF record (v=spf1) found";
      if (spfs.length > 1)
        return "more than one SPF record found (RFC 7208 §4.5 makes that a permanent error)";
      const terms = spfs[0]!.toLowerCase().split(/\s+/);
      return terms.some((t) => t.replace(/^[+]/, "") === DEFAULT_SPF_MECHANISM)
        ? null
        : `SPF record does not authorize "${DEFAULT_SPF_MECHANISM}"`;
    }),
    check(dmarc!, lookup, (values) =>
      values.some((v) => /^v=DMARC1\s*(;|$)/i.test(v.trim())) ? null : "no DMARC record (v=DMARC1) found",
    ),
  ]);
  // In DEV_MODE a domain counts as verified without DNS (there is nowhere to publish locally), so a
  // check run there reports what it found but never takes the domain back to unverified.
  const verified = deps.devMode || checks.every((c) => c.ok);
  const errors = checks.filter((c) => !c.ok).map((c) => ({ record: c.host, message: c.message ?? "" }));
  const now = deps.now();
  const updated = await updateDomain(deps.db, tenantId, id, {
    verified,
    verifiedAt: verified ? (d.verifiedAt ?? now) : null,
    lastCheckedAt: now,
    lastErrors: errors,
  });
  return { domain: updated ?? d, verified, checks, errors };
}

async function check(
  record: DnsRecord,
  lookup: TxtLookup,
  judge: (values: string[]) => string | null,
): Promise<VerifyOutcome["checks"][number]> {
  try {
    const problem = judge(await lookup(record.host));
    return problem === null
      ? { purpose: record.purpose, host: record.host, ok: true }
      : { purpose: record.purpose, host: record.host, ok: false, message: problem };
  } catch (err) {
    return {
      purpose: record.purpose,
      host: record.host,
      ok: false,
      message: `DNS lookup failed: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

export interface ResealPage {
  /** Id of the key that seals now (SECRETS_KEY). */
  keyId: string;
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: { domainId: string; tenantId: string; domain: string; error: string }[];
  /** Pass back to continue after this page; null when every domain has been examined. */
  nextCursor: string | null;
}

/**
 * One page of a SECRETS_KEY rotation: re-seals the DKIM keys of up to `limit` domains (all tenants,
 * in id order after `cursor`) under the current key. A page is small enough for one Worker request;
 * the operator route and `scaisend secrets reseal` walk the pages. A key that does not open is
 * reported and left untouched, never a reason to stop. Each row is replaced only if it still holds
 * the value that was read, so a concurrent re-seal of the same row cannot be overwritten with a stale one.
 */
export async function resealDomainKeys(
  db: Db,
  secrets: Keyring,
  cursor: string | null,
  limit: number,
): Promise<ResealPage> {
  const rows = await listDomainKeysAfter(db, cursor, limit);
  const page: ResealPage = {
    keyId: await keyId(secrets.current),
    examined: rows.length,
    resealed: 0,
    alreadyCurrent: 0,
    failed: [],
    nextCursor: rows.length === limit ? rows[rows.length - 1]!.id : null,
  };
  const replacements: SealedKeyReplacement[] = [];
  for (const row of rows) {
    const outcome = await resealDkimPrivateKey(secrets, {
      domainId: row.id,
      domain: row.domain,
      privateKeySealed: row.dkimPrivateKeyEnc,
    });
    if (outcome.kind === "current") page.alreadyCurrent += 1;
    else if (outcome.kind === "failed")
      page.failed.push({
        domainId: row.id,
        tenantId: row.tenantId,
        domain: row.domain,
        error: outcome.error,
      });
    else replacements.push({ id: row.id, expected: row.dkimPrivateKeyEnc, next: outcome.sealed });
  }
  page.resealed = await replaceSealedKeys(db, replacements);
  return page;
}
