// Dev inbox integration tests: a real inbox on ephemeral loopback ports, real SMTP from
// nodemailer, real HTTP from fetch / node:http, real DKIM signatures from mailauth.
import { request } from "node:http";
import type Mail from "nodemailer/lib/mailer/index.js";
import { describe, expect, test } from "vitest";
import type { DevInbox, StoredMessage } from "../../origin/src/dev-inbox/index.ts";
import { buildRaw, resolverFor, rsaKey, signed, submitOne, useInboxes } from "./dev-inbox.helpers.ts";

const inbox = useInboxes();
const send = submitOne;

function httpGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end();
  });
}

const byRecipient = (addr: string) => (m: StoredMessage) => m.envelope.rcptTo.includes(addr);

describe("dev inbox smtp capture", () => {
  test("stores a message with envelope, parsed headers and bodies, readable via list() and the JSON API", async () => {
    const i = await inbox();
    const info = await send(i, {
      from: "Sender <sender@example.com>",
      to: "Alice <alice@example.org>",
      cc: "bob@example.org",
      subject: "Hello there",
      text: "plain body",
      html: "<p>html body</p>",
      envelope: { from: "bounce+abc@example.com", to: ["alice@example.org", "bob@example.org"] },
    });
    expect(info.response).toMatch(/^250 .*Message stored as /);

    const [m] = i.list();
    expect(m).toBeDefined();
    if (!m) return;
    expect(m.envelope).toEqual({
      mailFrom: "bounce+abc@example.com",
      rcptTo: ["alice@example.org", "bob@example.org"],
    });
    expect(m.subject).toBe("Hello there");
    expect(m.from).toBe('"Sender" <sender@example.com>');
    expect(m.to).toBe('"Alice" <alice@example.org>');
    expect(m.cc).toBe("bob@example.org");
    expect(m.text.trim()).toBe("plain body");
    expect(m.html).toBe("<p>html body</p>");
    expect(m.headers.find((h) => h.name === "Subject")?.value).toBe("Hello there");
    expect(Buffer.isBuffer(m.raw)).toBe(true);
    expect(m.raw.toString()).toContain("Subject: Hello there");
    expect(i.get(m.id)).toBe(m);

    const list = await fetch(`${i.url}/api/messages`);
    expect(list.status).toBe(200);
    expect(list.headers.get("content-type")).toMatch(/^application\/json/);
    const listBody = (await list.json()) as { messages: Array<Record<string, unknown>> };
    expect(listBody.messages).toHaveLength(1);
    expect(listBody.messages[0]).toMatchObject({
      id: m.id,
      subject: "Hello there",
      envelope: { mailFrom: "bounce+abc@example.com", rcptTo: ["alice@example.org", "bob@example.org"] },
      dkim: { result: "none" },
    });
    expect(listBody.messages[0]).not.toHaveProperty("raw");

    const detail = await fetch(`${i.url}/api/messages/${m.id}`);
    expect(detail.status).toBe(200);
    const detailBody = (await detail.json()) as Record<string, unknown>;
    expect(detailBody).toMatchObject({
      id: m.id,
      text: m.text,
      html: "<p>html body</p>",
      rawUrl: `/messages/${m.id}/raw`,
      receivedAt: m.receivedAt.toISOString(),
    });
    expect(detailBody.headers).toContainEqual({ name: "To", value: "Alice <alice@example.org>" });

    const missing = await fetch(`${i.url}/api/messages/nope`);
    expect(missing.status).toBe(404);
  });

  test("accepts the null reverse-path (bounces) and records it as an empty mailFrom", async () => {
    const i = await inbox();
    await send(i, {
      from: "mailer-daemon@example.com",
      to: "x@example.org",
      subject: "dsn",
      text: "x",
      envelope: { from: "", to: "x@example.org" },
    });
    expect(i.list()[0]?.envelope.mailFrom).toBe("");
  });

  test("lists newest first", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "one@example.org", subject: "first", text: "1" });
    await send(i, { from: "a@example.com", to: "two@example.org", subject: "second", text: "2" });
    expect(i.list().map((m) => m.subject)).toEqual(["second", "first"]);
    const body = (await (await fetch(`${i.url}/api/messages`)).json()) as {
      messages: Array<{ subject: string }>;
    };
    expect(body.messages.map((m) => m.subject)).toEqual(["second", "first"]);
  });

  test("evicts the oldest message beyond maxMessages", async () => {
    const i = await inbox({ maxMessages: 2 });
    for (const n of [1, 2, 3])
      await send(i, { from: "a@example.com", to: `r${n}@example.org`, subject: `m${n}`, text: "x" });
    const list = i.list();
    expect(list.map((m) => m.subject)).toEqual(["m3", "m2"]);
    const ids = new Set(list.map((m) => m.id));
    // The evicted message is gone from lookups too, not only from the list.
    const evictedRes = await fetch(`${i.url}/api/messages`);
    const all = (await evictedRes.json()) as { messages: Array<{ id: string }> };
    expect(all.messages.every((m) => ids.has(m.id))).toBe(true);
    expect(all.messages).toHaveLength(2);
  });

  test("rejects a message above the size limit with 552 and stores nothing", async () => {
    const i = await inbox({ maxMessageBytes: 2_000 });
    await expect(
      send(i, { from: "a@example.com", to: "big@example.org", subject: "big", text: "x".repeat(10_000) }),
    ).rejects.toMatchObject({
      responseCode: 552,
    });
    expect(i.list()).toHaveLength(0);
  });

  test("clear() and DELETE /api/messages empty the inbox", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "one", text: "x" });
    i.clear();
    expect(i.list()).toEqual([]);

    await send(i, { from: "a@example.com", to: "r@example.org", subject: "two", text: "x" });
    const id = i.list()[0]?.id ?? "";
    const del = await fetch(`${i.url}/api/messages`, { method: "DELETE" });
    expect(del.status).toBe(204);
    expect(i.list()).toEqual([]);
    expect(i.get(id)).toBeUndefined();
    expect((await fetch(`${i.url}/messages/${id}`)).status).toBe(404);
  });

  test("POST /clear clears same-origin but refuses a cross-site form post", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "keep", text: "x" });
    const cross = await fetch(`${i.url}/clear`, {
      method: "POST",
      headers: { origin: "https://evil.example" },
      redirect: "manual",
    });
    expect(cross.status).toBe(403);
    expect(i.list()).toHaveLength(1);
    const same = await fetch(`${i.url}/clear`, {
      method: "POST",
      headers: { origin: i.url },
      redirect: "manual",
    });
    expect(same.status).toBe(303);
    expect(same.headers.get("location")).toBe("/");
    expect(i.list()).toHaveLength(0);
  });
});

