import { describe, expect, it } from "vitest";
import {
  classifyError,
  classifyReply,
  MX_ERROR_CODES,
  parseReply,
} from "../../origin/src/delivery/classify.ts";

describe("parseReply", () => {
  it("reads basic and RFC 3463 enhanced codes, also from multi-line replies", () => {
    expect(parseReply("250 2.0.0 Ok: queued as 123")).toEqual({ smtpCode: 250, enhancedCode: "2.0.0" });
    expect(
      parseReply("550-5.1.1 The email account does not exist.\r\n550 5.1.1 https://support.example"),
    ).toEqual({
      smtpCode: 550,
      enhancedCode: "5.1.1",
    });
    expect(parseReply("451 Try again")).toEqual({ smtpCode: 451 });
    expect(parseReply("garbage")).toEqual({});
  });
});

describe("classifyReply", () => {
  it("2xx → delivered", () => {
    expect(classifyReply("250 2.0.0 Ok: queued")).toMatchObject({
      status: "delivered",
      smtpCode: 250,
      enhancedCode: "2.0.0",
    });
  });

  it("4xx → deferred, never a bounce type", () => {
    const c = classifyReply("452 4.2.2 Mailbox full");
    expect(c).toMatchObject({ status: "deferred", smtpCode: 452, enhancedCode: "4.2.2" });
    expect(c.bounceType).toBeUndefined();
  });

  it.each([
    ["550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", "hard"],
    ["550 5.1.10 RESOLVER.ADR.RecipientNotFound", "hard"],
    ["550 5.2.1 Mailbox disabled", "hard"],
    ["550 Requested action not taken: mailbox unavailable", "hard"],
    ["550 5.0.0 No such user here", "hard"],
    ["552 5.2.2 Mailbox full", "soft"],
    ["552 5.3.4 Message size exceeds fixed limit", "soft"],
    ["552 Message too large", "soft"],
    ["554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org", "block"],
    ["550 5.7.26 Unauthenticated email is not accepted due to the domain's DMARC policy", "block"],
    ["553 5.1.8 Sender address rejected: Domain not found", "block"],
    ["554 Message rejected as spam", "block"],
  ] as const)("%s → bounced %s", (reply, bounceType) => {
    expect(classifyReply(reply)).toMatchObject({ status: "bounced", bounceType });
  });

  it("an unexplained 5xx at RCPT is hard, at the greeting or MAIL FROM it is a block", () => {
    expect(classifyReply("550 Go away", "rcpt").bounceType).toBe("hard");
    expect(classifyReply("554 Go away", "connect").bounceType).toBe("block");
    expect(classifyReply("550 Go away", "mail").bounceType).toBe("block");
  });

  it("a reply without a code is deferred, not bounced", () => {
    expect(classifyReply("what?")).toEqual({ status: "deferred", response: "what?" });
  });
});

describe("classifyError", () => {
  it("uses the server reply nodemailer attached to the error", () => {
    const err = Object.assign(new Error("Recipient command failed"), {
      code: "EENVELOPE",
      response: "550 5.1.1 User unknown",
      responseCode: 550,
      command: "RCPT TO",
    });
    expect(classifyError(err)).toMatchObject({
      status: "bounced",
      bounceType: "hard",
      smtpCode: 550,
      enhancedCode: "5.1.1",
    });
  });

  it("a 5xx greeting (EPROTOCOL at CONN) is a block", () => {
    const err = Object.assign(new Error("Invalid greeting"), {
      code: "EPROTOCOL",
      response: "554 No SMTP service here",
      command: "CONN",
    });
    expect(classifyError(err)).toMatchObject({ status: "bounced", bounceType: "block", smtpCode: 554 });
  });

  it.each(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "ETLS", MX_ERROR_CODES.temporary])(
    "%s → deferred",
    (code) => {
      const c = classifyError(Object.assign(new Error("boom"), { code }));
      expect(c.status).toBe("deferred");
      expect(c.response).toContain(code);
      expect(c.smtpCode).toBeUndefined();
    },
  );

  it("null MX → bounced hard with 5.1.10 (RFC 7505 §4.2)", () => {
    expect(classifyError(Object.assign(new Error("null MX"), { code: MX_ERROR_CODES.nullMx }))).toMatchObject(
      {
        status: "bounced",
        bounceType: "hard",
        enhancedCode: "5.1.10",
      },
    );
  });

  it("NXDOMAIN and no-address domains → bounced hard", () => {
    for (const code of [MX_ERROR_CODES.nxDomain, MX_ERROR_CODES.noAddress]) {
      expect(classifyError(Object.assign(new Error("gone"), { code }))).toMatchObject({
        status: "bounced",
        bounceType: "hard",
      });
    }
  });

  it("Node's own ENOTFOUND is not mistaken for a missing recipient domain", () => {
    expect(
      classifyError(Object.assign(new Error("getaddrinfo ENOTFOUND smarthost"), { code: "ENOTFOUND" }))
        .status,
    ).toBe("deferred");
  });

  it("anything that is not an error object is deferred", () => {
    expect(classifyError("weird")).toEqual({ status: "deferred", response: "weird" });
  });
});
