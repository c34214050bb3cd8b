// DKIM verification of captured messages with mailauth. The resolver is injected so dev mode
// can answer the `<selector>._domainkey.<domain>` TXT lookup with the record the edge
// published, without real DNS.
import type { DKIMResult, DNSResolver } from "mailauth";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import type { DkimResult, DkimSignatureResult, DkimSummary } from "./types.ts";

/** Without an injected resolver mailauth falls back to real DNS, which may never answer offline. */
const VERIFY_TIMEOUT_MS = 10_000;

export async function verifyDkim(raw: Buffer, resolver: DNSResolver | undefined): Promise<DkimSummary> {
  let timer: NodeJS.Timeout | undefined;
  try {
    // strict: RFC 6376 / 8301 / 8463 as written. The lenient default reports a body hash mismatch
    // as "neutral" and tolerates sloppy tags; a dev inbox exists to catch our signer's mistakes,
    // so it grades like the strictest receiver (body hash mismatch → "fail", RFC 8601 §2.7.1).
    const verified = dkimVerify(raw, { strict: true, ...(resolver ? { resolver } : {}) });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`DKIM verification timed out after ${VERIFY_TIMEOUT_MS} ms`)),
        VERIFY_TIMEOUT_MS,
      );
    });
    const { results } = await Promise.race([verified, timeout]);
    const signatures = results.map(toSignatureResult);
    const primary = signatures.find((s) => s.result === "pass") ?? signatures[0];
    return primary ? { ...primary, signatures } : noneSummary("message not signed");
  } catch (err) {
    // A verifier crash is not the message's fault; report it as a temporary error, RFC 8601 style.
    const comment = err instanceof Error ? err.message : String(err);
    const failed: DkimSignatureResult = {
      result: "temperror",
      domain: null,
      selector: null,
      algo: null,
      comment,
      info: `dkim=temperror (${comment})`,
    };
    return { ...failed, signatures: [failed] };
  } finally {
    clearTimeout(timer);
  }
}

function toSignatureResult(r: DKIMResult): DkimSignatureResult {
  const result = r.status.result as DkimResult;
  return {
    result,
    domain: r.signingDomain ?? null,
    selector: r.selector ?? null,
    algo: r.algo ?? null,
    comment: r.status.comment ?? null,
    info: r.info || `dkim=${result}`,
  };
}

function noneSummary(comment: string): DkimSummary {
  const none: DkimSignatureResult = {
    result: "none",
    domain: null,
    selector: null,
    algo: null,
    comment,
    info: `dkim=none (${comment})`,
  };
  return { ...none, signatures: [none] };
}
