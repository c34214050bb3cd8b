/**
 * X-Request-Id (edge/src/middleware/request-id.ts): every answer carries one, set on the response the
 * route made (not by copying it): a 202, SendGrid- and FastAPI-dialect errors, a 404, /healthz.
 */
import { describe, expect, it } from "vitest";
import { call, mailBody, setupTenant } from "./helpers.ts";

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("X-Request-Id", () => {
  it("is on a 202, its body and other headers intact, and echoes a well-formed incoming id", async () => {
    const t = await setupTenant();
    const send = (headers: Record<string, string> = {}) =>
      call("/v3/mail/send", {
        method: "POST",
        headers: { authorization: `Bearer ${t.liveKey}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(mailBody(t.from)),
      });
    const res = await send();
    expect(res.status).toBe(202);
    expect(res.headers.get("x-request-id")).toMatch(ID);
    const body = (await res.json()) as { message_id: string };
    expect(res.headers.get("x-message-id")).toBe(body.message_id);
    expect(res.headers.get("x-ratelimit-limit")).not.toBeNull();

    const echoed = await send({ "x-request-id": "client-abc.123" });
    expect(echoed.headers.get("x-request-id")).toBe("client-abc.123");
    // One that could smuggle anything into logs is replaced.
    const replaced = await send({ "x-request-id": "bad id with spaces" });
    expect(replaced.headers.get("x-request-id")).toMatch(ID);
  });

  it("is on errors of both dialects, a 404 and /healthz", async () => {
    for (const [path, init, status] of [
      ["/v3/mail/send", { method: "POST", headers: { authorization: "Bearer sg_live_nope" } }, 401],
      ["/api/admin/tenants", { method: "GET" }, 401],
      ["/no/such/route", {}, 404],
      ["/healthz", {}, 200],
    ] as const) {
      const res = await call(path, init);
      expect(res.status, path).toBe(status);
      expect(res.headers.get("x-request-id"), path).toMatch(ID);
      await res.arrayBuffer();
    }
  });
});
