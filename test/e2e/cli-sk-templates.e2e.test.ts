/**
 * `scaisend sk-templates …` (scripts/lib/sk-templates-cli.ts) run as an operator runs it, against
 * the edge Worker in workerd (Miniflare): create a template from a content file, add versions,
 * publish, roll back, archive; each step checked through SenderKit's /v1 API with a SenderKit key
 * (what a send would render), and a refusal prints the server's reason and exits 1.
 */
import { describe, expect, it } from "vitest";
import { useCliEdge } from "./cli-harness.ts";

const cli = useCliEdge("sk-templates", { dirPrefix: "e2e-cli-sk-" });
const { scaisend, json, api, file } = cli;

describe("scaisend sk-templates", () => {
  it("creates, versions, publishes, rolls back and archives; /v1 renders what the CLI set", async () => {
    const tenant = (await api("POST", "/api/admin/tenants", cli.adminToken, { name: "Sk Cli" })).body.data
      .id as string;
    const key = (
      await api("POST", `/api/admin/tenants/${tenant}/api_keys`, cli.adminToken, {
        name: "sk",
        environment: "live",
        format: "senderkit",
      })
    ).body.data.api_key as string;
    const render = async () =>
      (await api("POST", "/v1/templates/otp/render", key, { vars: { code: "42" } })).body;

    const created = await json([
      "create",
      "--tenant",
      tenant,
      "--slug",
      "OTP",
      "--channel",
      "sms",
      "--description",
      "one-time code",
      "--content",
      file("v1.json", { body: "v1 code {{code}}" }),
      "--variables",
      file("vars.json", [{ name: "code", type: "string", required: true }]),
      "--publish",
    ]);
    expect(created).toMatchObject({ slug: "otp", status: "active", current_version: 1, latest_version: 1 });
    expect(await render()).toEqual({ channel: "sms", output: { body: "v1 code 42" }, missing: [] });

    // Content from stdin; published at once.
    const v2 = await json(
      ["version", "--tenant", tenant, "--slug", "otp", "--content", "-", "--publish"],
      '{"body":"v2 {{code}}"}',
    );
    expect(v2).toMatchObject({ version: 2, current: true });
    expect((await render()).output.body).toBe("v2 42");

    const text = await scaisend(["show", "--tenant", tenant, "--slug", "otp"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^otp sms active current=2 latest=2 one-time code$/m);
    expect(text.stdout).toMatch(/^ {2}v2 \(current\) created /m);

    const back = await json(["rollback", "--tenant", tenant, "--slug", "otp"]);
    expect(back.current_version).toBe(1);
    expect((await render()).output.body).toBe("v1 code 42");
    expect((await json(["show", "--tenant", tenant, "--slug", "otp", "--version", "2"])).content).toEqual({
      body: "v2 {{code}}",
    });

    const list = await json(["list", "--tenant", tenant]);
    expect(list.map((t: { slug: string }) => t.slug)).toEqual(["otp"]);

    expect((await json(["archive", "--tenant", tenant, "--slug", "otp"])).status).toBe("archived");
    const archived = await api("POST", "/v1/templates/otp/render", key, {});
    expect(archived.status).toBe(422);
    expect(archived.body.error.code).toBe("template_archived");

    // Refusals print the server's reason and exit 1.
    const refused = await scaisend([
      "version",
      "--tenant",
      tenant,
      "--slug",
      "otp",
      "--content",
      file("v3.json", { body: "x" }),
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^scaisend: add version failed: HTTP 409 .*archived/);
    const bad = await scaisend([
      "create",
      "--tenant",
      tenant,
      "--slug",
      "e",
      "--channel",
      "email",
      "--content",
      file("bad.json", { subject: "s", html: "{{#x}}" }),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/HTTP 422 body\.content\.html: /);
    expect((await json(["unarchive", "--tenant", tenant, "--slug", "otp"])).status).toBe("draft");
  });
});
