/**
 * What the origin writes into a message for tracking (origin/src/compose/tracking.ts), checked
 * against expected HTML and text written from the rules in docs/api/tracking.md: which links are
 * rewritten and which are not, where the pixel and the footers go, the UTM parameters, and the
 * List-Unsubscribe headers inside the DKIM signature. Tokens are deterministic (HMAC), so the
 * expected links are built with the same signer and every byte around them is literal.
 */
import { generateKeyPairSync } from "node:crypto";
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import type { JobTracking } from "../../shared/tracking/settings.ts";
import { base64url, createTrackingSigner, deriveTrackingKey } from "../../shared/tracking/token.ts";
import { composeMessage } from "../../origin/src/compose/compose.ts";
import { applyTracking, publicBaseUrl, type TrackedJob } from "../../origin/src/compose/tracking.ts";

const key = await deriveTrackingKey("test-tracking-secret-0123456789abcdef");
const signer = createTrackingSigner(key);
const BASE = "https://mail.example.test";
const ctx = { key: base64url(key), baseUrl: BASE };
const claims = { tenantId: "tnt_1", messageId: "msg_1", recipient: "ann@example.net" };

function job(message: Partial<DeliveryJob["message"]>, tracking: JobTracking): TrackedJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "tnt_1",
    attempt: 1,
    recipients: ["ann@example.net", "bob@example.net"],
    message: {
      from: { email: "news@example.com" },
      to: [{ email: "ann@example.net" }, { email: "bob@example.net" }],
      subject: "Hi",
      headers: {},
      messageIdHeader: "msg_1@example.com",
      tracking,
      ...message,
    },
    dkim: null,
    trackingContext: ctx,
  };
}

const click = async (url: string) =>
  `${BASE}/t/c/${await signer.sign("click", claims, url)}?u=${encodeURIComponent(url)}`;
const unsub = async (asmGroupId: number | null = null, groupsToDisplay: number[] = []) =>
  `${BASE}/t/u/${await signer.sign("unsubscribe", { ...claims, asmGroupId, groupsToDisplay })}`;
const pixel = async () =>
  `<img src="${BASE}/t/o/${await signer.sign("open", claims)}.gif" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />`;
const amp = (s: string) => s.replace(/&/g, "&amp;");

describe("click tracking in HTML", () => {
  it("rewrites absolute http(s) hrefs and leaves mailto:, tel:, anchors, relative and clicktracking=off links", async () => {
    const html = [
      `<html><body>`,
      `<a href="https://shop.example.com/a?x=1&amp;y=2">A</a>`,
      `<a class="b" href='http://example.org/b'>B</a>`,
      `<a href=https://example.org/c>C</a>`,
      `<a href="mailto:help@example.com">mail</a>`,
      `<a href="tel:+15551234">call</a>`,
      `<a href="#top">top</a>`,
      `<a href="/relative">rel</a>`,
      `<a clicktracking=off href="https://example.org/untracked">off</a>`,
      `<a href="{{url}}">templated</a>`,
      `</body></html>`,
    ].join("\n");
    const out = await applyTracking(job({ html }, { click: { enableText: false } }));
    const expected = [
      `<html><body>`,
      `<a href="${amp(await click("https://shop.example.com/a?x=1&y=2"))}">A</a>`,
      `<a class="b" href="${amp(await click("http://example.org/b"))}">B</a>`,
      `<a href="${amp(await click("https://example.org/c"))}">C</a>`,
      `<a href="mailto:help@example.com">mail</a>`,
      `<a href="tel:+15551234">call</a>`,
      `<a href="#top">top</a>`,
      `<a href="/relative">rel</a>`,
      `<a clicktracking=off href="https://example.org/untracked">off</a>`,
      `<a href="{{url}}">templated</a>`,
      `</body></html>`,
    ].join("\n");
    expect(out.message.html).toBe(expected);
  });

  it("leaves the text alone without enable_text, rewrites its URLs with it", async () => {
    const text = "See https://example.org/x. Or (https://example.org/y) and mailto:a@b.c";
    const off = await applyTracking(job({ text }, { click: { enableText: false } }));
    expect(off.message.text).toBe(text);
    const on = await applyTracking(job({ text }, { click: { enableText: true } }));
    expect(on.message.text).toBe(
      `See ${await click("https://example.org/x")}. Or (${await click("https://example.org/y")}) and mailto:a@b.c`,
    );
  });
});

