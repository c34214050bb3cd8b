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
 *
 * Bounces: the origin's VERP return path is `bounces+<id>.<tag>@<sender domain>` unless it runs with
 * RETURN_PATH_DOMAIN (origin/src/delivery/verp.ts, docs/bounces.md). With BOUNCE_MX_HOST set (the
 * inbound server's host name), the records add the MX that brings those bounces to it; the SPF
 * record at the domain is the return path's too (RFC 7208 §2.4 checks the MAIL FROM domain). That MX,
 * like the Ed25519 key, is reported but never decides `verified`: a domain whose MX must stay
 * elsewhere can still send (its asynchronous bounces then go there).
 */
import { AppError } from "../../../shared/errors.ts";
import { newId } from "../../../shared/ids.ts";
import type { Db } from "../db/client.ts";
import {
  listDomainKeysAfter,
  replaceSealedKeys,
  type DomainRow,
  type SealedKeyReplacement,
  tenantDomains,
} from "../db/domains.ts";
import { resealDkimPrivateKey, sealDkimPrivateKey, type DkimKeyKind } from "../lib/dkim-key-box.ts";
import {
  dkimRecordValue,
  ed25519DkimRecordValue,
  generateDkimKeyPair,
  generateEd25519DkimKeyPair,
} from "../lib/dkim-keys.ts";
import { keyId, type Keyring } from "../lib/secret-box.ts";
import {
  DEFAULT_ROTATION_OVERLAP_MS,
  ED25519_SELECTOR_PREFIX,
  isEd25519Selector,
  nextEd25519Selector,
  retiredStatus,
  switchToPendingKey,
  type RotationDeps,
} from "./dkim-rotation.ts";
import {
  parseTags,
  toTxtAnswer,
  type MxAnswer,
  type MxLookup,
  type TxtAnswer,
  type TxtLookup,
} from "./dns-check.ts";

export { ED25519_SELECTOR_PREFIX, nextEd25519Selector };

export const DKIM_SELECTOR = "scaisend";
/** `rsa`: one rsa-sha256 signature; `dual`: rsa-sha256 and ed25519-sha256 (RFC 8463). */
export const DKIM_ALGORITHMS = ["rsa", "dual"] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];
/** The SPF mechanism that authorizes the origin's servers; the record published is `v=spf1 <this> ~all`. */
export const DEFAULT_SPF_MECHANISM = "mx";
/** The preference of the bounce MX record suggested (any value works while no other MX is preferred). */
export const BOUNCE_MX_PREFERENCE = 10;

export interface DomainDeps extends RotationDeps {
  db: Db;
  /** SECRETS_KEY (seals new keys) and SECRETS_KEY_PREVIOUS. */
  secrets: Keyring;
  devMode: boolean;
  now: () => number;
  /** BOUNCE_MX_HOST: the inbound server's host name; absent, no bounce MX record is listed or checked. */
  bounceMxHost?: string | undefined;
  /** MX look-ups for the bounce MX check (needed when bounceMxHost is set). */
  mxLookup?: MxLookup | undefined;
}

/**
 * What to do with a record: `required` (publish and keep; verification checks it), `pending` (publish
 * now: a new key that signs once verification finds it), `retiring` (a replaced DKIM key: keep it
 * until `remove_after`, for mail signed before the switch), `removable` (may be deleted from DNS).
 */
export type DnsRecordStatus = "required" | "pending" | "retiring" | "removable";

export interface DnsRecord {
  /** `bounce_mx`: the MX of the return path's domain, where asynchronous bounces (DSNs) arrive. */
  purpose: "dkim" | "spf" | "dmarc" | "bounce_mx";
  type: "TXT" | "MX";
  host: string;
  /** TXT: the record's text; MX: the exchange host name. */
  value: string;
  /** MX only: the preference to publish it with. */
  priority?: number;
  status: DnsRecordStatus;
  /** Retiring DKIM records only: when they become removable (ISO 8601). */
  remove_after?: string;
}

export interface CreateDomainInput {
  domain: string;
  dmarcPolicy: "none" | "quarantine" | "reject";
  dmarcRuaEmail?: string | undefined;
  /** Default `rsa`. */
  dkimAlgorithm?: DkimAlgorithm | undefined;
}

