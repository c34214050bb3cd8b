/**
 * The web dashboard in a real browser (Debian's Chromium driven by playwright-core) against the real
 * stack (wrangler dev, hub, origin, loopback DNS and SMTP): the operator creates a login with
 * `scaisend logins add` (password on stdin), the user signs in through the form, the sender domain is
 * verified on its page against the loopback DNS, a message sent through the API reaches `delivered` on its page,
 * a key is created (shown once, working) and revoked (refused) through the keys page, a template
 * version is previewed with sample data on its page, and a webhook endpoint made through the API
 * shows the message's deliveries to a loopback receiver on its page.
 * DASHBOARD_SCREENSHOTS=1 also writes the main pages to docs/img/ for the README.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const BIN = path.join(REPO_ROOT, "node_modules", "node", "bin");
const PASSWORD = "e2e dashboard password";
const SHOTS = process.env.DASHBOARD_SCREENSHOTS === "1" ? path.join(REPO_ROOT, "docs", "img") : null;

let stack: Stack;
let browser: Browser;
let receiver: http.Server;
let receiverPosts = 0;

/** `scaisend <args>` with `stdin` piped in, as an operator runs it. */
function scaisend(args: string[], stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      path.join(BIN, "node"),
      [path.join(REPO_ROOT, "bin", "scaisend.mjs"), ...args],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: `${BIN}:${process.env.PATH ?? ""}`,
          HOME: process.env.HOME ?? "/tmp",
          SCAISEND_EDGE_URL: stack.apiUrl,
          SCAISEND_ADMIN_TOKEN: stack.secrets.ADMIN_TOKEN!,
        },
        timeout: 30_000,
      },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `dashboard-${name}.png`), fullPage: true });
}

beforeAll(async () => {
  // A webhook receiver on loopback (allowed by WEBHOOK_ALLOW_PRIVATE), so the webhooks page has a log.
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      receiverPosts += 1;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  stack = await startStack({ edgeVars: { WEBHOOK_ALLOW_PRIVATE: "127.0.0.1" } });
  // --no-sandbox: the test machine runs as root, where Chromium's own sandbox cannot start.
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
});