describe("open pixel", () => {
  it("goes before the last </body>", async () => {
    const out = await applyTracking(job({ html: "<html><body><p>x</p></body></html>" }, { open: {} }));
    expect(out.message.html).toBe(`<html><body><p>x</p>${await pixel()}</body></html>`);
  });
  it("is appended to HTML without a body element, and replaces the substitution tag when present", async () => {
    const a = await applyTracking(job({ html: "<p>x</p>" }, { open: {} }));
    expect(a.message.html).toBe(`<p>x</p>${await pixel()}`);
    const b = await applyTracking(
      job({ html: "<body><p>x</p>[open]<p>y</p></body>" }, { open: { substitutionTag: "[open]" } }),
    );
    expect(b.message.html).toBe(`<body><p>x</p>${await pixel()}<p>y</p></body>`);
  });
  it("needs HTML: a text-only message gets none", async () => {
    const out = await applyTracking(job({ text: "hello" }, { open: {} }));
    expect(out.message.text).toBe("hello");
    expect(out.message.html).toBeUndefined();
  });
});

describe("footers", () => {
  it("mail_settings.footer: HTML before </body>, text after a blank line; its links are tracked", async () => {
    const out = await applyTracking(
      job(
        { html: "<body><p>x</p></body>", text: "x" },
        {
          footer: { html: '<p><a href="https://example.com/about">About</a></p>', text: "-- Example Inc." },
          click: { enableText: false },
        },
      ),
    );
    expect(out.message.html).toBe(
      `<body><p>x</p><p><a href="${amp(await click("https://example.com/about"))}">About</a></p></body>`,
    );
    expect(out.message.text).toBe("x\n\n-- Example Inc.");
  });

  it("subscription tracking: the default footer, with the unsubscribe link untracked", async () => {
    const out = await applyTracking(
      job({ html: "<body><p>x</p></body>", text: "x" }, { subscription: {}, click: { enableText: true } }),
    );
    const u = await unsub();
    expect(out.message.html).toBe(
      `<body><p>x</p><p style="font-size:12px;color:#555">If you would like to unsubscribe and stop receiving these emails <a href="${u}">click here</a>.</p></body>`,
    );
    expect(out.message.text).toBe(
      `x\n\nIf you would like to unsubscribe and stop receiving these emails click here: ${u}.`,
    );
  });

  it("subscription tracking: custom text and HTML with <% %>, and the substitution tag in place", async () => {
    const custom = await applyTracking(
      job(
        { html: "<p>x</p>", text: "x" },
        { subscription: { html: "<small><% Leave this list %></small>", text: "Leave: <% %>" } },
      ),
    );
    const u = await unsub();
    expect(custom.message.html).toBe(`<p>x</p><small><a href="${u}">Leave this list</a></small>`);
    expect(custom.message.text).toBe(`x\n\nLeave: ${u}`);
    const tagged = await applyTracking(
      job(
        { html: '<p><a href="[unsub]">Unsubscribe</a></p>', text: "Unsubscribe: [unsub]" },
        { subscription: { substitutionTag: "[unsub]" }, click: { enableText: true } },
      ),
    );
    expect(tagged.message.html).toBe(`<p><a href="${u}">Unsubscribe</a></p>`);
    expect(tagged.message.text).toBe(`Unsubscribe: ${u}`);
  });
});