/** The columns of a fresh Ed25519 key under `selector`, unchecked (checked at once in DEV_MODE). */
async function newEd25519Key(
  deps: DomainDeps,
  domainId: string,
  selector: string,
): Promise<
  Pick<
    DomainRow,
    "dkimEd25519Selector" | "dkimEd25519PublicKey" | "dkimEd25519PrivateKeyEnc" | "dkimEd25519VerifiedAt"
  >
> {
  const keys = await generateEd25519DkimKeyPair();
  return {
    dkimEd25519Selector: selector,
    dkimEd25519PublicKey: keys.publicKeyB64,
    dkimEd25519PrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, domainId, keys.privateKeyPem, "ed25519"),
    // Local development has no DNS to publish to: the key signs at once, as the domain counts as verified.
    dkimEd25519VerifiedAt: deps.devMode ? deps.now() : null,
  };
}

export async function createDomain(
  deps: DomainDeps,
  tenantId: string,
  input: CreateDomainInput,
): Promise<DomainRow> {
  const domain = input.domain.toLowerCase();
  if (await tenantDomains(deps.db, tenantId).findDomainByName(domain)) {
    throw new AppError("conflict", `Domain already exists: ${domain}`);
  }
  const keys = await generateDkimKeyPair();
  const now = deps.now();
  const id = newId("dom", now);
  return tenantDomains(deps.db, tenantId).insertDomain({
    id,
    domain,
    dkimSelector: DKIM_SELECTOR,
    dkimPublicKey: keys.publicKeyB64,
    // Bound to this domain's id, so the sealed value opens for no other row.
    dkimPrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, id, keys.privateKeyPem),
    ...(input.dkimAlgorithm === "dual" ? await newEd25519Key(deps, id, nextEd25519Selector()) : {}),
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
  refuseDuringEd25519Rotation(d);
  const updated = await tenantDomains(deps.db, tenantId).updateDomain(
    id,
    await newEd25519Key(
      deps,
      d.id,
      nextEd25519Selector(d.dkimEd25519Selector, ...(d.dkimRetiredKeys ?? []).map((k) => k.selector)),
    ),
    // Not if an Ed25519 rotation started meanwhile: its switch would replace this key.
    { dkimNextSelector: d.dkimNextSelector },
  );
  return updated ?? refusedChange(deps.db, tenantId, id);
}

/** A pending Ed25519 rotation (rotate-dkim) owns the Ed25519 key until it switches: 409 meanwhile. */
function refuseDuringEd25519Rotation(d: DomainRow): void {
  if (isEd25519Selector(d.dkimNextSelector)) {
    throw new AppError(
      "conflict",
      `An Ed25519 rotation is pending for ${d.domain} (selector ${d.dkimNextSelector}): ` +
        "publish its record and verify the domain to complete it first",
    );
  }
}

/** Back to RSA only: the Ed25519 key is deleted, and mail enqueued from now on has one signature. */
export async function removeEd25519Key(deps: DomainDeps, tenantId: string, id: string): Promise<DomainRow> {
  const d = await requireDomain(deps.db, tenantId, id);
  refuseDuringEd25519Rotation(d);
  const updated = await tenantDomains(deps.db, tenantId).updateDomain(
    id,
    {
      dkimEd25519Selector: null,
      dkimEd25519PublicKey: null,
      dkimEd25519PrivateKeyEnc: null,
      dkimEd25519VerifiedAt: null,
    },
    { dkimNextSelector: d.dkimNextSelector },
  );
  return updated ?? refusedChange(deps.db, tenantId, id);
}

/** A guarded update changed nothing: the domain is gone (404), or a rotation started meanwhile (409). */
async function refusedChange(db: Db, tenantId: string, id: string): Promise<never> {
  const d = await requireDomain(db, tenantId, id);
  refuseDuringEd25519Rotation(d);
  throw new AppError("conflict", `${d.domain} changed meanwhile: try again`);
}

export const dkimAlgorithmOf = (d: DomainRow): DkimAlgorithm => (d.dkimEd25519PublicKey ? "dual" : "rsa");

const dkimHost = (selector: string, domain: string) => `${selector}._domainkey.${domain}`;

/** A DKIM record for a key of either algorithm; the selector says which (services/dkim-rotation.ts). */
const dkimValueFor = (selector: string, publicKey: string) =>
  isEd25519Selector(selector) ? ed25519DkimRecordValue(publicKey) : dkimRecordValue(publicKey);

/**
 * The active RSA DKIM record, the Ed25519 one (dual signing only), SPF, DMARC and, with a
 * `bounceMxHost`, the bounce MX, in that order; then, during a rotation, the pending key's record,
 * and the records of replaced keys (services/dkim-rotation.ts), retiring or removable as of `now`.
 */
export function dnsRecordsFor(
  d: DomainRow,
  now: number = Date.now(),
  bounceMxHost?: string | undefined,
): DnsRecord[] {
  const dmarc = [
    `v=DMARC1`,
    `p=${d.dmarcPolicy}`,
    ...(d.dmarcRuaEmail ? [`rua=mailto:${d.dmarcRuaEmail}`] : []),
  ];
  return [
    {
      purpose: "dkim",
      type: "TXT",
      host: dkimHost(d.dkimSelector, d.domain),
      value: dkimRecordValue(d.dkimPublicKey),
      status: "required",
    },
    ...(d.dkimEd25519Selector && d.dkimEd25519PublicKey
      ? [
          {
            purpose: "dkim" as const,
            type: "TXT" as const,
            host: dkimHost(d.dkimEd25519Selector, d.domain),
            value: ed25519DkimRecordValue(d.dkimEd25519PublicKey),
            status: (d.dkimEd25519VerifiedAt === null ? "pending" : "required") as DnsRecordStatus,
          },
        ]
      : []),
    {
      purpose: "spf",
      type: "TXT",
      host: d.domain,
      value: `v=spf1 ${DEFAULT_SPF_MECHANISM} ~all`,
      status: "required",
    },
    {
      purpose: "dmarc",
      type: "TXT",
      host: `_dmarc.${d.domain}`,
      value: dmarc.join("; "),
      status: "required",
    },
    ...(bounceMxHost
      ? [
          {
            purpose: "bounce_mx" as const,
            type: "MX" as const,
            // The VERP return path's domain (origin/src/delivery/verp.ts): the sender domain.
            host: d.domain,
            value: bounceMxHost,
            priority: BOUNCE_MX_PREFERENCE,
            status: "required" as const,
          },
        ]
      : []),
    ...(d.dkimNextSelector && d.dkimNextPublicKey
      ? [
          {
            purpose: "dkim" as const,
            type: "TXT" as const,
            host: dkimHost(d.dkimNextSelector, d.domain),
            value: dkimValueFor(d.dkimNextSelector, d.dkimNextPublicKey),
            status: "pending" as const,
          },
        ]
      : []),
    ...(d.dkimRetiredKeys ?? []).map((k) => ({
      purpose: "dkim" as const,
      type: "TXT" as const,
      host: dkimHost(k.selector, d.domain),
      value: dkimValueFor(k.selector, k.public_key),
      status: retiredStatus(k, now),
      remove_after: new Date(k.retire_at).toISOString().replace(/\.\d{3}Z$/, "Z"),
    })),
  ];
}

export async function requireDomain(db: Db, tenantId: string, id: string): Promise<DomainRow> {
  const d = await tenantDomains(db, tenantId).getDomain(id);
  if (!d) throw new AppError("not_found", `Domain not found: ${id}`);
  return d;
}

/** What `PATCH /api/admin/domains/{id}` may change (docs/api/admin.md#sender-domains). */
export type DomainSettings = Partial<Pick<DomainRow, "isActive" | "dmarcPolicy" | "dmarcRuaEmail">>;

/**
 * Changes a domain's settings as the admin API's PATCH does (the dashboard's DMARC form calls this
 * too); 404 when the tenant has no such domain. The caller forgets the domain in the catalog cache.
 */
export async function updateDomainSettings(
  db: Db,
  tenantId: string,
  id: string,
  patch: DomainSettings,
): Promise<DomainRow> {
  const d = await requireDomain(db, tenantId, id);
  if (Object.keys(patch).length === 0) return d;
  const updated = await tenantDomains(db, tenantId).updateDomain(d.id, patch);
  if (!updated) throw new AppError("not_found", `Domain not found: ${d.id}`);
  return updated;
}

/**
 * Deletes a domain and its keys as `DELETE /api/admin/domains/{id}` does (the dashboard's delete
 * calls this too); 404 when the tenant has no such domain. Returns the deleted row; the caller
 * forgets it in the catalog cache, so live mail from it is refused from then on.
 */
export async function deleteDomain(db: Db, tenantId: string, id: string): Promise<DomainRow> {
  const d = await tenantDomains(db, tenantId).deleteDomain(id);
  if (!d) throw new AppError("not_found", `Domain not found: ${id}`);
  return d;
}

export interface VerifyCheck {
  purpose: DnsRecord["purpose"];
  host: string;
  ok: boolean;
  /** Why it failed; absent when ok. */
  message?: string;
  /** What was looked for (the record value, or the tag that must be in it); on failures only. */
  expected?: string;
  /** The TXT values found at the host (on failures only; empty: none). */
  found?: string[];
}

export interface VerifyOutcome {
  domain: DomainRow;
  verified: boolean;
  checks: VerifyCheck[];
  errors: { record: string; message: string }[];
  /** True when this verification switched signing to a rotation's new key. */
  switchedKey: boolean;
}

/** A judgement on the TXT values at a host: null when it passes, else the problem. */
type Judge = (values: string[]) => string | null;

const nodata = (kind: string, a: TxtAnswer, host: string): string | null =>
  a.nxdomain
    ? `${host} does not exist (NXDOMAIN): no ${kind} record found`
    : a.values.length === 0
      ? `no ${kind} record found`
      : null;

/** A DKIM check for one key: the record must carry `publicKey` in p= (and k=ed25519 for Ed25519). */
function dkimJudge(publicKey: string, kind: "rsa" | "ed25519"): Judge {
  return (values) => {
    const tags = values.map(parseTags);
    const keyOk = (t: Map<string, string>) => t.get("p") === publicKey;
    const kOf = (t: Map<string, string>) => (t.get("k") ?? "rsa").toLowerCase();
    if (kind === "ed25519") {
      if (tags.some((t) => keyOk(t) && kOf(t) === "ed25519")) return null;
      return tags.some(keyOk)
        ? "DKIM record found with this domain's Ed25519 key, but without k=ed25519 (RFC 8463 §4.2)"
        : "DKIM record found but its public key (p=) does not match this domain's Ed25519 key";
    }
    if (tags.some((t) => keyOk(t) && kOf(t) === "rsa")) return null;
    if (tags.some(keyOk))
      return `DKIM record found with this domain's key, but with k=${kOf(tags.find(keyOk)!)} (expected k=rsa)`;
    if (tags.some((t) => t.get("p") === ""))
      return "DKIM record found with an empty p= (a revoked key, RFC 6376 §3.6.1)";
    if (values.length > 1) return `${values.length} TXT records found and none holds this domain's key (p=)`;
    return "DKIM record found but its public key (p=) does not match this domain's key";
  };
}

const spfJudge: Judge = (values) => {
  const spfs = values.filter((v) => /^v=spf1(\s|$)/i.test(v.trim()));
  if (spfs.length === 0) return "no SPF record (v=spf1) found";
  if (spfs.length > 1)
    return `${spfs.length} SPF records found; more than one is a permanent error (RFC 7208 §4.5): merge them into one`;
  const terms = spfs[0]!.toLowerCase().split(/\s+/);
  return terms.some((t) => t.replace(/^[+]/, "") === DEFAULT_SPF_MECHANISM)
    ? null
    : `SPF record does not authorize "${DEFAULT_SPF_MECHANISM}"`;
};

const dmarcJudge: Judge = (values) => {
  const dmarcs = values.filter((v) => /^v=DMARC1\s*(;|$)/i.test(v.trim()));
  if (dmarcs.length === 0) return "no DMARC record (v=DMARC1) found";
  if (dmarcs.length > 1)
    return `${dmarcs.length} DMARC records found; receivers then apply none (RFC 7489 §6.6.3): keep one`;
  const p = parseTags(dmarcs[0]!).get("p")?.toLowerCase();
  if (p === undefined) return "DMARC record has no p= policy tag (RFC 7489 §6.3)";
  if (!["none", "quarantine", "reject"].includes(p))
    return `DMARC record has an invalid policy p=${p} (none, quarantine or reject)`;
  return null;
};

/**
 * The bounce MX check: the MX record set of the return path's domain must send mail to `host`
 * first, so DSNs for VERP addresses reach the inbound server (RFC 5321 §5.1: the lowest preference
 * is tried first, equal ones in any order).
 */
function mxJudge(host: string, answer: MxAnswer & { name: string }): string | null {
  const want = host.toLowerCase();
  if (answer.nxdomain) return `${answer.name} does not exist (NXDOMAIN): no MX record found`;
  const mxs = answer.values;
  if (mxs.length === 0) return "no MX record found";
  if (mxs.some((m) => m.exchange === "")) {
    return "null MX record found (RFC 7505): the domain accepts no mail, so bounces cannot arrive";
  }
  const ours = mxs.filter((m) => m.exchange === want);
  if (ours.length === 0)
    return `MX records point elsewhere (${mxs.map((m) => m.exchange).join(", ")}): bounces would not reach ${want}`;
  const best = Math.min(...ours.map((m) => m.preference));
  const before = mxs.filter((m) => m.exchange !== want && m.preference <= best);
  return before.length === 0
    ? null
    : `${want} is listed with preference ${best}, but ${before.map((m) => `${m.exchange} (${m.preference})`).join(", ")} ` +
        "takes mail before or beside it: some bounces would not reach it";
}

/**
 * Checks DKIM (key matches), SPF (one v=spf1 record with our mechanism) and DMARC (one valid
 * policy); for a dual-signing domain also the Ed25519 DKIM record (k=ed25519 and the key), which
 * decides whether that key signs but not whether the domain is verified (see the header); with a
 * bounce MX host, the domain's MX (reported, not deciding either); and during a rotation the
 * pending key's record: found, it becomes the signing key of its algorithm
 * (services/dkim-rotation.ts). Each failed check names the host, the problem, what was expected
 * and the values found.
 */
export async function verifyDomain(
  deps: DomainDeps,
  lookup: TxtLookup,
  tenantId: string,
  id: string,
): Promise<VerifyOutcome> {
  const d = await requireDomain(deps.db, tenantId, id);
  const now = deps.now();
  const records = dnsRecordsFor(d, now, deps.bounceMxHost);
  const dkim = records[0]!;
  const ed25519 = d.dkimEd25519PublicKey ? records[1]! : undefined;
  const spf = records.find((r) => r.purpose === "spf")!;
  const dmarc = records.find((r) => r.purpose === "dmarc")!;
  const bounceMx = records.find((r) => r.purpose === "bounce_mx");
  const pending = records.find((r) => r.purpose === "dkim" && r.status === "pending" && r !== ed25519);
  const pendingIsEd25519 = isEd25519Selector(d.dkimNextSelector);
  const [ed25519Check, pendingCheck, bounceMxCheck, ...checks] = await Promise.all([
    ed25519
      ? check(ed25519, lookup, "DKIM", ed25519.value, dkimJudge(d.dkimEd25519PublicKey!, "ed25519"))
      : null,
    pending
      ? check(
          pending,
          lookup,
          "DKIM",
          pending.value,
          dkimJudge(d.dkimNextPublicKey!, pendingIsEd25519 ? "ed25519" : "rsa"),
        )
      : null,
    bounceMx ? checkMx(bounceMx, deps.mxLookup) : null,
    check(dkim, lookup, "DKIM", dkim.value, dkimJudge(d.dkimPublicKey, "rsa")),
    check(
      spf,
      lookup,
      "SPF",
      `one record with the "${DEFAULT_SPF_MECHANISM}" term, e.g. ${spf.value}`,
      spfJudge,
    ),
    check(dmarc, lookup, "DMARC", dmarc.value, dmarcJudge),
  ]);
  // In DEV_MODE a domain counts as verified without DNS (there is nowhere to publish locally), so a
  // check run there reports what it found but never takes the domain back to unverified.
  // The pending key's record, once found, stands in for the active one of its algorithm: it becomes that key.
  const switchKey = pendingCheck !== null && pendingCheck.ok;
  const rsaSwitch = switchKey && !pendingIsEd25519;
  const ed25519Switch = switchKey && pendingIsEd25519;
  const dkimOk = checks[0]!.ok || rsaSwitch;
  const verified = deps.devMode || (dkimOk && checks[1]!.ok && checks[2]!.ok);
  // The Ed25519 key signs while its record checks out (always in DEV_MODE, as above).
  const ed25519Signs = ed25519Check !== null && (deps.devMode || ed25519Check.ok);
  const all = [
    // The active key's record no longer counts once the switch retires it.
    ...(rsaSwitch && !checks[0]!.ok ? [] : [checks[0]!]),
    ...(ed25519Check && !(ed25519Switch && !ed25519Check.ok) ? [ed25519Check] : []),
    ...checks.slice(1),
    ...(bounceMxCheck ? [bounceMxCheck] : []),
    ...(pendingCheck ? [pendingCheck] : []),
  ];
  const errors = all.filter((c) => !c.ok).map((c) => ({ record: c.host, message: c.message ?? "" }));
  const patch = {
    verified,
    verifiedAt: verified ? (d.verifiedAt ?? now) : null,
    ...(ed25519Check
      ? { dkimEd25519VerifiedAt: ed25519Signs ? (d.dkimEd25519VerifiedAt ?? now) : null }
      : {}),
    ...(switchKey ? switchToPendingKey(d, now, deps.rotationOverlapMs ?? DEFAULT_ROTATION_OVERLAP_MS) : {}),
    lastCheckedAt: now,
    lastErrors: errors,
  };
  // A switch happens once: only while the row still holds the pending key that was checked.
  const updated = await tenantDomains(deps.db, tenantId).updateDomain(
    id,
    patch,
    switchKey ? { dkimNextSelector: d.dkimNextSelector } : undefined,
  );
  return {
    domain: updated ?? d,
    verified,
    checks: all,
    errors,
    switchedKey: switchKey && updated !== undefined,
  };
}

async function checkMx(record: DnsRecord, lookup: MxLookup | undefined): Promise<VerifyCheck> {
  const expected = `MX ${record.priority ?? BOUNCE_MX_PREFERENCE} ${record.value}, with no other MX preferred`;
  const fail = (message: string, found: string[]): VerifyCheck => ({
    purpose: record.purpose,
    host: record.host,
    ok: false,
    message,
    expected,
    found,
  });
  if (!lookup) return fail("DNS lookup failed: no MX resolver configured", []);
  try {
    const answer = await lookup(record.host);
    const problem = mxJudge(record.value, { ...answer, name: record.host });
    return problem === null
      ? { purpose: record.purpose, host: record.host, ok: true }
      : fail(
          problem,
          answer.values.map((m) => `${m.preference} ${m.exchange === "" ? "." : m.exchange}`),
        );
  } catch (err) {
    return fail(`DNS lookup failed: ${err instanceof Error ? err.message : String(err)}`, []);
  }
}

async function check(
  record: DnsRecord,
  lookup: TxtLookup,
  kind: string,
  expected: string,
  judge: Judge,
): Promise<VerifyCheck> {
  const fail = (message: string, found: string[]): VerifyCheck => ({
    purpose: record.purpose,
    host: record.host,
    ok: false,
    message,
    expected,
    found,
  });
  try {
    const answer = toTxtAnswer(await lookup(record.host));
    const problem = nodata(kind, answer, record.host) ?? judge(answer.values);
    return problem === null
      ? { purpose: record.purpose, host: record.host, ok: true }
      : fail(problem, answer.values);
  } catch (err) {
    return fail(`DNS lookup failed: ${err instanceof Error ? err.message : String(err)}`, []);
  }
}

export interface ResealPage {
  /** Id of the key that seals now (SECRETS_KEY). */
  keyId: string;
  /** Domains looked at; the other counts are keys (a dual-signing domain has two). */
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: {
    domainId: string;
    tenantId: string;
    domain: string;
    key: SealedKeyReplacement["key"];
    error: string;
  }[];
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
    const sealed: [SealedKeyReplacement["key"], string][] = [["rsa", row.dkimPrivateKeyEnc]];
    if (row.dkimEd25519PrivateKeyEnc) sealed.push(["ed25519", row.dkimEd25519PrivateKeyEnc]);
    // A pending rotation's key is sealed like the key it replaces (it becomes that column's value);
    // the column keeps its historical name `rsa_next` for both.
    if (row.dkimNextPrivateKeyEnc) sealed.push(["rsa_next", row.dkimNextPrivateKeyEnc]);
    for (const [key, privateKeySealed] of sealed) {
      const kind: DkimKeyKind =
        key === "ed25519" || (key === "rsa_next" && isEd25519Selector(row.dkimNextSelector))
          ? "ed25519"
          : "rsa";
      const outcome = await resealDkimPrivateKey(
        secrets,
        { domainId: row.id, domain: row.domain, privateKeySealed },
        kind,
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
