/**
 * Tracking end to end with real parts: a send with open and click tracking through the edge
 * (wrangler dev) → hub → origin (which signs the links with the key the welcome gave it) → the
 * loopback MX. At the sink the links are rewritten, the pixel is in, List-Unsubscribe and
 * List-Unsubscribe-Post are there and DKIM-signed; fetching the pixel and the link through the edge
 * records `open` and `click` on the message; the RFC 8058 one-click POST unsubscribes, and the next
 * send to that address is `dropped` before dispatch. Then the unsubscribe page in a real headless
 * Chromium (Debian's /usr/bin/chromium, driven by playwright-core): it loads, its buttons work,
 * and the result is shown.
 */
import { existsSync } from "node:fs";
import { simpleParser } from "mailparser";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

async function send(to: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
    personalizations: [{ to: [{ email: to }] }],
    from: { email: `news@${SENDER_DOMAIN}` },
    subject: `tracked for ${to}`,
    content: [
      { type: "text/plain", value: "Visit https://shop.example.com/offer today" },
      {
        type: "text/html",
        value: `<html><body><p>Hello</p><a href="https://shop.example.com/offer?id=1&amp;c=2">Offer</a> <a href="mailto:help@example.com">Help</a></body></html>`,
      },
    ],
    tracking_settings: {
      open_tracking: { enable: true },
      click_tracking: { enable: true, enable_text: true },
    },
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body.message_id as string;
}

async function delivered(to: string, messageId: string) {
  await stack.waitForStatus(messageId, ["delivered"], 30_000);
  const m = stack.smtp.messages.find((x) => x.rcptTo.includes(to));
  expect(m, `a message for ${to} at the sink`).toBeDefined();
  return { raw: m!.raw, parsed: await simpleParser(m!.raw) };
}

const unfolded = (raw: Buffer) => raw.toString("latin1").replace(/\r\n[ \t]+/g, " ");
const listUnsubscribeOf = (raw: Buffer) => /^List-Unsubscribe: <([^>]+)>\r$/m.exec(unfolded(raw))?.[1];

