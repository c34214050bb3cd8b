import { MailService } from "@sendgrid/mail";
import { describe, expect, it } from "vitest";
import { validateMailSend, type MailSend } from "../../shared/sendgrid/mail-send.ts";
import {
  ExpansionLimitError,
  expandPersonalization,
  expandPersonalizations,
  mergeHeaders,
  replaceAllOf,
  substituter,
} from "../../shared/sendgrid/personalize.ts";

const NOW_MS = Date.UTC(2024, 0, 1);

/** Validate first, so every fixture here is a body the route would actually hand over. */
function valid(body: unknown): MailSend {
  const r = validateMailSend(body, NOW_MS);
  if (!r.ok) throw new Error(`fixture invalid: ${JSON.stringify(r.errors)}`);
  return r.value;
}

function base(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    personalizations: [{ to: [{ email: "to@example.com" }] }],
    from: { email: "from@example.com", name: "From" },
    subject: "Hello",
    content: [{ type: "text/plain", value: "Hi" }],
    ...extra,
  };
}

describe("expandPersonalizations: one draft per personalization", () => {
  it("maps the minimal body to one complete draft", () => {
    expect(expandPersonalizations(valid(base()))).toEqual([
      {
        personalizationIndex: 0,
        from: { email: "from@example.com", name: "From" },
        replyTo: [],
        to: [{ email: "to@example.com" }],
        cc: [],
        bcc: [],
        subject: "Hello",
        text: "Hi",
        otherContent: [],
        headers: {},
        customArgs: {},
        categories: [],
        attachments: [],
        substitutionsApplied: false,
      },
    ]);
  });

  it("keeps order, index and recipients per personalization", () => {
    const mail = valid(
      base({
        personalizations: [
          { to: [{ email: "a@example.com" }], cc: [{ email: "c@example.com" }] },
          { to: [{ email: "b@example.com", name: "B" }], bcc: [{ email: "d@example.com" }] },
        ],
      }),
    );
    const drafts = expandPersonalizations(mail);
    expect(drafts.map((d) => [d.personalizationIndex, d.to, d.cc, d.bcc])).toEqual([
      [0, [{ email: "a@example.com" }], [{ email: "c@example.com" }], []],
      [1, [{ email: "b@example.com", name: "B" }], [], [{ email: "d@example.com" }]],
    ]);
  });

  it("personalization from, subject and send_at override the top level; others inherit it", () => {
    const mail = valid(
      base({
        send_at: 1704067300,
        personalizations: [
          {
            to: [{ email: "a@example.com" }],
            from: { email: "sales@example.com" },
            subject: "Own",
            send_at: 1704067400,
          },
          { to: [{ email: "b@example.com" }] },
        ],
      }),
    );
    const [own, inherited] = expandPersonalizations(mail);
    expect([own?.from, own?.subject, own?.sendAt]).toEqual([
      { email: "sales@example.com" },
      "Own",
      1704067400,
    ]);
    expect([inherited?.from, inherited?.subject, inherited?.sendAt]).toEqual([
      { email: "from@example.com", name: "From" },
      "Hello",
      1704067300,
    ]);
  });

  it("leaves sendAt undefined when neither level sets it", () => {
    expect(expandPersonalizations(valid(base()))[0]).not.toHaveProperty("sendAt");
  });

  it("merges custom_args with the personalization winning", () => {
    const mail = valid(
      base({
        custom_args: { campaign: "spring", tenant: "t1" },
        personalizations: [
          { to: [{ email: "a@example.com" }], custom_args: { campaign: "vip", userId: "7" } },
        ],
      }),
    );
    expect(expandPersonalizations(mail)[0]?.customArgs).toEqual({
      campaign: "vip",
      tenant: "t1",
      userId: "7",
    });
  });

  it("merges headers case-insensitively, keeping the personalization's spelling and value", () => {
    const mail = valid(
      base({
        headers: { "X-Campaign": "global", "X-Only-Top": "1" },
        personalizations: [{ to: [{ email: "a@example.com" }], headers: { "x-campaign": "mine" } }],
      }),
    );
    expect(expandPersonalizations(mail)[0]?.headers).toEqual({ "X-Only-Top": "1", "x-campaign": "mine" });
  });

  it("uses reply_to_list, else [reply_to]", () => {
    const list = valid(
      base({ reply_to_list: [{ email: "r1@example.com" }, { email: "r2@example.com", name: "R2" }] }),
    );
    expect(expandPersonalizations(list)[0]?.replyTo).toEqual([
      { email: "r1@example.com" },
      { email: "r2@example.com", name: "R2" },
    ]);
    const single = valid(base({ reply_to: { email: "r@example.com" } }));
    expect(expandPersonalizations(single)[0]?.replyTo).toEqual([{ email: "r@example.com" }]);
  });

  it("splits content into text, html and the other blocks in order, and carries categories and attachments", () => {
    const attachments = [{ content: "dGVzdA==", filename: "a.txt" }];
    const mail = valid(
      base({
        content: [
          { type: "text/plain", value: "p" },
          { type: "text/html", value: "<p>h</p>" },
          { type: "text/x-amp-html", value: "amp" },
          { type: "text/calendar", value: "cal" },
        ],
        categories: ["a", "b"],
        attachments,
      }),
    );
    const [d] = expandPersonalizations(mail);
    expect([d?.text, d?.html, d?.otherContent, d?.categories, d?.attachments]).toEqual([
      "p",
      "<p>h</p>",
      [
        { type: "text/x-amp-html", value: "amp" },
        { type: "text/calendar", value: "cal" },
      ],
      ["a", "b"],
      attachments,
    ]);
  });

  it("does not mutate its input", () => {
    const mail = valid(
      base({
        headers: { "X-A": "-n-" },
        personalizations: [
          { to: [{ email: "a@example.com" }], substitutions: { "-n-": "v" }, headers: { "X-B": "1" } },
        ],
      }),
    );
    const before = structuredClone(mail);
    expandPersonalizations(mail);
    expect(mail).toEqual(before);
  });
});

