/**
 * htmlToPlainText (edge/src/services/templates-plain-text.ts) costs linear time on adversarial
 * input: a version's html_content is up to 1 MiB of whatever a client sends, and a legacy template
 * is not parsed first. Measured here under Node because workerd's clock does not advance during
 * synchronous work; the function is plain TypeScript and runs the same in both.
 */
import { describe, expect, it } from "vitest";
import { htmlToPlainText } from "../../edge/src/services/templates-plain-text.ts";

describe("htmlToPlainText on a megabyte of unclosed tags", () => {
  it("costs linear time on a megabyte of unclosed tags (no pattern rescans the input)", () => {
    for (const unit of [
      "<a",
      "{{",
      "{{{",
      "{{!--",
      "<pre>",
      "&#x",
      "<!--",
      "<a href=x>",
      "<style",
      "<div>",
      "<li>",
      "</li>",
    ]) {
      const input = unit.repeat(Math.floor(1_048_576 / unit.length));
      const started = performance.now();
      htmlToPlainText(input);
      // Quadratic behaviour on this input takes minutes; linear takes milliseconds. The bound is
      // loose so a loaded machine does not fail it.
      expect(performance.now() - started, unit).toBeLessThan(3000);
    }
  });
});
