/**
 * `scaisend providers …` (scripts/lib/providers-cli.ts) run as an operator runs it, against the edge
 * Worker in workerd (Miniflare): add a Twilio connection from a credentials file and an Expo one from
 * stdin, list them (hints, never the secrets), rotate from stdin, make another the default, remove;
 * each step checked through the admin API, and through a live `/v1/send` (400
 * provider_not_configured before any connection). A secret on the command line is refused (there is
 * no option that takes one), and a refusal of the API prints its reason and exits 1.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { useCliEdge } from "./cli-harness.ts";

const TOKEN = "cli-twilio-token-0123456789";

const cli = useCliEdge("providers", { dirPrefix: "e2e-cli-providers-" });
const { scaisend, json, api } = cli;

describe("scaisend providers", () => {
  it("adds, lists, rotates, makes default and removes connections, secrets only from files or stdin", async () => {
    const tenant = (await api("POST", "/api/admin/tenants", cli.adminToken, { name: "Providers Cli" })).body
      .data.id as string;
    const key = (
      await api("POST", `/api/admin/tenants/${tenant}/api_keys`, cli.adminToken, {
        name: "sk",
        environment: "live",
        format: "senderkit",
      })
    ).body.data.api_key as string;
    const sms = { channel: "sms", to: "+14155550123", content: { body: "hi" } };
    expect((await api("POST", "/v1/send", key, sms)).body.error.code).toBe("provider_not_configured");

    const credFile = path.join(cli.workDir, "twilio.json");
    fs.writeFileSync(
      credFile,
      JSON.stringify({ account_sid: "AC0123", auth_token: TOKEN, from: "+15005550006" }),
    );
    const a = await json([
      "add",
      "--tenant",
      tenant,
      "--channel",
      "sms",
      "--provider",
      "twilio",
      "--name",
      "main",
      "--credentials",
      credFile,
    ]);
    expect(a).toMatchObject({
      provider: "twilio",
      is_default: true,
      credential_hints: { auth_token: "…6789" },
    });
    const b = await json(
      [
        "add",
        "--tenant",
        tenant,
        "--channel",
        "sms",
        "--provider",
        "twilio",
        "--name",
        "backup",
        "--credentials",
        "-",
      ],
      JSON.stringify({ account_sid: "AC0456", auth_token: "other-token-4321", messaging_service_sid: "MG1" }),
    );
    expect(b.is_default).toBe(false);

    const listed = await scaisend(["list", "--tenant", tenant]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(
      `${a.id} sms twilio main (default) account_sid=AC0123 from=+15005550006 auth_token=…6789`,
    );
    expect(listed.stdout).toContain(`${b.id} sms twilio backup`);
    expect(listed.stdout).not.toContain(TOKEN);

    // A live send goes through now (accepted; no origin is connected, it waits in the outbox).
    expect((await api("POST", "/v1/send", key, sms)).status).toBe(202);

    const rotated = await json(
      ["rotate", "--tenant", tenant, "--id", a.id, "--credentials", "-"],
      JSON.stringify({ account_sid: "AC0123", auth_token: "rotated-token-9999", from: "+15005550006" }),
    );
    expect(rotated.credential_hints).toEqual({ auth_token: "…9999" });

    const made = await json(["default", "--tenant", tenant, "--id", b.id]);
    expect(made.is_default).toBe(true);
    const after = (await api("GET", `/api/admin/tenants/${tenant}/provider-connections`, cli.adminToken)).body
      .data;
    expect(after.map((c: { name: string; is_default: boolean }) => [c.name, c.is_default])).toEqual([
      ["main", false],
      ["backup", true],
    ]);

    // No option takes a secret: parseArgs refuses an unknown one, and nothing is stored.
    const argv = await scaisend([
      "add",
      "--tenant",
      tenant,
      "--channel",
      "sms",
      "--provider",
      "twilio",
      "--name",
      "argv",
      "--auth-token",
      TOKEN,
    ]);
    expect(argv.code).toBe(2);
    expect(argv.stderr).toContain("--auth-token");
    // The API's refusal is printed, exit 1.
    const bad = await scaisend(
      [
        "add",
        "--tenant",
        tenant,
        "--channel",
        "sms",
        "--provider",
        "twilio",
        "--name",
        "bad",
        "--credentials",
        "-",
      ],
      JSON.stringify({ account_sid: "AC1" }),
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/auth_token/);

    const removed = await scaisend(["remove", "--tenant", tenant, "--id", a.id]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain(`removed ${a.id}`);
    const left = (await api("GET", `/api/admin/tenants/${tenant}/provider-connections`, cli.adminToken)).body
      .data;
    expect(left.map((c: { id: string }) => c.id)).toEqual([b.id]);
  });
});