describe("expandPersonalizations: legacy substitutions and sections", () => {
  it("replaces keys as given in subject, text, html, other content and header values, not in keys or custom_args", () => {
    const mail = valid(
      base({
        subject: "Hi -name-",
        content: [
          { type: "text/plain", value: "Dear -name-, id {{id}}" },
          { type: "text/html", value: "<p>-name-</p>" },
          { type: "text/x-amp-html", value: "amp -name-" },
        ],
        headers: { "X-Name": "-name-" },
        custom_args: { raw: "-name-" },
        personalizations: [
          {
            to: [{ email: "a@example.com" }],
            substitutions: { "-name-": "Ann", "{{id}}": "42" },
            headers: { "X-Id": "{{id}}" },
          },
        ],
      }),
    );
    const [d] = expandPersonalizations(mail);
    expect(d).toMatchObject({
      subject: "Hi Ann",
      text: "Dear Ann, id 42",
      html: "<p>Ann</p>",
      otherContent: [{ type: "text/x-amp-html", value: "amp Ann" }],
      headers: { "X-Name": "Ann", "X-Id": "42" },
      customArgs: { raw: "-name-" },
      substitutionsApplied: true,
    });
  });

  it("applies each personalization's own substitutions", () => {
    const mail = valid(
      base({
        content: [{ type: "text/plain", value: "Hi -name-" }],
        personalizations: [
          { to: [{ email: "a@example.com" }], substitutions: { "-name-": "to1" } },
          { to: [{ email: "b@example.com" }], substitutions: { "-name-": "to2" } },
          { to: [{ email: "c@example.com" }] },
        ],
      }),
    );
    expect(expandPersonalizations(mail).map((d) => [d.text, d.substitutionsApplied])).toEqual([
      ["Hi to1", true],
      ["Hi to2", true],
      ["Hi -name-", false],
    ]);
  });

  it("replaces every occurrence in one pass: a value is never re-scanned", () => {
    const replace = replaceAllOf({ "-a-": "-b-", "-b-": "B" });
    expect(replace("-a- -b- -a-")).toBe("-b- B -b-");
  });

  it("prefers the longest key at a position", () => {
    expect(replaceAllOf({ ":a": "1", ":ab": "2" })(":ab :a")).toBe("2 1");
  });

  it("treats keys literally, regex characters included, and survives prototype-ish keys", () => {
    expect(replaceAllOf({ "$(x)": "v", "a.b": "w", __proto__x: "p" })("$(x) a.b axb __proto__x")).toBe(
      "v w axb p",
    );
    const protoKey = JSON.parse('{"__proto__":"P","constructor":"C"}') as Record<string, string>;
    expect(replaceAllOf(protoKey)("__proto__/constructor/toString")).toBe("P/C/toString");
  });

  it("expands a section named by a substitution value, then the section's own tags", () => {
    const mail = valid(
      base({
        content: [{ type: "text/plain", value: "-greeting- and %section1%" }],
        sections: { "%section1%": "Hello -name-!" },
        personalizations: [
          {
            to: [{ email: "a@example.com" }],
            substitutions: { "-greeting-": "%section1%", "-name-": "Bob" },
          },
        ],
      }),
    );
    // A section tag written directly in the content is left alone: sections only enter via substitution values.
    expect(expandPersonalizations(mail)[0]?.text).toBe("Hello Bob! and %section1%");
  });

  it("substituter returns null without substitutions", () => {
    expect(substituter({}, { "%s%": "x" })).toBeNull();
  });

  it("folds CR/LF from substituted values in subject and headers, but keeps them in bodies", () => {
    const mail = valid(
      base({
        subject: "Hi -n-",
        content: [{ type: "text/plain", value: "Dear -n-" }],
        headers: { "X-N": "-n-" },
        personalizations: [
          { to: [{ email: "a@example.com" }], substitutions: { "-n-": "Eve\r\nBcc: victim@example.com" } },
        ],
      }),
    );
    const [d] = expandPersonalizations(mail);
    expect(d?.subject).toBe("Hi Eve Bcc: victim@example.com");
    expect(d?.headers).toEqual({ "X-N": "Eve Bcc: victim@example.com" });
    expect(d?.text).toBe("Dear Eve\r\nBcc: victim@example.com");
  });

  it("works on a body built by @sendgrid/mail, which wraps substitution keys in {{ }}", async () => {
    const service = new MailService();
    let body: unknown;
    const fakeClient = {
      request: async (req: { body: unknown }) => {
        body = req.body;
        return [{ statusCode: 202, body: "", headers: {} }, ""];
      },
    };
    service.setClient(fakeClient as unknown as Parameters<MailService["setClient"]>[0]);
    await service.send({
      to: "a@example.com",
      from: "from@example.com",
      subject: "Hi {{name}}",
      text: "Hello {{name}}",
      substitutions: { name: "Ann" },
    } as unknown as Parameters<MailService["send"]>[0]);
    const [d] = expandPersonalizations(valid(JSON.parse(JSON.stringify(body))));
    expect([d?.subject, d?.text, d?.substitutionsApplied]).toEqual(["Hi Ann", "Hello Ann", true]);
  });
});

