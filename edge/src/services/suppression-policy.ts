/**
 * The send path's part of suppressions (docs/api/sendgrid.md#suppressions): `asm.group_id` and
 * `asm.groups_to_display` must name unsubscribe groups of the sending tenant (SendGrid's 400
 * otherwise), and the message's outbox entry carries its group and its `bypass_*` mail settings
 * to the check before dispatch (services/suppression-check.ts). Nothing here reads a suppression
 * list: the accept path stays one round trip to the hub plus this one indexed read when `asm` is set.
 */
import { AppError } from "../../../shared/errors.ts";
import { fieldError, type MailSend, type SendGridFieldError } from "../../../shared/sendgrid/mail-send.ts";
import type { Db } from "../db/client.ts";
import { tenantSuppressions } from "../db/suppressions.ts";
import type { Bypass, SuppressionPolicy } from "./suppression-check.ts";

const BYPASS_SETTINGS = [
  ["bypass_list_management", "list"],
  ["bypass_bounce_management", "bounce"],
  ["bypass_spam_management", "spam"],
  ["bypass_unsubscribe_management", "unsubscribe"],
] as const satisfies readonly (readonly [string, Bypass])[];

/** SendGrid's messages for groups the account does not have. */
export const ASM_MESSAGES = {
  groupId: (id: number) => `The ASM group ID must be a valid Group ID on your account. You provided ${id}.`,
  // ours, in the same words
  groupsToDisplay: (id: number) =>
    `The ASM Group IDs to display must be valid Group IDs on your account. You provided ${id}.`,
};

/** 400 unless every group `asm` names is one of the tenant's. */
export async function checkAsm(db: Db, tenantId: string, mail: MailSend): Promise<void> {
  if (!mail.asm) return;
  const wanted = [mail.asm.group_id, ...(mail.asm.groups_to_display ?? [])];
  const known = new Set((await tenantSuppressions(db, tenantId).listGroupsForPage(wanted)).map((g) => g.id));
  const errors: SendGridFieldError[] = [];
  if (!known.has(mail.asm.group_id))
    errors.push(fieldError(["asm", "group_id"], ASM_MESSAGES.groupId(mail.asm.group_id)));
  const missing = (mail.asm.groups_to_display ?? []).find((id) => !known.has(id));
  if (missing !== undefined)
    errors.push(fieldError(["asm", "groups_to_display"], ASM_MESSAGES.groupsToDisplay(missing)));
  if (errors.length > 0)
    throw new AppError("invalid_request", "Unknown unsubscribe group", { fields: errors });
}

/** What the outbox entry carries for the check before dispatch (nothing when the send asks for nothing). */
export function suppressionPolicyOf(mail: MailSend): SuppressionPolicy {
  const bypass = BYPASS_SETTINGS.filter(([key]) => mail.mail_settings?.[key]?.enable === true).map(
    ([, b]) => b,
  );
  return {
    ...(mail.asm
      ? {
          asm: {
            groupId: mail.asm.group_id,
            ...(mail.asm.groups_to_display ? { groupsToDisplay: mail.asm.groups_to_display } : {}),
          },
        }
      : {}),
    ...(bypass.length > 0 ? { bypass } : {}),
  };
}
