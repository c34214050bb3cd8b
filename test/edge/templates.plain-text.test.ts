/**
 * htmlToPlainText (edge/src/services/templates-plain-text.ts): the text a version gets with
 * generate_plain_content. Template tags come through untouched and still compile; the text reads
 * as a person would want it in text/plain. (Its cost on adversarial input is measured under Node, where
 * the clock moves during synchronous work: test/shared/templates-plain-text.timing.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { compileTemplate, render } from "../../shared/render/index.ts";
import { htmlToPlainText } from "../../edge/src/services/templates-plain-text.ts";

describe("htmlToPlainText", () => {
  it("keeps every Handlebars tag exactly, entities and spaces inside them included", () => {
    const html =
      '<p>{{#equals  status "a &amp; b"}}Yes{{else}}No{{/equals}} {{{raw_html}}} {{!-- note: <b>}} --}}</p>';
    expect(htmlToPlainText(html)).toBe(
      '{{#equals  status "a &amp; b"}}Yes{{else}}No{{/equals}} {{{raw_html}}} {{!-- note: <b>}} --}}',
    );
  });

  it("writes block structure as lines: paragraphs, headings, breaks, lists, tables", () => {
    const html = [
      "<h1>Order   #42</h1>",
      "<p>Thanks,<br>Ann</p>",
      "<ul><li>One</li><li>Two</li></ul>",
      "<table><tr><td>Item</td><td>1.00</td></tr><tr><td>Tax</td><td>0.10</td></tr></table>",
      "<div>Footer</div>",
    ].join("\n");
    expect(htmlToPlainText(html)).toBe(
      "Order #42\n\nThanks,\nAnn\n\n- One\n- Two\nItem 1.00\nTax 0.10\nFooter",
    );
  });

  it("drops head, style, script and comments, but keeps the block tags inside them balanced", () => {
    const html =
      "<html><head><title>{{subject}}</title><style>.a{}</style></head><body>" +
      "<!--[if mso]>{{#if outlook}}<![endif]-->Hi<!--[if mso]>{{/if}}<![endif]--><script>x()</script></body></html>";
    const text = htmlToPlainText(html);
    expect(text).toBe("{{#if outlook}}Hi{{/if}}");
    expect(compileTemplate(text).ok).toBe(true);
  });

  it("writes links as 'text (address)', bare when the text is the address, and images as their alt text", () => {
    const html =
      '<p><a href="https://example.com/track?id={{id}}">Track your order</a> · ' +
      '<a href="https://example.com/">https://example.com/</a> · <a href="mailto:help@example.com"></a> · ' +
      '<a href="#top">Top</a> <img src="logo.png" alt="ACME"> <img src="spacer.gif"></p>';
    expect(htmlToPlainText(html)).toBe(
      "Track your order (https://example.com/track?id={{id}}) · https://example.com/ · help@example.com · Top ACME",
    );
  });

  it("decodes character references and keeps <pre> as written", () => {
    expect(
      htmlToPlainText("<p>&lt;a&gt; &amp; &quot;b&quot; &#39;c&#39; &#x2014; &euro;5&nbsp;off &bogus;</p>"),
    ).toBe("<a> & \"b\" 'c' — €5 off &bogus;");
    expect(htmlToPlainText("<p>Code:</p><pre>  line 1\n    line {{n}}</pre><p>end</p>")).toBe(
      "Code:\n\n  line 1\n    line {{n}}\n\nend",
    );
  });

  it("renders to what a reader expects once the data is in", () => {
    const text = htmlToPlainText(
      "<p>Hi {{name}},</p><ul>{{#each items}}<li>{{this.title}}: {{this.price}}</li>{{/each}}</ul>",
    );
    const compiled = compileTemplate(text);
    if (!compiled.ok) throw new Error(compiled.error.message);
    const r = render(
      compiled.template,
      {
        name: "Ann",
        items: [
          { title: "Tea", price: "3.00" },
          { title: "Cake & cream", price: "4.50" },
        ],
      },
      { escape: "none" }, // as the text part renders (docs/templates.md#escaping)
    );
    expect(r.ok && r.output).toBe("Hi Ann,\n\n- Tea: 3.00\n- Cake & cream: 4.50\n");
  });
});