describe("expandPersonalizations: dynamic templates", () => {
  it("leaves subject raw, has no content, and carries template id and data", () => {
    const mail = valid({
      personalizations: [
        {
          to: [{ email: "a@example.com" }],
          subject: "Order {{id}}",
          substitutions: { "{{id}}": "should-not-apply" },
          dynamic_template_data: { id: 7, items: [{ sku: "x" }] },
        },
        { to: [{ email: "b@example.com" }] },
      ],
      from: { email: "from@example.com" },
      template_id: "d-0123456789abcdef0123456789abcdef",
      content: [],
    });
    const [withData, bare] = expandPersonalizations(mail);
    expect(withData).toMatchObject({
      subject: "Order {{id}}",
      templateId: "d-0123456789abcdef0123456789abcdef",
      dynamicTemplateData: { id: 7, items: [{ sku: "x" }] },
      substitutionsApplied: false,
      otherContent: [],
    });
    expect(withData).not.toHaveProperty("text");
    expect(withData).not.toHaveProperty("html");
    // No subject anywhere: the template version supplies it later.
    expect(bare).not.toHaveProperty("subject");
    expect(bare).not.toHaveProperty("dynamicTemplateData");
    expect(bare?.templateId).toBe("d-0123456789abcdef0123456789abcdef");
  });
});