describe("ganalytics", () => {
  it("adds the UTM parameters the message sets, keeps those a link has, and signs the tagged URL", async () => {
    const html = `<a href="https://example.com/p?utm_source=own">P</a> <a href="https://example.com/q">Q</a> <a href="mailto:x@y.z">M</a>`;
    const ga = { utm_source: "newsletter", utm_campaign: "spring sale" };
    const plain = await applyTracking(job({ html, text: "https://example.com/t" }, { ganalytics: ga }));
    expect(plain.message.html).toBe(
      `<a href="https://example.com/p?utm_source=own&amp;utm_campaign=spring+sale">P</a> <a href="https://example.com/q?utm_source=newsletter&amp;utm_campaign=spring+sale">Q</a> <a href="mailto:x@y.z">M</a>`,
    );
    expect(plain.message.text).toBe("https://example.com/t?utm_source=newsletter&utm_campaign=spring+sale");
    const tracked = await applyTracking(
      job(
        { html: `<a href="https://example.com/q">Q</a>` },
        { ganalytics: ga, click: { enableText: false } },
      ),
    );
    expect(tracked.message.html).toBe(
      `<a href="${amp(await click("https://example.com/q?utm_source=newsletter&utm_campaign=spring+sale"))}">Q</a>`,
    );
  });
});

describe("List-Unsubscribe", () => {
  it("names the one-click URL (with the ASM group) and is signed by DKIM", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const j = job({ html: "<p>x</p>" }, { asm: { groupId: 7, groupsToDisplay: [7, 8] } });
    j.dkim = { domain: "example.com", selector: "s1", privateKeyPem: pem };
    const raw = await composeMessage(j);
    // mailparser folds List-* headers into one `list` object; the raw fields are what receivers read.
    expect(raw.toString("latin1")).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    const parsed = await simpleParser(raw);
    expect(String(parsed.html).trim()).toBe("<p>x</p>");
    // Folded by the builder when long (RFC 5322 §2.2.3); unfolded it is the one URI.
    const lu = raw
      .toString("latin1")
      .replace(/\r\n[ \t]+/g, " ")
      .match(/^List-Unsubscribe: (.*)\r$/m)?.[1]
      ?.trim();
    expect(lu).toBe(`<${await unsub(7, [7, 8])}>`);
    const sig = raw
      .toString("latin1")
      .match(/^DKIM-Signature:[\s\S]*?(?=\r\n\S)/m)![0]
      .replace(/\r\n\s+/g, " ");
    const h = /\bh=([^;]+)/.exec(sig)![1]!.replace(/\s/g, "").toLowerCase().split(":");
    expect(h).toEqual(expect.arrayContaining(["list-unsubscribe", "list-unsubscribe-post"]));
  });

  it("is left to the caller when it set its own, and absent without tracking settings or a key", async () => {
    const own = await applyTracking(
      job({ html: "<p>x</p>", headers: { "List-Unsubscribe": "<mailto:u@example.com>" } }, {}),
    );
    expect(own.message.headers).toEqual({ "List-Unsubscribe": "<mailto:u@example.com>" });
    const { trackingContext: _c, ...noKey } = job({ html: "<p>x</p>" }, { open: {} });
    const untouched = await applyTracking(noKey);
    expect(untouched.message.html).toBe("<p>x</p>");
    expect(untouched.message.headers).toEqual({});
    const { tracking: _t, ...noSettings } = job({ html: "<p>x</p>" }, {}).message;
    const plain = await applyTracking({ ...job({}, {}), message: noSettings });
    expect(plain.message.headers).toEqual({});
  });
});

describe("publicBaseUrl", () => {
  it("turns the origin's EDGE_URL into the links' base", () => {
    expect(publicBaseUrl("wss://edge.example.com/")).toBe("https://edge.example.com");
    expect(publicBaseUrl("ws://127.0.0.1:8787")).toBe("http://127.0.0.1:8787");
    expect(publicBaseUrl("https://edge.example.com/base/")).toBe("https://edge.example.com/base");
  });
});
