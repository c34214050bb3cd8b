/**
 * D1 side of inbound bounces and complaints: what edge/src/services/inbound-event.ts plans needs
 * reading (the messages and their recipients) and the statements that apply a plan, in one batch.
 * Cross-tenant by design: the hub records bounces for whichever tenant's message a report names
 * (by message id, which only a tenant-scoped send ever produced).
 */
import { and, eq, inArray } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { InboundPlan, InboundTarget } from "../services/inbound-event.ts";
import { chunkRows, type Db } from "./client.ts";
import { events, messageRecipients, messages } from "./schema.ts";

/** Reads what planInboundEvents needs: the messages named and their recipients. */
export async function loadInboundTargets(db: Db, messageIds: string[]): Promise<Map<string, InboundTarget>> {
  const ids = [...new Set(messageIds)];
  const out = new Map<string, InboundTarget>();
  for (const chunk of chunkRows(ids, 1)) {
    const rows = await db
      .select({ id: messages.id, tenantId: messages.tenantId, messageIdHeader: messages.messageIdHeader })
      .from(messages)
      .where(inArray(messages.id, chunk));
    for (const r of rows) out.set(r.id, { ...r, recipients: [] });
  }
  for (const chunk of chunkRows([...out.keys()], 2)) {
    const rows = await db
      .select({ messageId: messageRecipients.messageId, email: messageRecipients.email })
      .from(messageRecipients)
      .where(inArray(messageRecipients.messageId, chunk));
    for (const r of rows) out.get(r.messageId)?.recipients.push(r.email.toLowerCase());
  }
  return out;
}

/** The plan as D1 statements, to run in one batch. */
export function inboundStatements(db: Db, plan: InboundPlan): BatchItem<"sqlite">[] {
  const out: BatchItem<"sqlite">[] = [];
  for (const chunk of chunkRows(plan.events, 8))
    out.push(db.insert(events).values(chunk).onConflictDoNothing());
  for (const b of plan.bounced) {
    out.push(
      db
        .update(messageRecipients)
        .set({ status: "bounced" })
        .where(and(eq(messageRecipients.messageId, b.messageId), eq(messageRecipients.email, b.email))),
    );
  }
  return out;
}