describe("dev inbox waitFor", () => {
  test("resolves with a message that arrives after the call", async () => {
    const i = await inbox();
    const waiting = i.waitFor(byRecipient("late@example.org"), 5_000);
    await send(i, { from: "a@example.com", to: "other@example.org", subject: "not this", text: "x" });
    await send(i, { from: "a@example.com", to: "late@example.org", subject: "this one", text: "x" });
    expect((await waiting).subject).toBe("this one");
  });

  test("resolves immediately with a message already stored", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "early@example.org", subject: "already here", text: "x" });
    expect((await i.waitFor(byRecipient("early@example.org"), 50)).subject).toBe("already here");
  });

  test("rejects after the timeout when nothing matches", async () => {
    const i = await inbox();
    await expect(i.waitFor(() => false, 50)).rejects.toThrow(/no matching message within 50 ms/);
  });

  test("rejects pending waiters on close()", async () => {
    const i = await inbox();
    const waiting = i.waitFor(() => false, 10_000);
    await i.close();
    await expect(waiting).rejects.toThrow(/closed/);
  });
});

describe("dev inbox web pages", () => {
  test("escapes attacker-controlled subject, addresses and headers on the list and detail pages", async () => {
    const i = await inbox();
    const subject = `<script>alert("x")</script> & 'quotes'`;
    await send(i, {
      from: `"<img src=x onerror=alert(1)>" <evil@example.com>`,
      to: "victim@example.org",
      subject,
      text: "text with </pre><script>alert(2)</script>",
      html: `<p>hi</p><script>alert(3)</script><a href="javascript:alert(4)" title='"><script>alert(5)</script>'>x</a>`,
      // prepared: sent verbatim, not RFC 2047-encoded, so the raw markup reaches the inbox.
      headers: { "X-Evil": { prepared: true, value: `"><script>alert(6)</script>` } },
    });
    const m = i.list()[0];
    if (!m) throw new Error("message not stored");
    expect(m.subject).toBe(subject);

    const list = await fetch(`${i.url}/`);
    expect(list.status).toBe(200);
    expect(list.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const listHtml = await list.text();
    expect(listHtml).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;");
    expect(listHtml).toContain("&lt;img src=x onerror=alert(1)&gt;");
    // The one script on the list page is the inbox's own live-update file, never message data.
    expect(listHtml.match(/<script[^>]*>/gi)).toEqual(['<script src="/static/inbox.js" defer>']);
    expect(listHtml).not.toMatch(/<img/i);

    const views: Record<string, string> = {};
    for (const view of ["html", "text", "source", "headers", "links"]) {
      const detail = await fetch(`${i.url}/messages/${m.id}?view=${view}`);
      expect(detail.status, view).toBe(200);
      views[view] = await detail.text();
      expect(views[view], view).not.toMatch(/<script/i);
      expect(views[view], view).not.toMatch(/<img/i);
    }
    expect(views.text).toContain("&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;");
    expect(views.headers).toContain("&quot;&gt;&lt;script&gt;alert(6)&lt;/script&gt;");
    expect(views.source).toContain("X-Evil: &quot;&gt;&lt;script&gt;alert(6)&lt;/script&gt;");
    expect(views.links).toContain("<td>a href</td><td>javascript:alert(4)</td>");
    // The message HTML goes only into a fully sandboxed iframe's srcdoc, attribute-escaped.
    const detailHtml = views.html ?? "";
    const iframe = /<iframe sandbox="" [^>]*srcdoc="([^"]*)"><\/iframe>/.exec(detailHtml);
    expect(iframe).not.toBeNull();
    expect(iframe?.[1]).toContain("&lt;script&gt;alert(3)&lt;/script&gt;");
    expect(iframe?.[1]).toContain("title=&#39;&quot;&gt;&lt;script&gt;alert(5)&lt;/script&gt;&#39;");
    expect(detailHtml.match(/<iframe/g)).toHaveLength(1);
    for (const view of ["text", "source", "headers", "links"])
      expect(views[view], view).not.toMatch(/<iframe/);
  });

  test("sends a strict CSP and nosniff on pages, raw source and API", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "csp", text: "x" });
    const id = i.list()[0]?.id ?? "";
    for (const path of ["/", `/messages/${id}`, `/messages/${id}/raw`, "/api/messages", "/nope"]) {
      const res = await fetch(`${i.url}${path}`);
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp, path).toContain("default-src 'none'");
      // Scripts only from the inbox itself: nothing inline, nothing remote.
      expect(
        csp.split("; ").filter((d) => d.startsWith("script-src")),
        path,
      ).toEqual(["script-src 'self'"]);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
    }
  });

  test("detail page shows headers, DKIM result, text body and a raw source link; list updates live or, without JavaScript, reloads", async () => {
    const i = await inbox();
    await send(i, {
      from: "a@example.com",
      to: "r@example.org",
      subject: "details",
      text: "the text body",
      headers: { "X-Custom": "custom-value" },
    });
    const id = i.list()[0]?.id ?? "";
    // A text-only message opens on the text view.
    const html = await (await fetch(`${i.url}/messages/${id}`)).text();
    expect(html).toContain('<pre id="text-body">the text body');
    expect(html).toContain(`href="/messages/${id}/raw"`);
    expect(html).toContain("DKIM none");
    const headers = await (await fetch(`${i.url}/messages/${id}?view=headers`)).text();
    expect(headers).toContain("<td>X-Custom</td><td>custom-value</td>");
    expect((await fetch(`${i.url}/messages/${id}?view=bogus`)).status).toBe(400);
    const list = await (await fetch(`${i.url}/`)).text();
    // Live over SSE with JavaScript; a <noscript> reload without it.
    expect(list).toContain(`<noscript><meta http-equiv="refresh" content="10"></noscript>`);
    expect(list).toContain(`href="/messages/${id}"`);
  });

  test("GET /messages/:id/raw returns the exact received MIME as text/plain", async () => {
    const i = await inbox();
    const raw = await buildRaw({
      from: "a@example.com",
      to: "r@example.org",
      subject: "raw check",
      text: "line one\r\n.leading dot\r\n",
    });
    await send(i, { envelope: { from: "a@example.com", to: ["r@example.org"] }, raw });
    const m = i.list()[0];
    if (!m) throw new Error("message not stored");
    const res = await fetch(`${i.url}/messages/${m.id}/raw`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    const body = Buffer.from(await res.arrayBuffer());
    // Dot-stuffing is undone by the sink, so the bytes match what the client meant to send.
    expect(body.equals(m.raw)).toBe(true);
    expect(body.toString().trimEnd()).toBe(raw.toString().trimEnd());
    expect((await fetch(`${i.url}/messages/nope/raw`)).status).toBe(404);
  });

  test("refuses requests whose Host is not loopback (DNS rebinding)", async () => {
    const i = await inbox();
    const rebound = await httpGet(`${i.url}/api/messages`, { host: `attacker.example:${i.httpPort}` });
    expect(rebound.status).toBe(421);
    const local = await httpGet(`${i.url}/api/messages`, { host: `localhost:${i.httpPort}` });
    expect(local.status).toBe(200);
  });
});

