/**
 * "Sign in with ScaiKey" (docs/dashboard.md#sign-in-with-scaikey) in a real browser — Debian's
 * Chromium driven by playwright-core — against the real stack (wrangler dev), with a fake ScaiKey on
 * loopback (test/helpers/fake-scaikey.ts in front of the local OIDC issuer, test/helpers/oidc-issuer.ts:
 * discovery, JWKS, an authorize page that logs in `nextLogin` and redirects back with a code, a token
 * endpoint issuing RS256 ID tokens). Configured as an operator would: SCAIKEY_ISSUER / _JWKS_URL /
 * _AUDIENCE in the edge's vars, then `scaisend register` (the real CLI) registers the client and both
 * redirect URIs; roles and group mappings through the admin API.
 * Covered: a viewer (its ScaiKey group maps to a read-only role) clicks the button and lands on the
 * messages page as itself, without the pages and buttons its role lacks (no keys page, no Verify);
 * an admin group member gets the keys page and its Create button; sign-out; and two refusals shown
 * as a clear sign-in page with no session: a `state` changed on the way back, and an ID token whose
 * signature was tampered with at the token endpoint.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import { FakeScaiKey } from "../helpers/fake-scaikey.ts";
import { serveOidcIssuer } from "../helpers/oidc-issuer-server.ts";
import type { LoginUser } from "../helpers/oidc-issuer.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const BIN = path.join(REPO_ROOT, "node_modules", "node", "bin");
const AUDIENCE = "scaisend-dashboard-e2e";
const VIEWERS = "grp_viewers";
const ADMINS = "grp_admins";

let stack: Stack;
let browser: Browser;
let scaikey: FakeScaiKey;
let scaikeyUrl: string;
let closeScaiKey: () => Promise<void>;
let workDir: string;
/** When set, the token endpoint's answer has its ID token's signature altered (one character). */
let tamperIdToken = false;
/** When set, the authorize endpoint sends the browser back with FORGED_STATE instead of the dashboard's. */
let tamperState = false;
const FORGED_STATE = "not-the-state-the-dashboard-sent";

/** The fake ScaiKey, with a hook on its token endpoint for the tampered-ID-token case. */
async function startScaiKey(): Promise<void> {
  const served = await serveOidcIssuer({ id: "unused", secret: "unused" }, AUDIENCE, (issuer) => {
    scaikey = new FakeScaiKey(issuer);
    return async (req) => {
      const answer = await scaikey.handle(req);
      if (tamperState && new URL(req.url).pathname === "/oauth/authorize" && answer.status === 302) {
        const back = new URL(answer.headers.get("location")!);
        back.searchParams.set("state", FORGED_STATE);
        return new Response(null, { status: 302, headers: { location: back.href } });
      }
      if (!tamperIdToken || new URL(req.url).pathname !== "/oauth/token" || answer.status !== 200) {
        return answer;
      }
      const body = (await answer.json()) as { id_token: string };
      const [head, payload, sig] = body.id_token.split(".") as [string, string, string];
      // A different first character of the signature: still base64url, no longer the issuer's.
      const forged = `${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`;
      return Response.json({ ...body, id_token: `${head}.${payload}.${forged}` });
    };
  });
  scaikeyUrl = served.url;
  closeScaiKey = served.close;
}

function scaisend(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
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
        timeout: 60_000,
      },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    );
  });
}

