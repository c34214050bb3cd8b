/**
 * Sender domains (docs/api/admin.md#sender-domains): create with a fresh RSA-2048 DKIM key (private key sealed at rest),
 * optionally an Ed25519 key beside it for dual signing (RFC 8463), list the DNS records to publish,
 * and verify them through DNS-over-HTTPS. Verification is idempotent.
 *
 * The Ed25519 key is an addition, never a condition: the domain's `verified` (whether it may send)
 * depends on the RSA DKIM, SPF and DMARC records alone, and the Ed25519 key signs only once a
 * verification has found its record (`dkim_ed25519_verified_at`). So adding or rotating it on a
 * domain that sends never stops its mail, and no message carries a signature whose key is not yet
 * published. Each rotation takes a new selector, so the previous record can stay in DNS until the
 * mail signed with it has been delivered.
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
import { resealDkimPrivateKey, sealDkimPrivateKey, type DkimKeyKind } from "../lib/dkim-key-box.ts";
import {
  dkimRecordValue,
  ed25519DkimRecordValue,
  generateDkimKeyPair,
  generateEd25519DkimKeyPair,
} from "../lib/dkim-keys.ts";
import { keyId, type Keyring } from "../lib/secret-box.ts";
import { parseTags, type TxtLookup } from "./dns-check.ts";

export const DKIM_SELECTOR = "scaisend";
/** Ed25519 selectors are this plus a number that grows with each rotation: scaisend-ed1, scaisend-ed2… */
export const ED25519_SELECTOR_PREFIX = "scaisend-ed";
/** `rsa`: one rsa-sha256 signature; `dual`: rsa-sha256 and ed25519-sha256 (RFC 8463). */
export const DKIM_ALGORITHMS = ["rsa", "dual"] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];
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
  /** Default `rsa`. */
  dkimAlgorithm?: DkimAlgorithm | undefined;
}

/** The columns of a fresh Ed25519 key: a new selector after `previous`, unchecked (checked at once in DEV_MODE). */
async function newEd25519Key(
  deps: DomainDeps,
  domainId: string,
  previous: string | null,
): Promise<
  Pick<
    DomainRow,
    "dkimEd25519Selector" | "dkimEd25519PublicKey" | "dkimEd25519PrivateKeyEnc" | "dkimEd25519VerifiedAt"
  >
> {
  const keys = await generateEd25519DkimKeyPair();
  return {
    dkimEd25519Selector: nextEd25519Selector(previous),
    dkimEd25519PublicKey: keys.publicKeyB64,
    dkimEd25519PrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, domainId, keys.privateKeyPem, "ed25519"),
    // Local development has no DNS to publish to: the key signs at once, as the domain counts as verified.
    dkimEd25519VerifiedAt: deps.devMode ? deps.now() : null,
  };
}

/** scaisend-ed1 first, then one more than the previous selector's number. */
export function nextEd25519Selector(previous: string | null): string {
  const n = previous?.startsWith(ED25519_SELECTOR_PREFIX)
    ? Number(previous.slice(ED25519_SELECTOR_PREFIX.length))
    : 0;
  return `${ED25519_SELECTOR_PREFIX}${Number.isSafeInteger(n) && n > 0 ? n + 1 : 1}`;
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
    ...(input.dkimAlgorithm === "dual" ? await newEd25519Key(deps, id, null) : {}),
    dmarcPolicy: input.dmarcPolicy,
    dmarcRuaEmail: input.dmarcRuaEmail ?? null,
    // Local development only: there is no DNS to publish to, so the domain counts as verified.
    verified: deps.devMode,
    verifiedAt: deps.devMode ? now : null,
    isActive: true,
    createdAt: now,
  });
}

/**
 * Adds an Ed25519 key to a domain, or replaces the one it has (rotation) under the next selector.
 * The new key signs once a verification finds its record; until then the domain's mail carries its
 * RSA signature alone.
 */
export async function rotateEd25519Key(deps: DomainDeps, tenantId: string, id: string): Promise<DomainRow> {
  const d = await requireDomain(deps.db, tenantId, id);
  const updated = await updateDomain(
    deps.db,
    tenantId,
    id,
    await newEd25519Key(deps, d.id, d.dkimEd25519Selector),
  );
  if (!updated) throw new AppError("not_found", `Domain not found: ${id}`);
  return updated;
}

/** Back to RSA only: the Ed25519 key is deleted, and mail enqueued from now on has one signature. */
export async function removeEd25519Key(deps: DomainDeps, tenantId: string, id: string): Promise<DomainRow> {
  await requireDomain(deps.db, tenantId, id);
  const updated = await updateDomain(deps.db, tenantId, id, {
    dkimEd25519Selector: null,
    dkimEd25519PublicKey: null,
    dkimEd25519PrivateKeyEnc: null,
    dkimEd25519VerifiedAt: null,
  });
  if (!updated) throw new AppError("not_found", `Domain not found: ${id}`);
  return updated;
}

