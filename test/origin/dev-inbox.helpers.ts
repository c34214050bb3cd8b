// Shared set-up of the dev inbox tests: real inboxes on ephemeral loopback ports, stopped after each
// test, nodemailer submitting to them over plain SMTP (the inbox offers no TLS), and messages signed
// with real DKIM keys (mailauth) checked against a resolver that answers one TXT name.
import { generateKeyPairSync } from "node:crypto";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer/index.js";
import { afterEach, expect } from "vitest";
import { startDevInbox } from "../../origin/src/dev-inbox/index.ts";
import type { DevInbox, DevInboxOptions } from "../../origin/src/dev-inbox/index.ts";

/** Inboxes started by `inbox()` in the calling test file, each closed after its test. */
export function useInboxes(): (opts?: DevInboxOptions) => Promise<DevInbox> {
  const started: DevInbox[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((inbox) => inbox.close()));
  });
  return async (opts = {}) => {
    const i = await startDevInbox({ smtpPort: 0, httpPort: 0, ...opts });
    started.push(i);
    return i;
  };
}

/** A nodemailer transport to the inbox's SMTP side; the caller closes it. */
export function transportTo(i: Pick<DevInbox, "smtpPort">) {
  return nodemailer.createTransport({ host: "127.0.0.1", port: i.smtpPort, secure: false, ignoreTLS: true });
}

/** Submits each message in turn over one SMTP connection; returns nodemailer's info per message. */
export async function submit(i: Pick<DevInbox, "smtpPort">, ...mails: Mail.Options[]) {
  const transport = transportTo(i);
  try {
    const infos = [];
    for (const mail of mails) infos.push(await transport.sendMail(mail));
    return infos;
  } finally {
    transport.close();
  }
}

/** Submits one message; nodemailer's info about it. */
export async function submitOne(i: Pick<DevInbox, "smtpPort">, mail: Mail.Options) {
  const [info] = await submit(i, mail);
  if (!info) throw new Error("nodemailer returned no info");
  return info;
}

/** Builds the MIME a nodemailer message compiles to, without any transport. */
export async function buildRaw(mail: Mail.Options): Promise<Buffer> {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "\r\n" });
  const info = await transport.sendMail(mail);
  return info.message as Buffer;
}

export function rsaKey() {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  return { pem, record: `v=DKIM1; k=rsa; p=${spki}` };
}

/** A resolver answering only the one TXT name, as the edge-published record would. */
export function resolverFor(name: string, record: string) {
  const lookups: string[] = [];
  const resolver = async (qname: string, rrtype: string): Promise<string[][]> => {
    lookups.push(`${qname} ${rrtype}`);
    if (rrtype === "TXT" && qname === name) return [[record]];
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${qname}`), { code: "ENOTFOUND" });
  };
  return { resolver, lookups };
}

export async function signed(raw: Buffer, pem: string): Promise<Buffer> {
  const key = { signingDomain: "example.com", selector: "s1", privateKey: pem };
  // mailauth 7.1 signs only what is in signatureData; its typings demand the top-level fields,
  // which the signer ignores (with them alone it returns signatures: "" and errors: []).
  const result = await dkimSign(raw, { ...key, signatureData: [key] });
  expect(result.errors).toEqual([]);
  expect(result.signatures).toMatch(/^DKIM-Signature: /);
  return Buffer.concat([Buffer.from(result.signatures), raw]);
}
