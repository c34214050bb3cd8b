// The dev inbox in a real browser: Debian's Chromium driven by playwright-core, against a real inbox
// on loopback fed over SMTP by nodemailer. A hostile message (script in the subject, script and
// event handlers in the HTML) must never run in the inbox's origin.
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium } from "playwright-core";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevInbox } from "../../origin/src/dev-inbox/index.ts";
import type { DevInbox } from "../../origin/src/dev-inbox/index.ts";
import { transportTo } from "./dev-inbox.helpers.ts";

let browser: Browser;
let inbox: DevInbox;
// A real "tracker" on loopback: the message's remote image points here, and it must get no hit.
let tracker: Server;
let trackerHits = 0;
let trackerUrl = "";

beforeAll(async () => {
  inbox = await startDevInbox({ smtpPort: 0, httpPort: 0 });
  tracker = createServer((_req, res) => {
    trackerHits += 1;
    res.writeHead(200, { "content-type": "image/gif" }).end();
  });
  await new Promise<void>((resolve) => tracker.listen(0, "127.0.0.1", resolve));
  trackerUrl = `http://127.0.0.1:${(tracker.address() as AddressInfo).port}/open.gif`;
  // --no-sandbox: the test machine runs as root, where Chromium's own sandbox cannot start.
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await inbox?.close();
  await new Promise((resolve) => tracker?.close(resolve));
});

const HOSTILE_SUBJECT = `Hi <img src=x onerror="window.__pwned='subject'"><script>window.__pwned='subject-script'</script>`;
const hostileHtml = () => `<h1 id="greeting">Hello from the message</h1>
<script>parent.__pwned = "html-script"; alert("html")</script>
<img src="x" onerror="parent.__pwned = 'html-onerror'">
<img src="${trackerUrl}">
<a id="js" href="javascript:parent.__pwned='html-link'">click</a>`;

describe("dev inbox in Chromium", () => {
  test("a message shows up live, opens in each view without running its script, and is deleted", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    try {
      await page.goto(inbox.url);
      await expect.poll(() => page.textContent("#inbox")).toContain("No messages yet");
      await expect.poll(() => page.textContent("#live-status"), { timeout: 5_000 }).toContain("Live");
      // A marker that survives only if the list updates in place (SSE), not by reloading.
      await page.evaluate(() => Object.assign(window, { __marker: 1 }));

      const transport = transportTo(inbox);
      await transport.sendMail({
        from: "app@example.com",
        to: "dev@example.org",
        subject: HOSTILE_SUBJECT,
        text: "The text part",
        html: hostileHtml(),
        headers: { "X-Test": "browser" },
      });
      transport.close();

      const row = page.locator("#inbox tbody tr");
      await expect.poll(() => row.count(), { timeout: 5_000 }).toBe(1);
      expect(await row.locator("a").first().textContent()).toBe(HOSTILE_SUBJECT);
      expect(await page.textContent("#count")).toBe("1 message");
      expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(1);

      await row.locator("a").first().click();
      await page.waitForURL(/\/messages\/[0-9a-f]+$/);
      expect(await page.textContent("h2")).toBe(HOSTILE_SUBJECT);

      // The HTML view: the message renders inside the sandboxed frame, in an opaque origin.
      const frameElement = await page.waitForSelector("#view iframe");
      expect(await frameElement.getAttribute("sandbox")).toBe("");
      const frame = await frameElement.contentFrame();
      if (!frame) throw new Error("no frame");
      await expect.poll(() => frame.textContent("#greeting")).toBe("Hello from the message");
      expect(await frame.evaluate(() => self.origin)).toBe("null");
      // javascript: URLs do not run from a sandboxed frame without allow-scripts.
      await frame.click("#js").catch(() => {});

      await page.click("text=Text");
      await page.waitForURL(/view=text$/);
      expect(await page.textContent("#text-body")).toContain("The text part");
      await page.click("text=Raw source");
      expect(await page.textContent("#raw-source")).toContain("X-Test: browser");
      await page.click("text=Headers");
      expect(await page.textContent("#view")).toContain("X-Test");
      await page.click("text=Links & images");
      expect(await page.textContent("#view")).toContain(trackerUrl);
      await page.click("text=HTML");

      // Nothing hostile ran anywhere, and the remote image was never requested (CSP img-src data:).
      for (const f of page.frames()) {
        expect(
          await f.evaluate(() => (window as unknown as { __pwned?: string }).__pwned ?? null),
        ).toBeNull();
      }
      expect(dialogs).toEqual([]);
      expect(trackerHits).toBe(0);

      await page.click("#delete");
      await page.waitForURL(`${inbox.url}/`);
      expect(await page.textContent("#inbox")).toContain("No messages yet");
      expect(inbox.list()).toEqual([]);
    } finally {
      await context.close();
    }
  }, 60_000);

  test("Delete all from the header empties the inbox", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      const transport = transportTo(inbox);
      for (const n of [1, 2])
        await transport.sendMail({
          from: "a@example.com",
          to: "b@example.org",
          subject: `bulk ${n}`,
          text: "x",
        });
      transport.close();
      await page.goto(inbox.url);
      expect(await page.locator("#inbox tbody tr").count()).toBe(2);
      await page.click("#clear-all");
      await page.waitForURL(`${inbox.url}/`);
      expect(await page.textContent("#inbox")).toContain("No messages yet");
      expect(inbox.list()).toEqual([]);
    } finally {
      await context.close();
    }
  }, 30_000);
});

describe("dev inbox in Chromium without JavaScript", () => {
  test("search, open, switch views and delete all work with scripts disabled", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    try {
      const transport = transportTo(inbox);
      await transport.sendMail({
        from: "a@example.com",
        to: "b@example.org",
        subject: "Invoice 7",
        text: "pay me",
      });
      await transport.sendMail({
        from: "a@example.com",
        to: "b@example.org",
        subject: "Newsletter",
        text: "read me",
      });
      transport.close();
      await page.goto(inbox.url);
      expect(await page.locator("#inbox tbody tr").count()).toBe(2);
      await page.fill("#q", "subject:invoice");
      await page.press("#q", "Enter");
      await page.waitForURL(/query=subject%3Ainvoice/);
      expect(await page.locator("#inbox tbody tr").count()).toBe(1);
      await page.click("text=Invoice 7");
      await page.waitForURL(/\/messages\//);
      expect(await page.textContent("#text-body")).toContain("pay me");
      await page.click("text=Headers");
      expect(await page.textContent("#view")).toContain("Subject");
      await page.click("#delete");
      await page.waitForURL(`${inbox.url}/`);
      expect(inbox.list().map((m) => m.subject)).toEqual(["Newsletter"]);
      await page.click("#clear-all");
      await page.waitForURL(`${inbox.url}/`);
      expect(inbox.list()).toEqual([]);
    } finally {
      await context.close();
    }
  }, 30_000);
});
