/**
 * image_embed_mode end to end (docs/api/images.md#image_embed_mode): a PNG uploaded to the image
 * library, a tenant switched to `cid`, a send whose HTML names the library image and an external one,
 * through the edge (wrangler dev) → hub → origin → the loopback MX. At the sink the library image is
 * an inline related part with the uploaded bytes and a cid: src, and the external image is the
 * edge's signed proxy URL — which the real edge, asked for it, refuses because it names a loopback
 * address (SSRF guard), while the same token with another URL is a 400.
 */
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodePng } from "../edge/image-fixtures.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
});

afterAll(async () => {
  await stack?.stop();
});

describe("image_embed_mode through the whole stack", () => {
  it("cid embeds the library image; the external image goes through the guarded proxy", async () => {
    // The edge URL the origin was given (PUBLIC_URL is unset here): the library's url uses the host the API is called on.
    const edge = String(stack.edge.workerUrl).replace(/\/+$/, "");
    const key = await stack.admin.createApiKey(stack.tenantId, {
      name: "images",
      environment: "live",
      scopes: ["templates.write", "templates.read"],
    });
    const png = encodePng(16, 10);
    const form = new FormData();
    form.append("file", new Blob([png], { type: "image/png" }), "logo.png");
    const up = await fetch(`${edge}/v3/images`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.api_key}` },
      body: form,
    });
    expect(up.status, await up.clone().text()).toBe(201);
    const image = (await up.json()) as { id: string; url: string };
    expect(image.url).toBe(`${edge}/i/${image.id}`);

    const put = await fetch(`${edge}/api/admin/tenants/${stack.tenantId}/tracking`, {
      method: "PUT",
      headers: { authorization: `Bearer ${stack.secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ image_embed_mode: "cid" }),
    });
    expect(put.status).toBe(200);

    const external = "http://127.0.0.1:9/secret.png";
    const to = "reader@inbox.test";
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: to }] }],
      from: { email: `news@${SENDER_DOMAIN}` },
      subject: "images",
      content: [
        { type: "text/plain", value: "images" },
        {
          type: "text/html",
          value: `<html><body><img src="${image.url}" alt="logo"><img src="${external}"></body></html>`,
        },
      ],
      tracking_settings: { open_tracking: { enable: false }, click_tracking: { enable: false } },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    await stack.waitForStatus(r.body.message_id as string, ["delivered"], 30_000);
    const m = stack.smtp.messages.find((x) => x.rcptTo.includes(to));
    expect(m).toBeDefined();
    const parsed = await simpleParser(m!.raw);
    expect(parsed.attachments).toHaveLength(1);
    const part = parsed.attachments[0]!;
    expect(part.contentId).toBe(`<${image.id}@scaisend>`);
    expect(part.related).toBe(true);
    expect(new Uint8Array(part.content)).toEqual(png);
    const source = m!.raw.toString("latin1").replace(/=\r\n/g, "").replace(/=3D/g, "=");
    expect(source).toContain(`<img src="cid:${image.id}@scaisend" alt="logo">`);
    const proxy = /<img src="([^"]+\/i\/p\/[^"]+)">/.exec(source)?.[1]?.replace(/&amp;/g, "&");
    expect(proxy).toBeDefined();
    expect(proxy!.startsWith(`${edge}/i/p/`)).toBe(true);
    expect(new URL(proxy!).searchParams.get("u")).toBe(external);

    const refused = await fetch(proxy!);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { detail: string }).detail).toMatch(
      /127\.0\.0\.1 is a non-public address/,
    );
    const reAimed = new URL(proxy!);
    reAimed.searchParams.set("u", "https://example.com/other.png");
    expect((await fetch(reAimed)).status).toBe(400);
  });
});