describe("dev inbox DKIM verification", () => {
  const mail: Mail.Options = {
    from: "news@example.com",
    to: "r@example.org",
    subject: "signed",
    text: "signed body\r\n",
    html: "<p>signed</p>",
  };

  test("a message signed with the key the resolver publishes → pass, with domain and selector", async () => {
    const key = rsaKey();
    const { resolver, lookups } = resolverFor("s1._domainkey.example.com", key.record);
    const i = await inbox({ dkimResolver: resolver });
    const raw = await signed(await buildRaw(mail), key.pem);
    await send(i, { envelope: { from: "news@example.com", to: ["r@example.org"] }, raw });

    const m = await i.waitFor(() => true, 1_000);
    expect(m.dkim).toMatchObject({
      result: "pass",
      domain: "example.com",
      selector: "s1",
      algo: "rsa-sha256",
    });
    expect(m.dkim.info).toMatch(/^dkim=pass/);
    expect(lookups).toContain("s1._domainkey.example.com TXT");

    const json = (await (await fetch(`${i.url}/api/messages/${m.id}`)).json()) as {
      dkim: { result: string; domain: string; selector: string };
    };
    expect(json.dkim).toMatchObject({ result: "pass", domain: "example.com", selector: "s1" });
    const html = await (await fetch(`${i.url}/messages/${m.id}`)).text();
    expect(html).toContain(`<span class="badge b-pass"`);
    expect(html).toContain("d=example.com");
    expect(html).toContain("s=s1");
  });

  test("a body altered after signing → fail", async () => {
    const key = rsaKey();
    const i = await inbox({ dkimResolver: resolverFor("s1._domainkey.example.com", key.record).resolver });
    const raw = await signed(await buildRaw(mail), key.pem);
    const tampered = Buffer.from(raw.toString().replace("signed body", "SIGNED BODY"));
    expect(tampered.equals(raw)).toBe(false);
    await send(i, { envelope: { from: "news@example.com", to: ["r@example.org"] }, raw: tampered });
    const m = await i.waitFor(() => true, 1_000);
    expect(m.dkim.result).toBe("fail");
    expect(m.dkim.comment).toBe("body hash did not verify");
    expect(m.dkim.domain).toBe("example.com");
  });

  test("a signed header altered after signing → fail", async () => {
    const key = rsaKey();
    const i = await inbox({ dkimResolver: resolverFor("s1._domainkey.example.com", key.record).resolver });
    const raw = await signed(await buildRaw(mail), key.pem);
    const tampered = Buffer.from(raw.toString().replace("Subject: signed", "Subject: forged"));
    expect(tampered.equals(raw)).toBe(false);
    await send(i, { envelope: { from: "news@example.com", to: ["r@example.org"] }, raw: tampered });
    const m = await i.waitFor(() => true, 1_000);
    expect(m.subject).toBe("forged");
    expect(m.dkim.result).toBe("fail");
  });

  test("a signature from a key other than the published one → fail", async () => {
    const published = rsaKey();
    const other = rsaKey();
    const i = await inbox({
      dkimResolver: resolverFor("s1._domainkey.example.com", published.record).resolver,
    });
    await send(i, {
      envelope: { from: "news@example.com", to: ["r@example.org"] },
      raw: await signed(await buildRaw(mail), other.pem),
    });
    const m = await i.waitFor(() => true, 1_000);
    expect(m.dkim.result).toBe("fail");
    const html = await (await fetch(`${i.url}/`)).text();
    expect(html).toContain(`<span class="badge b-fail"`);
  });

  test("an unsigned message → none, without any DNS lookup", async () => {
    const { resolver, lookups } = resolverFor("s1._domainkey.example.com", "unused");
    const i = await inbox({ dkimResolver: resolver });
    await send(i, mail);
    const m = await i.waitFor(() => true, 1_000);
    expect(m.dkim.result).toBe("none");
    expect(m.dkim.domain).toBeNull();
    expect(lookups).toEqual([]);
  });
});
