// The dev inbox in a real browser: Debian's Chromium driven by playwright-core, against a real inbox
// on loopback fed over SMTP by nodemailer. A hostile message (script in the subject, script and
// event handlers in the HTML) must never run in the inbox's origin. Then what a developer uses it
// for: the DKIM verdict (real signatures, pass and fail), attachments downloaded byte for byte,
// search with the list staying live, a delete elsewhere seen live, and the link check against a
// loopback site.
import fs from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium } from "playwright-core";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevInbox } from "../../origin/src/dev-inbox/index.ts";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import type { DevInbox } from "../../origin/src/dev-inbox/index.ts";
import { buildRaw, resolverFor, rsaKey, signed, submit, transportTo } from "./dev-inbox.helpers.ts";

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

describe("dev inbox in Chromium: DKIM, attachments, search, live deletes, the link check", () => {
  test("each capability through the page, as a developer uses it", async () => {
    const key = rsaKey();
    const dkimInbox = await startDevInbox({
      smtpPort: 0,
      httpPort: 0,
      dkimResolver: resolverFor("s1._domainkey.example.com", key.record).resolver,
      linkCheck: { timeoutMs: 2_000 },
    });
    // The links the message points at: one answers, one is gone.
    const site = createServer((req, res) => void res.writeHead(req.url === "/ok" ? 200 : 404).end());
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    try {
      await page.goto(dkimInbox.url);
      await expect.poll(() => page.textContent("#live-status"), { timeout: 5_000 }).toContain("Live");
      await page.evaluate(() => Object.assign(window, { __marker: 1 }));

      const csv = Buffer.from("id,amount\r\n7,42.00\r\n");
      const invoice = await buildRaw({
        from: "billing@example.com",
        to: "dev@example.org",
        subject: "Invoice 7",
        text: "Your invoice is attached.",
        html: `<p>Pay <a href="${base}/ok">here</a>; the old page <a href="${base}/gone">is gone</a>.</p>`,
        attachments: [
          { filename: "invoice-7.csv", content: csv, contentType: "text/csv" },
          { filename: "Grüße.txt", content: "hallo" },
        ],
      });
      const signedInvoice = await signed(invoice, key.pem);
      // The same signature over a body changed afterwards: a fail, as a strict receiver grades it.
      const tampered = Buffer.from(
        signedInvoice.toString("utf8").replace("Your invoice is attached.", "Your invoice is attacked."),
      );
      const envelope = { from: "billing@example.com", to: ["dev@example.org"] };
      await submit(
        dkimInbox,
        { envelope, raw: signedInvoice },
        { envelope, raw: tampered },
        { from: "news@example.net", to: "dev@example.org", subject: "Newsletter", text: "unsigned" },
      );

      // Live: the three rows arrived in place, each with its DKIM verdict.
      const rows = page.locator("#inbox tbody tr");
      await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(3);
      expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(1);
      expect(await rows.locator(".badge").allTextContents()).toEqual(["DKIM none", "DKIM fail", "DKIM pass"]);

      // Search with scripts on, and the searched list stays live: a match arrives, a non-match does not show.
      await page.fill("#q", "subject:invoice");
      await page.press("#q", "Enter");
      await page.waitForURL(/query=subject%3Ainvoice/);
      await expect.poll(() => page.textContent("#live-status"), { timeout: 5_000 }).toContain("Live");
      expect(await rows.count()).toBe(2);
      await page.evaluate(() => Object.assign(window, { __marker: 2 }));
      await submit(
        dkimInbox,
        { from: "billing@example.com", to: "dev@example.org", subject: "Invoice 8", text: "x" },
        { from: "news@example.net", to: "dev@example.org", subject: "Newsletter 2", text: "x" },
      );
      await expect.poll(() => page.textContent("#count"), { timeout: 5_000 }).toBe("5 messages");
      expect(await rows.locator("td:nth-child(4) a").allTextContents()).toEqual([
        "Invoice 8",
        "Invoice 7",
        "Invoice 7",
      ]);

      // A message deleted elsewhere (the JSON API, as a test suite would) leaves the open list live.
      const invoice8 = dkimInbox.list().find((m) => m.subject === "Invoice 8")!;
      expect((await fetch(`${dkimInbox.url}/api/messages/${invoice8.id}`, { method: "DELETE" })).status).toBe(
        204,
      );
      await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(2);
      expect(await page.textContent("#count")).toBe("4 messages");
      expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(2);

      // The signed one: its DKIM result and signature, and its attachments to download.
      await rows.filter({ hasText: "DKIM pass" }).locator("a").first().click();
      await page.waitForURL(/\/messages\/[0-9a-f]+/);
      const meta = page.locator("dl.meta");
      expect(await meta.textContent()).toMatch(/DKIM pass\s+d=example\.com\s+s=s1/);
      const signatures = page.locator("table").filter({ hasText: "Selector" }).locator("tbody tr");
      expect(await signatures.count()).toBe(1);
      expect(await signatures.locator("td").allTextContents()).toEqual(
        expect.arrayContaining(["DKIM pass", "example.com", "s1"]),
      );
      for (const [name, bytes] of [
        ["invoice-7.csv", csv],
        ["Grüße.txt", Buffer.from("hallo")],
      ] as const) {
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("link", { name, exact: true }).click(),
        ]);
        expect(download.suggestedFilename()).toBe(name);
        expect(fs.readFileSync(await download.path())).toEqual(bytes);
      }

      // The link and image check, on demand from the links view.
      await page.click("text=Links & images");
      await page.waitForURL(/view=links$/);
      await page.click("#check-links");
      await page.waitForURL(/\/link-check$/);
      expect(await page.textContent("#link-check-summary")).toBe("2 links and images, 1 broken.");
      const checked = page.locator("#view table tbody tr");
      expect(await checked.locator("td:nth-child(2)").allTextContents()).toEqual([
        `${base}/ok`,
        `${base}/gone`,
      ]);
      expect(await checked.locator(".badge").allTextContents()).toEqual(["200", "404"]);

      // The tampered copy shows why it failed.
      await page.goto(dkimInbox.url);
      await rows.filter({ hasText: "DKIM fail" }).locator("a").first().click();
      await page.waitForURL(/\/messages\/[0-9a-f]+/);
      expect(await page.locator("dl.meta").textContent()).toContain("body hash did not verify");
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      await dkimInbox.close();
      site.closeAllConnections();
      await new Promise((resolve) => site.close(resolve));
    }
  }, 60_000);
});