describe("the dashboard in Chromium", () => {
  it("sign in, a sent message reaches delivered on its page, a key is created and revoked", async () => {
    const email = "owner@e2e.test";
    const added = await scaisend(
      [
        "logins",
        "add",
        "--tenant",
        stack.tenantId,
        "--email",
        email,
        "--roles",
        "admin",
        "--password-file",
        "-",
        "--json",
      ],
      `${PASSWORD}\n`,
    );
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ email, roles: ["admin"] });

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    try {
      // A page without a session goes to the sign-in form, and back after it.
      await page.goto(`${stack.apiUrl}/app/keys`);
      expect(new URL(page.url()).pathname).toBe("/app/login");
      await shot(page, "sign-in");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill("not the password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("wrong");
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL(/\/app\/keys$/);
      const cookie = (await context.cookies()).find((c) => c.name === "scaisend_session")!;
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Lax", path: "/app" });

      // The sender domain, verified on its dashboard page against the loopback DNS, then a live send.
      await page.goto(`${stack.apiUrl}/app/domains`);
      await page.getByRole("link", { name: SENDER_DOMAIN }).click();
      await expect.poll(() => page.locator("#domain-verified").textContent()).toBe("no");
      // The copy buttons appear where the script runs (without it the values are plain text).
      await expect.poll(() => page.locator("button.copy:visible").count()).toBeGreaterThan(0);
      stack.publish(zoneFromDomain(stack.domain));
      await page.getByRole("button", { name: "Verify DNS records" }).click();
      await expect.poll(() => page.locator("#verify-outcome").textContent()).toContain("Verified");
      expect(await page.locator("#domain-verified").textContent()).toBe("yes");
      expect((await stack.admin.getDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
      await shot(page, "domain");
      // An endpoint of the tenant's own webhooks, through the API, to see its deliveries on its page.
      const hooksKey = await stack.admin.createApiKey(stack.tenantId, {
        name: "webhooks",
        environment: "live",
        scopes: ["webhooks.read", "webhooks.write"],
      });
      const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
      const hook = await stack.api("POST", "/v3/user/webhooks", hooksKey.api_key, {
        url: hookUrl,
        enabled_events: ["processed", "delivered"],
      });
      expect(hook.status, JSON.stringify(hook.body)).toBe(201);
      const sent = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
        personalizations: [{ to: [{ email: "reader@inbox.test" }] }],
        from: { email: `app@${SENDER_DOMAIN}` },
        subject: "Dashboard e2e",
        categories: ["dashboard-e2e"],
        content: [
          { type: "text/plain", value: "plain" },
          { type: "text/html", value: "<h1 id='hello'>Hello from the dashboard e2e</h1>" },
        ],
      });
      expect(sent.status).toBe(202);
      const messageId = sent.headers.get("x-message-id")!;

      await page.goto(`${stack.apiUrl}/app/messages/${messageId}`);
      await expect
        .poll(
          async () => {
            await page.reload();
            return page.locator("#message-status").textContent();
          },
          { timeout: 30_000, interval: 500 },
        )
        .toBe("delivered");
      await expect(
        page.getByRole("cell", { name: "delivered", exact: true }).count(),
      ).resolves.toBeGreaterThan(0);
      // The preview runs in a sandboxed frame: its content is there, in an opaque origin.
      const frame = page.frameLocator("iframe.preview");
      await expect.poll(() => frame.locator("#hello").textContent()).toBe("Hello from the dashboard e2e");
      await shot(page, "message");

      await page.goto(`${stack.apiUrl}/app/messages?category=dashboard-e2e`);
      await expect(page.getByRole("link", { name: "Dashboard e2e" }).count()).resolves.toBe(1);
      await shot(page, "messages");

      // Webhooks: the endpoint in the list, and its page with the message's deliveries in the log.
      await expect.poll(() => receiverPosts, { timeout: 30_000 }).toBeGreaterThan(0);
      await page.goto(`${stack.apiUrl}/app/webhooks`);
      await page.getByRole("link", { name: hookUrl }).click();
      await page.waitForURL(new RegExp(`/app/webhooks/${hook.body.id}$`));
      await expect
        .poll(
          async () => {
            await page.reload();
            return page.locator("#deliveries tbody tr").count();
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBeGreaterThan(0);
      await shot(page, "webhooks");

      // A key: created (shown once, and it works), then revoked (refused).
      await page.goto(`${stack.apiUrl}/app/keys`);
      await page.getByLabel("Name").fill("from the dashboard");
      await page.getByLabel("stats.read").check();
      await page.getByRole("button", { name: "Create key" }).click();
      const secret = (await page.locator("#new-key-secret").textContent())!;
      expect(secret).toMatch(/^sg_live_[0-9a-f]{32}$/);
      await shot(page, "keys");
      const scopes = await stack.api("GET", "/v3/scopes", secret);
      expect(scopes).toMatchObject({ status: 200, body: { scopes: ["stats.read"] } });
      await page.getByRole("button", { name: "Revoke from the dashboard" }).click();
      await page.waitForURL(/\/app\/keys$/);
      await expect(page.getByRole("button", { name: "Revoke from the dashboard" }).count()).resolves.toBe(0);
      await expect
        .poll(async () => (await stack.api("GET", "/v3/scopes", secret)).status, { timeout: 15_000 })
        .toBe(401);

      // Stats: the chart drew (uPlot from /app/assets), over the table of the same numbers.
      await page.goto(`${stack.apiUrl}/app/stats`);
      await expect.poll(() => page.locator("#stats-chart canvas").count()).toBeGreaterThan(0);
      await shot(page, "stats");

      // Templates: a version's page previews it with its test data, then with sample data typed in.
      const tplKey = await stack.admin.createApiKey(stack.tenantId, {
        name: "templates",
        environment: "live",
        scopes: ["templates.read", "templates.write"],
      });
      const tpl = await stack.api("POST", "/v3/templates", tplKey.api_key, {
        name: "Welcome",
        generation: "dynamic",
      });
      expect(tpl.status).toBe(201);
      const version = await stack.api("POST", `/v3/templates/${tpl.body.id}/versions`, tplKey.api_key, {
        name: "First draft",
        subject: "Welcome, {{name}}",
        html_content: "<h1 id='greeting'>Hello {{name}}</h1><p>Your plan: {{plan}}</p>",
        test_data: JSON.stringify({ name: "Ada", plan: "Pro" }),
      });
      expect(version.status).toBe(201);
      await page.goto(`${stack.apiUrl}/app/templates`);
      await page.getByRole("link", { name: "Welcome" }).click();
      await page.getByRole("link", { name: "First draft" }).click();
      const preview = page.frameLocator("iframe.preview");
      await expect.poll(() => preview.locator("#greeting").textContent()).toBe("Hello Ada");
      await page.getByLabel(/Sample dynamic_template_data/).fill('{"name": "<Grace>", "plan": "Team"}');
      await page.getByRole("button", { name: "Render preview" }).click();
      await expect.poll(() => preview.locator("#greeting").textContent()).toBe("Hello <Grace>");
      await shot(page, "templates");

      // Sign out: the session is gone, a page goes back to sign-in.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/app\/login$/);
      await page.goto(`${stack.apiUrl}/app/messages`);
      expect(new URL(page.url()).pathname).toBe("/app/login");
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);
});