/** An operator call to the admin API for the stack's tenant; the answer's `data`. */
async function operator<T = { id: string }>(method: string, p: string, body?: unknown): Promise<T> {
  const sep = p.includes("?") ? "&" : "?";
  const answer = await stack.admin.request<{ data: T }>(
    method,
    `${p}${sep}tenant_id=${stack.tenantId}`,
    body,
    `${method} ${p}`,
  );
  return answer.data;
}

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-e2e-oidc-"));
  await startScaiKey();
  stack = await startStack({
    startOrigin: false,
    edgeVars: {
      SCAIKEY_ISSUER: scaikeyUrl,
      SCAIKEY_JWKS_URL: `${scaikeyUrl}/.well-known/jwks.json`,
      SCAIKEY_AUDIENCE: AUDIENCE,
    },
  });
  // The operator's set-up: register ScaiSend at ScaiKey (client, redirect URIs, sync webhook).
  const tokenFile = path.join(workDir, "initial-access-token");
  fs.writeFileSync(tokenFile, `${scaikey.token}\n`);
  const registered = await scaisend([
    "register",
    "--issuer",
    scaikeyUrl,
    "--initial-access-token-file",
    tokenFile,
  ]);
  expect(registered.code, registered.stderr + registered.stdout).toBe(0);
  expect(scaikey.clients[0]!.metadata.redirect_uris).toContain(
    new URL("/app/login/scaikey/callback", stack.apiUrl).href,
  );
  // A read-only role for the viewers' group, the default admin role for the admins' group.
  const viewer = await operator("POST", "/api/admin/roles", {
    name: "viewer",
    permissions: ["stats.read", "domains.read", "templates.read"],
  });
  await operator("POST", "/api/admin/group_mappings", { group_id: VIEWERS, role_id: viewer.id });
  await operator("POST", "/api/admin/group_mappings", { group_id: ADMINS, role_id: "role_admin" });
  // --no-sandbox: the test machine runs as root, where Chromium's own sandbox cannot start.
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await closeScaiKey?.();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

const userOf = (name: string, groups: string[]): LoginUser => ({
  sub: `usr_${name}_${Math.random().toString(36).slice(2, 8)}`,
  tenant_id: stack.tenantId,
  email: `${name}@e2e.test`,
  name: `${name[0]!.toUpperCase()}${name.slice(1)} E2E`,
  groups,
});

async function withPage(run: (page: Page, context: BrowserContext) => Promise<void>): Promise<void> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await run(page, context);
    expect(errors).toEqual([]);
  } finally {
    await context.close();
  }
}

/** From a page without a session to the sign-in page, then the ScaiKey button. */
async function clickSignInWithScaiKey(page: Page, user: LoginUser, from: string): Promise<void> {
  scaikey.issuer.nextLogin = user;
  await page.goto(`${stack.apiUrl}${from}`);
  expect(new URL(page.url()).pathname).toBe("/app/login");
  await page.getByRole("button", { name: "Sign in with ScaiKey" }).click();
}

const sessionCookie = async (context: BrowserContext) =>
  (await context.cookies()).find((c) => c.name === "scaisend_session");

