/**
 * Issue 8's bench row: a 1,000-personalization dynamic-template send — time to the 202, and time
 * until the last of its 1,000 messages is at the sink. Through the whole local stack: the edge
 * (the Worker bundle on Miniflare, as the other through-the-edge runs) checks the template and
 * stores the version and each personalization's data once (docs/templates.md#where-rendering-happens);
 * the origin renders each message (Handlebars), signs it and delivers it to Postfix's smtp-sink.
 *
 * The template: the ~4 KB benchmark HTML with a greeting, an {{#each}} list and an {{#if}} per
 * message, and a subject with a variable, so every message is rendered from its own data. One
 * warm-up request of 10 personalizations goes first (template cache, MX cache, connections; not
 * reported); then `runs` requests one after the other, each waiting for its 1,000 messages.
 */
import { postMail, type BenchEdge } from "./lib/edge.ts";
import { FROM, recipient } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { say } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";
import { round } from "./lib/stats.ts";

export interface TemplateSendRun {
  personalizations: number;
  bodyBytes: number;
  msTo202: number;
  /** POST start → the last of its messages at the sink. */
  msToAllDelivered: number;
  messagesPerSec: number;
}

export interface TemplateSendResult {
  templateHtmlBytes: number;
  runs: TemplateSendRun[];
  notes: string;
}

const PERSONALIZATIONS = 1000;

function templateHtml(html: string): string {
  const greeting =
    "<p>Hello {{name}},</p><ul>{{#each items}}<li>{{title}}{{#if @last}} (last){{/if}}</li>{{/each}}</ul>" +
    "{{#if vip}}<p><b>Thanks for being a member since {{since}}.</b></p>{{else}}<p>Join us.</p>{{/if}}";
  return html.replace("<body>", `<body>${greeting}`);
}

function body(templateId: string, first: number, n: number): string {
  return JSON.stringify({
    from: FROM,
    template_id: templateId,
    personalizations: Array.from({ length: n }, (_, i) => ({
      to: [{ email: recipient(first + i) }],
      dynamic_template_data: {
        name: `Reader ${first + i}`,
        items: [{ title: "What changed" }, { title: "What is next" }, { title: `Issue ${first + i}` }],
        vip: i % 2 === 0,
        since: "2019",
      },
    })),
  });
}

export async function benchTemplateSend(
  edge: BenchEdge,
  opts: { quick: boolean; html: string; smtpSinkBin: string; dnsServer: string; workDir: string },
): Promise<TemplateSendResult> {
  const key = await edge.admin.createApiKey(edge.tenantId, {
    name: "bench-templates",
    environment: "live",
    scopes: ["templates.read", "templates.write"],
  });
  const api = async (path: string, payload: unknown) => {
    const res = await fetch(`${edge.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.api_key}`, "content-type": "application/json" },
      body: JSON.stringify(payload),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`POST ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    return JSON.parse(text) as { id: string };
  };
  const html = templateHtml(opts.html);
  const template = await api("/v3/templates", { name: "bench digest", generation: "dynamic" });
  await api(`/v3/templates/${template.id}/versions`, {
    name: "v1",
    active: 1,
    subject: "Your digest, {{name}}",
    html_content: html,
  });

  const sink = await startSmtpSink(opts.smtpSinkBin);
  try {
    const origin = await startOrigin({
      edgeUrl: edge.workerUrl,
      originToken: edge.originToken,
      dnsServer: opts.dnsServer,
      smtpPort: sink.port,
      workDir: opts.workDir,
      name: "origin-template",
    });
    try {
      let sent = 0;
      const send = async (n: number, timeoutMs: number): Promise<TemplateSendRun> => {
        const payload = body(template.id, 5_000_000 + sent, n);
        const t0 = Date.now();
        const res = await postMail(edge, payload);
        if (res.status !== 202 || res.messageIds.length !== n)
          throw new Error(
            `template send answered ${res.status} after ${round(res.ms, 0)} ms: ${res.text.slice(0, 300)}`,
          );
        sent += n;
        const tLast = await sink.waitForCount(sent, timeoutMs);
        const ms = tLast - t0;
        return {
          personalizations: n,
          bodyBytes: Buffer.byteLength(payload),
          msTo202: round(res.ms, 0),
          msToAllDelivered: ms,
          messagesPerSec: round(n / (ms / 1000), 0),
        };
      };
      await send(10, 60_000); // warm-up, not reported
      const runs: TemplateSendRun[] = [];
      for (let r = 0; r < (opts.quick ? 1 : 3); r++) {
        const run = await send(PERSONALIZATIONS, 180_000);
        say(
          `   template send ${r + 1}: 202 after ${run.msTo202} ms, all ${run.personalizations} at the sink after ${run.msToAllDelivered} ms (${run.messagesPerSec} msg/s)`,
        );
        runs.push(run);
      }
      return {
        templateHtmlBytes: Buffer.byteLength(html),
        runs,
        notes:
          "one request at a time; 'all delivered' = the sink's counter reached the request's last message (smtp-sink), before the edge records the results",
      };
    } finally {
      await origin.stop();
    }
  } finally {
    await sink.stop();
  }
}
