/**
 * The OriginHub's cache of opened DKIM keys must not get around the owner binding of sealed keys
 * (docs/architecture.md, invariant 8: a sealed DKIM key is bound to its domain id by the AES-GCM
 * additional data, so a value copied onto another domain's row does not open). The cache is keyed by
 * domain id + sealed value: a warm entry for domain X's key must not be served to domain Y's message
 * that carries the same sealed value. Issue 6, item 2.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  eventually,
  getMessage,
  type LinkClient,
  linkSettled,
  mailBody,
  openLink,
  sendOne,
  setupTenant,
  resetHub,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

const opened: LinkClient[] = [];
beforeEach(async () => {
  await resetHub();
});
afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

async function sealedKeyOf(domainId: string): Promise<string> {
  const row = await env.DB.prepare("SELECT dkim_private_key_enc AS k FROM sender_domains WHERE id = ?")
    .bind(domainId)
    .first<{ k: string }>();
  return row!.k;
}

describe("the hub's DKIM key cache", () => {
  it("does not serve domain X's opened key to domain Y's message carrying X's sealed key", async () => {
    const x = await setupTenant();
    const y = await setupTenant();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(10);

    // X's message goes out with X's key: the hub has opened it and cached it.
    const idX = await sendOne(x.liveKey, mailBody(x.from));
    const [jobX] = await origin.jobs(1);
    expect(jobX).toMatchObject({ messageId: idX, dkim: { domain: x.domain, selector: "scaisend" } });
    const pemX = jobX!.dkim!.privateKeyPem;
    expect(pemX).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);

    // Y's domain row now carries X's sealed key (what a copied or tampered row looks like). The send
    // path snapshots it into Y's outbox entry, next to Y's domain id.
    const sealedX = await sealedKeyOf(x.domainId);
    const copied = await env.DB.prepare("UPDATE sender_domains SET dkim_private_key_enc = ? WHERE id = ?")
      .bind(sealedX, y.domainId)
      .run();
    expect(copied.meta.changes).toBe(1);
    const idY = await sendOne(y.liveKey, mailBody(y.from));
    const entryY = await runInDurableObject(hub(), (_instance, state) =>
      JSON.parse(
        state.storage.sql
          .exec<{ entry: string }>("SELECT entry FROM outbox_entry WHERE message_id = ?", idY)
          .toArray()[0]?.entry ?? "null",
      ),
    );
    // Or Y's message has already been failed and left the outbox; either way it must not have gone out.
    if (entryY) expect(entryY.dkim).toMatchObject({ domainId: y.domainId, privateKeySealed: sealedX });

    const m = await eventually(
      () => getMessage(y.liveKey, idY),
      (v) => v.status === "failed",
    );
    expect(m.status).toBe("failed");
    expect(m.error_message).toMatch(
      new RegExp(
        `^Could not prepare the message for delivery: the DKIM private key of ${y.domain.replace(/\./g, "\\.")} could not be opened`,
      ),
    );
    // The owner check is what refused it (the AAD names Y's domain id, the value was sealed for X's).
    expect(m.error_message).toContain(y.domainId);
    expect(m.error_message).toContain("sealed for another owner");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);

    // Nothing of Y's went out: the hub has handled every frame and pushed only X's job, and Y's row is gone.
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 1, credits: 9 });
    expect(origin.queued("jobs")).toBe(0);
    expect((await hub().stats()).ready).toBe(0);

    // X's next message is dispatched normally, with X's key (the cache still serves its owner).
    const idX2 = await sendOne(x.liveKey, mailBody(x.from));
    const [jobX2] = await origin.jobs(1);
    expect(jobX2).toMatchObject({ messageId: idX2, dkim: { domain: x.domain, privateKeyPem: pemX } });
    expect((await getMessage(x.liveKey, idX)).status).toBe("processing");
  });
});