describe("mergeHeaders", () => {
  it("returns the union with override precedence", () => {
    expect(mergeHeaders({ A: "1", B: "2" }, { b: "3", C: "4" })).toEqual({ A: "1", b: "3", C: "4" });
  });
});

// Issue 6: substitution multiplies sizes; with limits it stops before the large string exists.
describe("expandPersonalization with limits", () => {
  const limits = { subject: 100, headerValue: 50, content: 1000 };
  const withSubs = (extra: Record<string, unknown>, substitutions: Record<string, string>) =>
    valid(base({ ...extra, personalizations: [{ to: [{ email: "to@example.com" }], substitutions }] }));
  const limitError = (fn: () => unknown): ExpansionLimitError => {
    try {
      fn();
    } catch (err) {
      if (err instanceof ExpansionLimitError) return err;
      throw err;
    }
    throw new Error("no ExpansionLimitError");
  };

  it("changes nothing while every field stays within its limit, exactly at the limit included", () => {
    const mail = withSubs(
      { subject: "-n-".repeat(10), headers: { "X-A": "-n-" } },
      { "-n-": "N".repeat(10) },
    );
    const d = expandPersonalization(mail, 0, limits);
    expect(d.subject).toBe("N".repeat(100));
    expect(d).toEqual(expandPersonalizations(mail)[0]);
  });

  it.each([
    ["subject", { subject: "-n-".repeat(11) }, 100],
    ["headers.X-A", { headers: { "X-A": "-n--n--n--n--n--n-" } }, 50],
    ["content", { content: [{ type: "text/plain", value: "-n-".repeat(101) }] }, 1000],
  ] as const)("names %s when substitution grows it past its limit", (field, extra, limit) => {
    const e = limitError(() => expandPersonalization(withSubs(extra, { "-n-": "N".repeat(10) }), 0, limits));
    expect([e.personalizationIndex, e.field, e.limit]).toEqual([0, field, limit]);
  });

  it("bounds sections and substitution values expanded on the way (field: substitutions)", () => {
    // 300 three-character tags in one section, each filled with 10 characters: 3,000 > 1,000.
    const mail = withSubs(
      { sections: { "-s-": "-n-".repeat(300) } },
      { "-n-": "N".repeat(10), "-x-": "-s-" },
    );
    expect(limitError(() => expandPersonalization(mail, 0, limits)).field).toBe("substitutions");
  });

  it("leaves a field that was already long but does not grow to the caller's exact check", () => {
    const mail = withSubs({ subject: "s".repeat(500) }, { "-n-": "N" });
    expect(expandPersonalization(mail, 0, limits).subject).toBe("s".repeat(500));
  });

  it("replaceAllOf stops as soon as the result would pass maxLength", () => {
    const replace = replaceAllOf({ a: "xyz" });
    expect(replace("aaa", 9)).toBe("xyzxyzxyz");
    expect(() => replace("aaaa", 9)).toThrow();
    expect(substituter({ a: "b" }, {}, 5)!("aaaaaaaa", 5)).toBe("bbbbbbbb");
  });
});
