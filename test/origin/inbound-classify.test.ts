import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { decodeVerp, encodeVerp } from "../../origin/src/delivery/verp.ts";
import { classifyInbound } from "../../origin/src/inbound/classify.ts";
import { InboundParseError, parseInbound } from "../../origin/src/inbound/parse.ts";
import { classifyFailure } from "../../origin/src/inbound/reasons.ts";

const FIXTURE_SECRET = "fixture-verp-secret-0123456789abcdef";
const fixture = (name: string) =>
  readFileSync(path.resolve(import.meta.dirname, "../fixtures/inbound", `${name}.eml`));

describe("message id from VERP", () => {
  it("trusts no VERP token without the key: the returned Message-ID is used, the token is marked invalid", async () => {
    const c = classifyInbound(await parseInbound(fixture("postfix-user-unknown")), {});
    expect(c.results[0]).toMatchObject({
      message_id: "msg_01JDQ3X8W5K7M2N4P6R8T0V2XY",
      message_id_source: "message-id",
      verp: "invalid",
    });
  });

  it("refuses a token made with another key", async () => {
    const c = classifyInbound(await parseInbound(fixture("postfix-user-unknown")), {
      verp: { secret: "another-secret-another-secret-0000" },
    });
    expect(c.results[0]).toMatchObject({ message_id_source: "message-id", verp: "invalid" });
  });

  it("verifies a token whose local part an MTA lower-cased, and maps it to the upper-case id", async () => {
    const address = encodeVerp("msg_01JDQ3X8W5K7M2N4P6R8T0V2XY", {
      secret: FIXTURE_SECRET,
      domain: "bounce.example.com",
    }).toLowerCase();
    const raw = fixture("qmail-no-mailbox")
      .toString("latin1")
      .replace("To: bounces@bounce.example.com", `To: ${address}`);
    const c = classifyInbound(await parseInbound(raw), { verp: { secret: FIXTURE_SECRET } });
    expect(c.results[0]).toMatchObject({
      message_id: "msg_01JDQ3X8W5K7M2N4P6R8T0V2XY",
      message_id_source: "verp",
    });
  });

  it("uses the SMTP envelope recipient when the server passes one", async () => {
    const address = encodeVerp("msg_01JDQ3X8W5K7M2N4P6R8T0V2ZZ", {
      secret: FIXTURE_SECRET,
      domain: "b.example",
    });
    const parsed = await parseInbound(fixture("rfc3464-simple"));
    const c = classifyInbound(
      { ...parsed, envelope: { mailFrom: "", rcptTo: [address] } },
      { verp: { secret: FIXTURE_SECRET } },
    );
    expect(c.results[0]).toMatchObject({
      message_id: "msg_01JDQ3X8W5K7M2N4P6R8T0V2ZZ",
      message_id_source: "verp",
    });
  });
});

describe("VERP decoding of hostile addresses", () => {
  it("refuses a tag with non-ASCII characters instead of throwing", () => {
    // Found by inbound-fuzz: "é" is one UTF-16 unit but two bytes, and timingSafeEqual threw.
    expect(decodeVerp("bounces+msg_1.abcdefghi\u00e9@b.example", { secret: FIXTURE_SECRET })).toBeNull();
    expect(decodeVerp("bounces+msg_1.\u{1F600}abcdefgh@b.example", { secret: FIXTURE_SECRET })).toBeNull();
  });
});

describe("formats", () => {
  it("ignores an ordinary message", async () => {
    const c = classifyInbound(
      await parseInbound("From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\n\r\nHi there\r\n"),
    );
    expect(c.kind).toBe("unknown");
    expect(c.results).toEqual([]);
  });

  it("a DSN is not mistaken for an auto-reply although it carries Auto-Submitted", async () => {
    const c = classifyInbound(await parseInbound(fixture("postfix-spamhaus-block")));
    expect(c.kind).toBe("bounce");
  });

  it("refuses input that is not a message", async () => {
    await expect(parseInbound("")).rejects.toBeInstanceOf(InboundParseError);
    await expect(parseInbound("\u0000\u0001 binary junk\n")).rejects.toBeInstanceOf(InboundParseError);
  });
});

describe("reasons", () => {
  it.each([
    ["5.1.1", "550 5.1.1 user unknown", "hard", "user_unknown"],
    ["4.2.2", "452 4.2.2 over quota", "soft", "mailbox_full"],
    ["5.7.1", "550 5.7.1 Message rejected as spam", "block", "spam_block"],
    ["5.7.1", "554 5.7.1 Relaying denied", "hard", "relay_denied"],
    ["5.7.1", "550 5.7.1 Rejected by policy", "block", "policy_block"],
    [
      "4.7.0",
      "421 4.7.0 [TSS04] Messages temporarily deferred due to unexpected volume",
      "block",
      "spam_block",
    ],
    ["4.7.28", "421 4.7.28 unusual rate of mail", "soft", "rate_limited"],
    ["5.3.4", "552 5.3.4 Message size exceeds fixed limit", "soft", "message_too_large"],
    ["5.6.0", "554 5.6.0 malformed message", "block", "content_rejected"],
    ["4.4.1", "421 4.4.1 no answer from host", "soft", "connection_failed"],
    [undefined, "550 No such user here", "hard", "user_unknown"],
    [undefined, "something odd happened", "hard", "unknown"],
    ["4.0.0", "something odd happened", "soft", "temporary_failure"],
  ])("%s %s → %s %s", (status, diagnostic, type, reason) => {
    expect(classifyFailure(status, diagnostic)).toEqual({ type, reason });
  });
});
