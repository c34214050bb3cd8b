/**
 * SendGrid's own Node client (@sendgrid/client 8.1.6) pointed at the Worker under test: every request
 * it would send to api.sendgrid.com goes to SELF.fetch instead, through axios's fetch adapter, so the
 * client's own path encoding, query serialisation and error handling are what the tests exercise.
 */
import { SELF } from "cloudflare:test";
import client from "@sendgrid/client";
import { BASE } from "./helpers.ts";

/** What @sendgrid/client throws for a non-2xx answer (its ResponseError). */
export type ClientError = { code: number; message: string; response: { body: unknown } };

/** Use `key` for the client's next requests, sent to the Worker. */
export function useKey(key: string): typeof client {
  client.setApiKey(key);
  // setApiKey resets baseUrl to SendGrid's host, so the overrides come after it.
  client.setDefaultRequest("baseUrl", `${BASE}/`);
  client.setDefaultRequest("adapter" as never, "fetch" as never);
  client.setDefaultRequest("fetchOptions" as never, {} as never);
  client.setDefaultRequest(
    "env" as never,
    { fetch: (i: RequestInfo, init?: RequestInit) => SELF.fetch(i, init) } as never,
  );
  return client;
}

/** One request through the client: its status and parsed body. */
export async function clientCall(
  method: string,
  url: string,
  body?: unknown,
  qs?: Record<string, unknown>,
): Promise<{ status: number; body: any }> {
  const [res, data] = await client.request({
    method: method as never,
    url,
    ...(body !== undefined ? { body: body as object } : {}),
    ...(qs ? { qs } : {}),
  });
  return { status: res.statusCode, body: data };
}

/** A request the client must refuse: the error it threw (fails the test if it succeeded). */
export async function clientFailure(method: string, url: string, body?: unknown): Promise<ClientError> {
  try {
    await clientCall(method, url, body);
  } catch (err) {
    return err as ClientError;
  }
  throw new Error(`${method} ${url} did not fail`);
}
