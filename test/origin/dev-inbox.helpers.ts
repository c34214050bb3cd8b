// Shared set-up of the dev inbox tests: real inboxes on ephemeral loopback ports, stopped after each
// test, and nodemailer submitting to them over plain SMTP (the inbox offers no TLS).
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer/index.js";
import { afterEach } from "vitest";
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