describe("dev inbox in Chromium: the retention limit", () => {
  test("beyond DEV_INBOX_MAX_MESSAGES the oldest leaves the open list, live", async () => {
    const small = await startDevInbox({ smtpPort: 0, httpPort: 0, maxMessages: 2 });
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(small.url);
      await expect.poll(() => page.textContent("#live-status"), { timeout: 5_000 }).toContain("Live");
      const mail = (n: number) => ({
        from: "a@example.com",
        to: "b@example.org",
        subject: `kept ${n}`,
        text: "x",
      });
      await submit(small, mail(1), mail(2), mail(3));
      const subjects = page.locator("#inbox tbody tr td:nth-child(4) a");
      await expect.poll(() => subjects.allTextContents(), { timeout: 5_000 }).toEqual(["kept 3", "kept 2"]);
      expect(await page.textContent("#count")).toBe("2 messages");
    } finally {
      await context.close();
      await small.close();
    }
  }, 30_000);
});

// The pages the README shows: always checked; with DASHBOARD_SCREENSHOTS=1 (as for
// test/e2e/dashboard.e2e.test.ts) also written to docs/img/dev-inbox*.png.
const SHOTS = process.env.DASHBOARD_SCREENSHOTS === "1" ? path.join(REPO_ROOT, "docs", "img") : null;

describe("dev inbox with a few realistic messages", () => {
  test("the list shows each with its DKIM verdict, and a signed one opens with its HTML", async () => {
    const key = rsaKey();
    const shotInbox = await startDevInbox({
      smtpPort: 0,
      httpPort: 0,
      dkimResolver: resolverFor("s1._domainkey.example.com", key.record).resolver,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    try {
      const mails = [
        {
          from: "Acme <hello@example.com>",
          to: "ada@example.org",
          subject: "Welcome to Acme, Ada",
          text: "Welcome aboard! Confirm your address: https://app.example.com/confirm?t=8f2c",
          html: `<div style="font-family:system-ui,sans-serif;max-width:520px;margin:24px auto;color:#1f2328">
<h1 style="font-size:22px">Welcome aboard, Ada</h1>
<p>Thanks for signing up. Confirm your address to start sending.</p>
<p><a href="https://app.example.com/confirm?t=8f2c" style="display:inline-block;background:#0969da;color:#fff;padding:10px 18px;border-radius:6px;text-decoration:none">Confirm my address</a></p>
<p style="color:#57606a;font-size:13px">Acme Inc. · 1 Example Street · <a href="https://app.example.com/unsubscribe">Unsubscribe</a></p></div>`,
        },
        {
          from: "Acme <security@example.com>",
          to: "grace@example.org",
          subject: "Reset your password",
          text: "Reset it here: https://app.example.com/reset?t=31ab (valid for 30 minutes)",
          html: `<p>Someone asked to reset your password. <a href="https://app.example.com/reset?t=31ab">Reset it</a> within 30 minutes.</p>`,
        },
        {
          from: "Acme Billing <billing@example.com>",
          to: "ada@example.org",
          subject: "Your invoice INV-0042",
          text: "Your invoice is attached.",
          attachments: [
            { filename: "INV-0042.pdf", content: Buffer.from("%PDF-1.4 …"), contentType: "application/pdf" },
          ],
        },
      ];
      for (const m of mails) {
        await submit(shotInbox, {
          envelope: { from: "bounces@example.com", to: [m.to] },
          raw: await signed(await buildRaw(m), key.pem),
        });
      }
      await submit(shotInbox, {
        from: "News <news@example.net>",
        to: "ada@example.org",
        subject: "This week: dashboards, webhooks and templates",
        text: "unsigned newsletter",
      });
      await page.goto(shotInbox.url);
      await expect.poll(() => page.textContent("#live-status"), { timeout: 5_000 }).toContain("Live");
      const rows = page.locator("#inbox tbody tr");
      await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(4);
      // Newest first: the unsigned newsletter, then the three signed ones.
      expect(await rows.locator(".badge").allTextContents()).toEqual([
        "DKIM none",
        "DKIM pass",
        "DKIM pass",
        "DKIM pass",
      ]);
      if (SHOTS) {
        fs.mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: path.join(SHOTS, "dev-inbox.png") });
      }
      await page.click("text=Welcome to Acme, Ada");
      await page.waitForURL(/\/messages\//);
      const frame = page.frameLocator("#view iframe");
      expect(await frame.locator("h1").textContent()).toBe("Welcome aboard, Ada");
      if (SHOTS) await page.screenshot({ path: path.join(SHOTS, "dev-inbox-message.png"), fullPage: true });
    } finally {
      await context.close();
      await shotInbox.close();
    }
  }, 60_000);
});
