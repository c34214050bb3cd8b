/**
 * Measurement 4: DKIM signing cost per message in the origin's own code path — signDkim() from
 * origin/src/compose/dkim.ts on the ~4 KB benchmark message built by buildMime(), rsa-sha256 (2048)
 * and ed25519-sha256, with the fast path (the default) and with mailauth's dkimSign alone
 * (DKIM_FAST_PATH=false). For scale: buildMime() alone and a bare node:crypto signature.
 */
import { createPrivateKey, sign } from "node:crypto";
import { buildMime } from "../../origin/src/compose/build-mime.ts";
import { signDkim } from "../../origin/src/compose/dkim.ts";
import { buildJobs, ed25519KeyPem, rsaKeyPem, SENDER_DOMAIN } from "./lib/mail.ts";

export interface DkimRow {
  what: string;
  n: number;
  usPerMessage: number;
  perSecond: number;
}
export interface DkimResult {
  messageBytes: number;
  signedBytes: number;
  rows: DkimRow[];
}

async function time(what: string, n: number, fn: () => Promise<unknown> | unknown): Promise<DkimRow> {
  for (let i = 0; i < Math.min(50, n); i++) await fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  return { what, n, usPerMessage: Math.round(us), perSecond: Math.round(1e6 / us) };
}

export async function benchDkim(html: string, quick: boolean): Promise<DkimResult> {
  const n = quick ? 300 : 2000;
  const rsa = rsaKeyPem();
  const ed = ed25519KeyPem();
  const job = buildJobs(1, html, rsa)[0]!;
  const mime = await buildMime(job);
  const key = (privateKeyPem: string) => ({ domain: SENDER_DOMAIN, selector: "scaisend", privateKeyPem });
  const signed = await signDkim(mime, key(rsa));
  const rsaObj = createPrivateKey(rsa);
  const edObj = createPrivateKey(ed);
  const rows = [
    await time("signDkim rsa-sha256 (2048-bit), fast path", n, () => signDkim(mime, key(rsa))),
    await time("signDkim rsa-sha256 (2048-bit), mailauth", n, () =>
      signDkim(mime, key(rsa), { fastPath: false }),
    ),
    await time("signDkim ed25519-sha256, fast path", n, () => signDkim(mime, key(ed))),
    await time("signDkim ed25519-sha256, mailauth", n, () => signDkim(mime, key(ed), { fastPath: false })),
    await time("buildMime (for scale)", n, () => buildMime(job)),
    await time("createPrivateKey(PEM) rsa (cached per thread in signDkim)", n, () => createPrivateKey(rsa)),
    await time("bare crypto.sign rsa-sha256, KeyObject", n, () => sign("sha256", mime, rsaObj)),
    await time("bare crypto.sign ed25519, KeyObject", n, () => sign(null, mime, edObj)),
  ];
  return { messageBytes: mime.length, signedBytes: signed.length, rows };
}