describe("Sign in with ScaiKey in Chromium", () => {
  it("a viewer lands on the messages page as itself, sees only what its group's role allows, signs out", async () => {
    stack.publish(zoneFromDomain(stack.domain));
    expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
    const sent = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "reader@inbox.test" }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "Seen by the ScaiKey viewer",
      content: [{ type: "text/plain", value: "hello" }],
    });
    expect(sent.status).toBe(202);
    const viewer = userOf("viewer", [VIEWERS, "grp_unmapped"]);
    await withPage(async (page, context) => {
      await clickSignInWithScaiKey(page, viewer, "/app/messages");
      await page.waitForURL(/\/app\/messages$/);
      expect(new URL(page.url()).origin).toBe(new URL(stack.apiUrl).origin);
      expect(await page.locator(".who").textContent()).toBe(viewer.email);
      // The page went through ScaiKey's authorize endpoint and back (the edge asked its token endpoint).
      expect(scaikey.issuer.requests).toEqual(
        expect.arrayContaining(["GET /oauth/authorize", "POST /oauth/token"]),
      );
      const cookie = await sessionCookie(context);
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Lax", path: "/app" });
      // The login transaction's cookies were spent by the callback.
      expect((await context.cookies()).map((c) => c.name).sort()).toEqual(["scaisend_session"]);
      await expect
        .poll(
          async () => {
            await page.reload();
            return page.getByRole("link", { name: "Seen by the ScaiKey viewer" }).count();
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBe(1);

      // Its role: stats, domains and templates to read; no API keys, nothing to change.
      const nav = page.getByRole("navigation", { name: "Main" });
      expect(await nav.getByRole("link", { name: "Stats" }).count()).toBe(1);
      expect(await nav.getByRole("link", { name: "API keys" }).count()).toBe(0);
      const keys = await page.goto(`${stack.apiUrl}/app/keys`);
      expect(keys!.status()).toBe(403);
      expect(await page.getByRole("button", { name: "Create key" }).count()).toBe(0);
      await page.goto(`${stack.apiUrl}/app/domains`);
      await page.getByRole("link", { name: SENDER_DOMAIN }).click();
      await expect.poll(() => page.locator("#domain-verified").textContent()).toBe("yes");
      expect(await page.getByRole("button", { name: "Verify DNS records" }).count()).toBe(0);
      expect(await page.getByRole("button", { name: "Rotate DKIM key" }).count()).toBe(0);

      // The mirror has the user with its groups, and the role they map to.
      const users = await operator<{ scaikey_id: string; email: string; roles: { name: string }[] }[]>(
        "GET",
        "/api/admin/users",
      );
      const mirrored = users.find((u) => u.scaikey_id === viewer.sub);
      expect(mirrored).toMatchObject({ email: viewer.email, roles: [{ name: "viewer" }] });

      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/app\/login$/);
      expect(await sessionCookie(context)).toBeUndefined();
      await page.goto(`${stack.apiUrl}/app/stats`);
      expect(new URL(page.url()).pathname).toBe("/app/login");
    });
  }, 90_000);

  it("an admin group member goes back to the page it asked for, with the keys page and its Create button", async () => {
    const admin = userOf("admin", [ADMINS]);
    await withPage(async (page) => {
      await clickSignInWithScaiKey(page, admin, "/app/keys");
      await page.waitForURL(/\/app\/keys$/);
      expect(await page.locator(".who").textContent()).toBe(admin.email);
      expect(await page.getByRole("button", { name: "Create key" }).count()).toBe(1);
      const nav = page.getByRole("navigation", { name: "Main" });
      expect(await nav.getByRole("link", { name: "API keys" }).count()).toBe(1);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/app\/login$/);
    });
  }, 60_000);

  it("a state changed on the way back from ScaiKey is refused with a clear page and no session", async () => {
    await withPage(async (page, context) => {
      let status = 0;
      page.on("response", (r) => {
        if (new URL(r.url()).pathname === "/app/login/scaikey/callback") status = r.status();
      });
      // What a forged or replayed redirect looks like: ScaiKey's real answer with another state.
      tamperState = true;
      await clickSignInWithScaiKey(page, userOf("mallory", [ADMINS]), "/app/messages");
      try {
        await page.waitForURL(/\/app\/login\/scaikey\/callback\?/);
      } finally {
        tamperState = false;
      }
      expect(new URL(page.url()).searchParams.get("state")).toBe(FORGED_STATE);
      const alert = page.getByRole("alert");
      expect(await alert.textContent()).toBe(
        "Signing in with ScaiKey failed: state does not match the login.",
      );
      expect(await page.getByRole("button", { name: "Sign in with ScaiKey" }).count()).toBe(1);
      expect(await sessionCookie(context)).toBeUndefined();
      expect(status).toBe(401);
      await page.goto(`${stack.apiUrl}/app/messages`);
      expect(new URL(page.url()).pathname).toBe("/app/login");
      // A new attempt from the button on that page (its policy lets the form go to ScaiKey) works.
      await page.goBack();
      await page.getByRole("button", { name: "Sign in with ScaiKey" }).click();
      await page.waitForURL(/\/app\/messages$/);
      expect(await page.locator(".who").textContent()).toBe("mallory@e2e.test");
    });
  }, 60_000);

  it("an ID token with a tampered signature is refused with a clear page and no session", async () => {
    await withPage(async (page, context) => {
      let status = 0;
      page.on("response", (r) => {
        if (new URL(r.url()).pathname === "/app/login/scaikey/callback") status = r.status();
      });
      tamperIdToken = true;
      try {
        const before = scaikey.issuer.requests.length;
        await clickSignInWithScaiKey(page, userOf("eve", [ADMINS]), "/app/keys");
        await page.waitForURL(/\/app\/login\/scaikey\/callback\?/);
        expect(scaikey.issuer.requests.slice(before)).toContain("POST /oauth/token");
      } finally {
        tamperIdToken = false;
      }
      expect(status).toBe(400);
      expect(await page.getByRole("alert").textContent()).toBe(
        "Signing in with ScaiKey failed: ScaiKey's ID token did not verify.",
      );
      expect(await sessionCookie(context)).toBeUndefined();
      // Nothing of the refused token reached the mirror.
      const users = await operator<{ email: string | null }[]>("GET", "/api/admin/users");
      expect(users.some((u) => u.email === "eve@e2e.test")).toBe(false);
    });
  }, 90_000);
});
