/**
 * Golden outputs from SendGrid's "Using Handlebars" reference: each template, test data and
 * resulting HTML below is the documented example, not our own output:
 * https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars
 *
 * The docs show results re-indented (Prettier-style), so outputs are compared with whitespace runs
 * collapsed. Where the documented result contradicts its own template, the test says so and asserts
 * what the template produces:
 * - "1/42017" for "1/4/2017" and "1800-555-5555" for "1-800-555-5555" are typos;
 * - the and/or results say "Hi Ben!" although the templates say "Hello Ben!", and the `or`
 *   result adds a sentence ("You can find the map…") its basic template does not contain;
 * - "Object failure" shows "<p>Hello</p>" where the template keeps the space before the mustache.
 */
import { describe, expect, it } from "vitest";
import { compileTemplate, render } from "../../shared/render/index.ts";

const DOC = "https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars";

function html(source: string, data: unknown): string {
  const c = compileTemplate(source);
  if (!c.ok) throw new Error(`compile: ${c.error.message}`);
  const r = render(c.template, data, { escape: "html" });
  if (!r.ok) throw new Error(`render: ${r.error.message}`);
  return r.output;
}

const norm = (s: string): string => s.replace(/\s+/g, " ").trim();

describe(`SendGrid's Handlebars reference (${DOC})`, () => {
  describe("substitution", () => {
    it("basic replacement", () => {
      expect(html("<p>Hello {{ firstName }}</p>", { firstName: "Ben" })).toBe("<p>Hello Ben</p>");
    });
    it("dynamic link values", () => {
      expect(html('<p><a href="{{ url }}">Click Me</a></p>', { url: "https://example.com/shop" })).toBe(
        '<p><a href="https://example.com/shop">Click Me</a></p>',
      );
    });
    it("deep object replacement", () => {
      expect(
        html("<p>Hello {{user.profile.firstName}}</p>", { user: { profile: { firstName: "Ben" } } }),
      ).toBe("<p>Hello Ben</p>");
    });
    it("object failure: a missing path renders empty", () => {
      const data = {
        user: {
          orderHistory: [
            { date: "2/1/2018", item: "shoes" },
            { date: "1/4/2017", item: "hat" },
          ],
        },
      };
      expect(html("<p>Hello {{user.profile.firstName}}</p>", data)).toBe("<p>Hello </p>");
    });
    it("replacement with HTML: the triple-stash is not escaped", () => {
      expect(html("<p>Hello {{{firstName}}}</p>", { firstName: "<strong>Ben</strong>" })).toBe(
        "<p>Hello <strong>Ben</strong></p>",
      );
    });
    it("formatDate without and with a timezone offset", () => {
      const data = {
        timeStamp: "2020-01-01T23:00:00.000Z",
        dateFormat: "MMMM DD, YYYY h:mm:ss A",
        timezoneOffset: "-0800",
      };
      expect(html("<p>Join us {{formatDate timeStamp dateFormat}}</p>", data)).toBe(
        "<p>Join us January 01, 2020 11:00:00 PM</p>",
      );
      expect(html("<p>Join us {{formatDate timeStamp dateFormat timezoneOffset}}</p>", data)).toBe(
        "<p>Join us January 01, 2020 3:00:00 PM</p>",
      );
    });
    it("formatDate tokens: the documented table for Tuesday, January 1st, 2020 3:00:00PM PST", () => {
      // The table's HH/H rows say "00"; at 3 PM they are 15 (24-hour clock), as the hh/h rows imply.
      const data = { t: "2020-01-01T23:00:00.000Z" };
      const fmt = (f: string) => html(`{{formatDate t "${f}" "-0800"}}`, data);
      const table: [string, string][] = [
        ["YYYY", "2020"],
        ["YY", "20"],
        ["MMMM", "January"],
        ["MMM", "Jan"],
        ["MM", "01"],
        ["M", "1"],
        ["DD", "01"],
        ["D", "1"],
        ["dddd", "Wednesday"],
        ["ddd", "Wed"],
        ["hh", "03"],
        ["h", "3"],
        ["HH", "15"],
        ["H", "15"],
        ["mm", "00"],
        ["m", "0"],
        ["ss", "00"],
        ["s", "0"],
        ["A", "PM"],
        ["ZZ", "-0800"],
        ["Z", "-08:00"],
      ];
      // January 1st, 2020 was a Wednesday; the docs' "Tuesday" is wrong about the calendar.
      for (const [token, want] of table) expect(fmt(token), token).toBe(want);
    });
    it("insert with a default value, all values and a missing one", () => {
      const t =
        '<p>Hello {{insert name "default=Customer"}}! Thank you for contacting us about {{insert businessName "your business"}}.</p>';
      expect(html(t, { name: "Ben", businessName: "Twilio SendGrid" })).toBe(
        "<p>Hello Ben! Thank you for contacting us about Twilio SendGrid.</p>",
      );
      expect(html(t, { name: "Ben" })).toBe(
        "<p>Hello Ben! Thank you for contacting us about your business.</p>",
      );
    });
  });

  describe("conditional statements", () => {
    const ifElse = `{{#if user.profile.male}}
   <p>Dear Sir</p>
{{else if user.profile.female}}
   <p>Dear Madame</p>
{{else}}
   <p>Dear Customer</p>
{{/if}}`;
    it("basic if, else, else if: the three documented data sets", () => {
      expect(norm(html(ifElse, { user: { profile: { male: true } } }))).toBe("<p>Dear Sir</p>");
      expect(norm(html(ifElse, { user: { profile: { female: true } } }))).toBe("<p>Dear Madame</p>");
      expect(norm(html(ifElse, { user: { profile: {} } }))).toBe("<p>Dear Customer</p>");
    });
    it("if with a root", () => {
      const t = `{{#if user.suspended}}
   <p>Warning! Your account is suspended, please call: {{@root.supportPhone}}</p>
{{/if}}`;
      expect(norm(html(t, { user: { suspended: true }, supportPhone: "1-800-555-5555" }))).toBe(
        "<p>Warning! Your account is suspended, please call: 1-800-555-5555</p>",
      );
    });
    it("unless", () => {
      const t = `{{#unless user.active}}
   <p>Warning! Your account is suspended, please call: {{@root.supportPhone}}</p>
{{/unless}}`;
      expect(norm(html(t, { user: { active: false }, supportPhone: "1-800-555-5555" }))).toBe(
        "<p>Warning! Your account is suspended, please call: 1-800-555-5555</p>",
      );
    });
    it("greaterThan, basic and with else", () => {
      const basic = `<p>
Hello Ben!
{{#greaterThan scoreOne scoreTwo}}
    Congratulations, you have the high score today!
{{/greaterThan}}
 Thanks for playing.
</p>`;
      expect(norm(html(basic, { scoreOne: 100, scoreTwo: 78 }))).toBe(
        "<p> Hello Ben! Congratulations, you have the high score today! Thanks for playing. </p>",
      );
      expect(norm(html(basic, { scoreOne: 55, scoreTwo: 78 }))).toBe(
        "<p> Hello Ben! Thanks for playing. </p>",
      );
      const withElse = basic.replace(
        "{{/greaterThan}}",
        "{{else}}\n    You were close, but you didn't get the high score today.\n{{/greaterThan}}",
      );
      expect(norm(html(withElse, { scoreOne: 55, scoreTwo: 78 }))).toBe(
        "<p> Hello Ben! You were close, but you didn't get the high score today. Thanks for playing. </p>",
      );
    });
    it("lessThan, basic and with else", () => {
      const t = `<p>
Hello Ben!
{{#lessThan scoreOne scoreTwo}}
    You were close, but you didn't get the high score today.
{{else}}
    Congratulations, you have the high score today!
{{/lessThan}}
 Thanks for playing.
</p>`;
      expect(norm(html(t, { scoreOne: 55, scoreTwo: 78 }))).toBe(
        "<p> Hello Ben! You were close, but you didn't get the high score today. Thanks for playing. </p>",
      );
      expect(norm(html(t, { scoreOne: 100, scoreTwo: 78 }))).toBe(
        "<p> Hello Ben! Congratulations, you have the high score today! Thanks for playing. </p>",
      );
    });
    it('equals with else, and the documented coercion {{#equals 3 "3"}}', () => {
      const t = `<p>
Hello Ben!
{{#equals customerCode winningCode}}
    You have a winning code.
{{else}}
    You do not have a winning code.
{{/equals}}
 Thanks for playing.
</p>`;
      expect(norm(html(t, { customerCode: 289199, winningCode: 289199 }))).toBe(
        "<p> Hello Ben! You have a winning code. Thanks for playing. </p>",
      );
      expect(norm(html(t, { customerCode: 167320, winningCode: 289199 }))).toBe(
        "<p> Hello Ben! You do not have a winning code. Thanks for playing. </p>",
      );
      expect(html('{{#equals 3 "3"}}true{{else}}false{{/equals}}', {})).toBe("true");
    });
    it("notEquals with else", () => {
      const t = `<p>
Hello Ben!
{{#notEquals currentDate appointmentDate}}
    Your appointment is not today.
{{else}}
    Your appointment is today.
{{/notEquals}}
 We look forward to your visit.
</p>`;
      expect(norm(html(t, { currentDate: 20230715, appointmentDate: 20230715 }))).toBe(
        "<p> Hello Ben! Your appointment is today. We look forward to your visit. </p>",
      );
      expect(norm(html(t, { currentDate: 20230710, appointmentDate: 20230715 }))).toBe(
        "<p> Hello Ben! Your appointment is not today. We look forward to your visit. </p>",
      );
      // Coercion applies to notEquals too ("3" and 3 are equal), whatever the docs' lower-case aside says.
      expect(html('{{#notEquals 3 "3"}}true{{else}}false{{/notEquals}}', {})).toBe("false");
    });
    it("and, with else: an empty string is false", () => {
      const t = `<p>
Hello Ben!
{{#and favoriteFood favoriteDrink}}
   Thank you for letting us know your dining preferences.
{{else}}
   If you finish filling out your dining preferences survey, we can deliver you recipes we think you'll be most interested in.
{{/and}}.
 We look forward to sending you more delicious recipes.</p>`;
      expect(norm(html(t, { favoriteFood: "Pasta", favoriteDrink: "" }))).toBe(
        "<p> Hello Ben! If you finish filling out your dining preferences survey, we can deliver you recipes we think you'll be most interested in. . We look forward to sending you more delicious recipes.</p>",
      );
      expect(norm(html(t, { favoriteFood: "Pasta", favoriteDrink: "Coffee" }))).toBe(
        "<p> Hello Ben! Thank you for letting us know your dining preferences. . We look forward to sending you more delicious recipes.</p>",
      );
    });
    it("or, basic: the three documented data sets", () => {
      const t = `<p>
Hello Ben!
{{#or isRunner isCyclist}}
   We think you might enjoy a map of trails in your area.
{{/or}}.
 Have a great day.
</p>`;
      const yes =
        "<p> Hello Ben! We think you might enjoy a map of trails in your area. . Have a great day. </p>";
      expect(norm(html(t, { isRunner: true, isCyclist: false }))).toBe(yes);
      expect(norm(html(t, { isRunner: false, isCyclist: false }))).toBe(
        "<p> Hello Ben! . Have a great day. </p>",
      );
      expect(norm(html(t, { isRunner: false, isCyclist: true }))).toBe(yes);
    });
    it("length with greaterThan (length cartItems) 0", () => {
      const t = `<p>
Hello Ben!
{{#greaterThan (length cartItems) 0}}
 It looks like you still have some items in your shopping cart. Sign back in to continue checking out at any time.
{{else}}
 Thanks for browsing our site. We hope you'll come back soon.
{{/greaterThan}}
</p>`;
      expect(norm(html(t, { cartItems: ["raft", "water bottle", "sleeping bag"] }))).toBe(
        "<p> Hello Ben! It looks like you still have some items in your shopping cart. Sign back in to continue checking out at any time. </p>",
      );
      expect(norm(html(t, { cartItems: [] }))).toBe(
        "<p> Hello Ben! Thanks for browsing our site. We hope you'll come back soon. </p>",
      );
    });
  });

  describe("iterations and combined examples", () => {
    it("basic iterator with each", () => {
      const t = `<ol>
  {{#each user.orderHistory}}
   <li>You ordered: {{this.item}} on: {{this.date}}</li>
  {{/each}}
</ol>`;
      const data = {
        user: {
          orderHistory: [
            { date: "2/1/2018", item: "shoes" },
            { date: "1/4/2017", item: "hat" },
          ],
        },
      };
      // Standalone block lines vanish, as in Handlebars: only the <li> lines are repeated.
      expect(html(t, data)).toBe(
        "<ol>\n   <li>You ordered: shoes on: 2/1/2018</li>\n   <li>You ordered: hat on: 1/4/2017</li>\n</ol>",
      );
    });
    it("dynamic content creation", () => {
      const t = `{{#each user.story}}
   {{#if this.male}}
      <p>{{this.date}}</p>
   {{else if this.female}}
      <p>{{this.item}}</p>
   {{/if}}
{{/each}}`;
      const data = {
        user: {
          story: [
            { male: true, date: "2/1/2018", item: "shoes" },
            { male: true, date: "1/4/2017", item: "hat" },
            { female: true, date: "1/1/2016", item: "shirt" },
          ],
        },
      };
      expect(norm(html(t, data))).toBe("<p>2/1/2018</p> <p>1/4/2017</p> <p>shirt</p>");
    });
    it("dynamic content creation with dynamic parts 1", () => {
      const t = `{{#each user.story}}
   {{#if this.male}}
      {{#if this.date}}
         <p>{{this.date}}</p>
      {{/if}}
      {{#if this.item}}
         <p>{{this.item}}</p>
      {{/if}}
   {{else if this.female}}
      {{#if this.date}}
         <p>{{this.date}}</p>
      {{/if}}
      {{#if this.item}}
         <p>{{this.item}}</p>
      {{/if}}
   {{/if}}
{{/each}}`;
      const data = {
        user: {
          story: [
            { male: true, date: "2/1/2018", item: "shoes" },
            { male: true, date: "1/4/2017" },
            { female: true, item: "shirt" },
          ],
        },
      };
      expect(norm(html(t, data))).toBe("<p>2/1/2018</p> <p>shoes</p> <p>1/4/2017</p> <p>shirt</p>");
    });
    it("dynamic content creation with dynamic parts 2", () => {
      const t = `{{#if people}}
   <p>People:</p>
   {{#each people}}
      <p>{{this.name}}</p>
   {{/each}}
{{/if}}`;
      expect(norm(html(t, { people: [{ name: "Bob" }, { name: "Sally" }] }))).toBe(
        "<p>People:</p> <p>Bob</p> <p>Sally</p>",
      );
    });
  });
});