describe("opens, clicks and one-click unsubscribe", () => {
  it("rewrites the links, and the pixel and the link through the edge record open and click", async () => {
    const to = "reader@inbox.test";
    const id = await send(to);
    const { raw, parsed } = await delivered(to, id);
    const html = String(parsed.html);
    const clickHref = /<a href="([^"]+)">Offer<\/a>/.exec(html)?.[1]?.replace(/&amp;/g, "&");
    // Under the edge URL the origin was given (its link's EDGE_URL: PUBLIC_URL is unset here).
    expect(clickHref).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/t\/c\/[\w-]+\.[\w-]+\?u=/);
    expect(new URL(clickHref!).searchParams.get("u")).toBe("https://shop.example.com/offer?id=1&c=2");
    expect(html).toContain('<a href="mailto:help@example.com">Help</a>');
    const pixel = /<img src="([^"]+\/t\/o\/[^"]+\.gif)" width="1" height="1"/.exec(html)?.[1];
    expect(pixel).toBeDefined();
    expect(html.indexOf(pixel!)).toBeLessThan(html.indexOf("</body>"));
    expect(String(parsed.text)).toMatch(
      /Visit \S+\/t\/c\/\S+\?u=https%3A%2F%2Fshop\.example\.com%2Foffer today/,
    );
    expect(unfolded(raw)).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    expect(listUnsubscribeOf(raw)).toMatch(/\/t\/u\/[\w-]+\.[\w-]+$/);
    const dkimH = /^DKIM-Signature:.*?\bh=([^;]+);/m
      .exec(unfolded(raw))?.[1]
      ?.replace(/\s/g, "")
      .toLowerCase();
    expect(dkimH?.split(":")).toEqual(expect.arrayContaining(["list-unsubscribe", "list-unsubscribe-post"]));

    const gif = await fetch(pixel!, { headers: { "user-agent": "E2E Mail Reader/1.0" } });
    expect(gif.status).toBe(200);
    expect(gif.headers.get("content-type")).toBe("image/gif");
    expect((await gif.arrayBuffer()).byteLength).toBe(42);
    const click = await fetch(clickHref!, { redirect: "manual" });
    expect(click.status).toBe(302);
    expect(click.headers.get("location")).toBe("https://shop.example.com/offer?id=1&c=2");
    // The same token pointed at another URL is refused.
    const evil = new URL(clickHref!);
    evil.searchParams.set("u", "https://evil.example/");
    expect((await fetch(evil, { redirect: "manual" })).status).toBe(400);

    const m = await stack.waitForMessage(
      id,
      (b) => ["open", "click"].every((t) => b.events.some((e: { event_type: string }) => e.event_type === t)),
      20_000,
    );
    const open = m.events.find((e: { event_type: string }) => e.event_type === "open");
    const clickEvent = m.events.find((e: { event_type: string }) => e.event_type === "click");
    expect(open).toMatchObject({
      recipient_email: to,
      metadata: { user_agent: "E2E Mail Reader/1.0", machine_open: false },
    });
    expect(clickEvent).toMatchObject({
      recipient_email: to,
      metadata: { url: "https://shop.example.com/offer?id=1&c=2" },
    });
  });

  it("the one-click POST unsubscribes, and the next send to that address is dropped", async () => {
    const to = "leaver@inbox.test";
    const first = await send(to);
    const { raw } = await delivered(to, first);
    const target = listUnsubscribeOf(raw)!;
    // RFC 8058 §3.2: what a mailbox provider POSTs, no cookies, no redirects followed.
    const res = await fetch(target, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
      redirect: "manual",
    });
    expect(res.status).toBe(200);
    const second = await send(to);
    // Dropped before dispatch by the hub's suppression check: a `dropped` event naming the list.
    const m = await stack.waitForMessage(
      second,
      (b) => b.events.some((e: { event_type: string }) => e.event_type === "dropped"),
      30_000,
    );
    expect(m.events.find((e: { event_type: string }) => e.event_type === "dropped")).toMatchObject({
      recipient_email: to,
      metadata: { suppression: "unsubscribes" },
    });
    expect(m.dispatches).toBe(0);
    expect(stack.smtp.messages.filter((x) => x.rcptTo.includes(to))).toHaveLength(1);
    const reader = await stack.admin.createApiKey(stack.tenantId, {
      name: "suppressions reader",
      environment: "live",
      scopes: ["suppressions.read"],
    });
    const suppressed = await stack.api(
      "GET",
      `/v3/asm/suppressions/global/${encodeURIComponent(to)}`,
      reader.api_key,
    );
    // The global unsubscribe list names the address (SendGrid's shape: {recipient_email}).
    expect(suppressed.status).toBe(200);
    expect(suppressed.body).toMatchObject({ recipient_email: to });
  });
});

const CHROMIUM = "/usr/bin/chromium";

describe("the unsubscribe page in headless Chromium", () => {
  let browser: Browser | null = null;
  afterAll(async () => {
    await browser?.close();
  });

  it("loads, its button works, and the result is shown", async () => {
    expect(existsSync(CHROMIUM), "Debian's chromium package").toBe(true);
    const to = "browser@inbox.test";
    const id = await send(to, { tracking_settings: { subscription_tracking: { enable: true } } });
    const { parsed } = await delivered(to, id);
    // The subscription footer's link: the same page List-Unsubscribe names.
    const href = /<a href="([^"]+\/t\/u\/[^"]+)">click here<\/a>/.exec(String(parsed.html))?.[1];
    expect(href).toBeDefined();

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    const page = await browser.newPage({ javaScriptEnabled: false });
    const response = await page.goto(href!);
    expect(response?.status()).toBe(200);
    expect(await page.title()).toMatch(/^Unsubscribe from /);
    await expect(page.getByRole("heading", { level: 1 }).textContent()).resolves.toContain(to);
    await page.getByRole("button", { name: /Unsubscribe from all email/ }).click();
    await page.waitForLoadState("domcontentloaded");
    const status = page.getByRole("status");
    await expect(status.textContent()).resolves.toContain(`${to} is unsubscribed from all email`);
    // Back on the page, it says so instead of offering the button again.
    await page.getByRole("link", { name: /Back to your email preferences/ }).click();
    await page.waitForLoadState("domcontentloaded");
    await expect(page.getByRole("status").textContent()).resolves.toContain("is unsubscribed from all email");
    expect(await page.getByRole("button", { name: /Unsubscribe from all email/ }).count()).toBe(0);
  });
});