export const dkimAlgorithmOf = (d: DomainRow): DkimAlgorithm => (d.dkimEd25519PublicKey ? "dual" : "rsa");

/** The RSA DKIM record, the Ed25519 one (dual signing only), SPF and DMARC, in that order. */
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
    ...(d.dkimEd25519Selector && d.dkimEd25519PublicKey
      ? [
          {
            purpose: "dkim" as const,
            type: "TXT" as const,
            host: `${d.dkimEd25519Selector}._domainkey.${d.domain}`,
            value: ed25519DkimRecordValue(d.dkimEd25519PublicKey),
          },
        ]
      : []),
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

/**
 * Checks DKIM (key matches), SPF (a v=spf1 record with our mechanism) and DMARC (a policy exists);
 * for a dual-signing domain also the Ed25519 DKIM record (k=ed25519 and the key), which decides
 * whether that key signs but not whether the domain is verified (see the header).
 */
export async function verifyDomain(
  deps: DomainDeps,
  lookup: TxtLookup,
  tenantId: string,
  id: string,
): Promise<VerifyOutcome> {
  const d = await requireDomain(deps.db, tenantId, id);
  const records = dnsRecordsFor(d);
  const [dkim, ed25519] = records.filter((r) => r.purpose === "dkim");
  const spf = records.find((r) => r.purpose === "spf");
  const dmarc = records.find((r) => r.purpose === "dmarc");
  const [ed25519Check, ...checks] = await Promise.all([
    ed25519
      ? check(ed25519, lookup, (values) => {
          const tags = values.map(parseTags);
          if (
            tags.some((t) => t.get("p") === d.dkimEd25519PublicKey && t.get("k")?.toLowerCase() === "ed25519")
          )
            return null;
          if (values.length === 0) return "no DKIM record found";
          return tags.some((t) => t.get("p") === d.dkimEd25519PublicKey)
            ? "DKIM record found with this domain's Ed25519 key, but without k=ed25519 (RFC 8463 §4.2)"
            : "DKIM record found but its public key (p=) does not match this domain's Ed25519 key";
        })
      : null,
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
  const now = deps.now();
  // The Ed25519 key signs while its record checks out (always in DEV_MODE, as above).
  const ed25519Signs = ed25519Check !== null && (deps.devMode || ed25519Check.ok);
  const all = ed25519Check ? [checks[0]!, ed25519Check, ...checks.slice(1)] : checks;
  const errors = all.filter((c) => !c.ok).map((c) => ({ record: c.host, message: c.message ?? "" }));
  const updated = await updateDomain(deps.db, tenantId, id, {
    verified,
    verifiedAt: verified ? (d.verifiedAt ?? now) : null,
    ...(ed25519Check
      ? { dkimEd25519VerifiedAt: ed25519Signs ? (d.dkimEd25519VerifiedAt ?? now) : null }
      : {}),
    lastCheckedAt: now,
    lastErrors: errors,
  });
  return { domain: updated ?? d, verified, checks: all, errors };
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
  /** Domains looked at; the other counts are keys (a dual-signing domain has two). */
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: { domainId: string; tenantId: string; domain: string; key: DkimKeyKind; error: string }[];
  /** Pass back to continue after this page; null when every domain has been examined. */
  nextCursor: string | null;
}

/**
 * One page of a SECRETS_KEY rotation: re-seals the DKIM keys (RSA, and Ed25519 where there is one) of up to `limit` domains (all tenants,
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
    const sealed: [DkimKeyKind, string][] = [["rsa", row.dkimPrivateKeyEnc]];
    if (row.dkimEd25519PrivateKeyEnc) sealed.push(["ed25519", row.dkimEd25519PrivateKeyEnc]);
    for (const [key, privateKeySealed] of sealed) {
      const outcome = await resealDkimPrivateKey(
        secrets,
        { domainId: row.id, domain: row.domain, privateKeySealed },
        key,
      );
      if (outcome.kind === "current") page.alreadyCurrent += 1;
      else if (outcome.kind === "failed")
        page.failed.push({
          domainId: row.id,
          tenantId: row.tenantId,
          domain: row.domain,
          key,
          error: outcome.error,
        });
      else replacements.push({ id: row.id, key, expected: privateKeySealed, next: outcome.sealed });
    }
  }
  page.resealed = await replaceSealedKeys(db, replacements);
  return page;
}
