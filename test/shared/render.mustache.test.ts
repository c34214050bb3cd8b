/**
 * The shared renderer's Mustache lookup (shared/render/interpret.ts, `lookup: "mustache"`), which
 * SenderKit templates use (docs/api/senderkit.md#templates): a name not found in a section's item is
 * found in the enclosing contexts; the Handlebars default is unchanged.
 */
import { describe, expect, it } from "vitest";
import { compileTemplate, render, type RenderResult } from "../../shared/render/index.ts";

function run(source: string, data: unknown, lookup?: "mustache" | "handlebars"): RenderResult {
  const c = compileTemplate(source);
  if (!c.ok) throw new Error(`compile: ${c.error.message}`);
  return render(c.template, data, { escape: "html", ...(lookup ? { lookup } : {}) });
}

const data = {
  shop: "Root",
  user: { name: "Ada", plan: { tier: "pro" } },
  items: [{ title: "Pen" }, { title: "Ink", shop: "Mine" }, { title: "Cap", shop: null }],
};

describe("mustache lookup", () => {
  it("walks out through the context stack for the first part of a name", () => {
    const src = "{{#items}}[{{title}}@{{shop}}]{{/items}}";
    expect(run(src, data, "mustache")).toEqual({
      ok: true,
      output: "[Pen@Root][Ink@Mine][Cap@]",
      missing: [],
    });
    // Handlebars (the default and /v3's mode) reads the current context only.
    const hb = run(src, data);
    expect(hb.ok && hb.output).toBe("[Pen@][Ink@Mine][Cap@]");
    expect(hb.missing).toEqual(["shop"]);
  });

  it("reads the rest of a dotted name inside what the first part found, and reports what is missing", () => {
    const src = "{{#items}}{{user.name}}/{{user.plan.tier}}/{{user.nope}};{{/items}}";
    const r = run(src, { ...data, items: [{ title: "x" }] }, "mustache");
    expect(r).toEqual({ ok: true, output: "Ada/pro/;", missing: ["user.nope"] });
    // An inner `user` without the key hides the outer one, as in Mustache.
    const inner = run("{{#items}}{{user.name}}{{/items}}", { ...data, items: [{ user: {} }] }, "mustache");
    expect(inner).toEqual({ ok: true, output: "", missing: ["user.name"] });
  });

  it("keeps this, ../ and @-variables as they are", () => {
    const src = "{{#items}}{{this.shop}}|{{../shop}}|{{@index}};{{/items}}";
    expect(run(src, data, "mustache")).toMatchObject({ ok: true, output: "|Root|0;Mine|Root|1;|Root|2;" });
  });

  it("truthy sections take the value as context; inverted sections show for a missing or empty value", () => {
    const src = "{{#user}}{{name}} in {{shop}}{{/user}}{{^none}}!{{/none}}{{^items}}no{{/items}}";
    expect(run(src, data, "mustache")).toEqual({ ok: true, output: "Ada in Root!", missing: ["none"] });
  });
});
