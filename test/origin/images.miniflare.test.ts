/**
 * The image library in the Worker as `wrangler deploy` bundles it, run in workerd through Miniflare
 * (scripts/lib/miniflare-edge.ts, the stack the end-to-end tests and `npm start` use): the bundle
 * carries photon's .wasm as its own module, and an upload is decoded and thumbnailed there. The
 * thumbnail is decoded again here, in Node, with photon's Node build.
 */
import fs from "node:fs";
import path from "node:path";
import { PhotonImage } from "@cf-wasm/photon/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { freshSecrets, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { encodePng } from "../edge/image-fixtures.ts";

let edge: MiniflareEdge;
let workDir: string;
const secrets = freshSecrets();

beforeAll(async () => {
  workDir = testWorkDir("images-miniflare");
  edge = await startMiniflareEdge({ persistDir: path.join(workDir, "edge"), vars: { ...secrets } });
}, 180_000);

afterAll(async () => {
  await edge?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

describe("the image library in the bundled Worker", () => {
  it("uploads a PNG, serves it and its thumbnail made by photon inside the bundle", async () => {
    const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
    const tenant = await admin.createTenant("images");
    const key = await admin.createApiKey(tenant.id, {
      name: "images",
      environment: "live",
      scopes: ["templates.read", "templates.write"],
    });
    const png = encodePng(320, 160);
    const form = new FormData();
    form.append("file", new Blob([png]), "banner.bin");
    const res = await fetch(`${edge.url}/v3/images`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.api_key}` },
      body: form,
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const img = (await res.json()) as { id: string; content_type: string; width: number; height: number };
    expect([img.content_type, img.width, img.height]).toEqual(["image/png", 320, 160]);

    const original = await fetch(`${edge.url}/i/${img.id}`);
    expect(original.status).toBe(200);
    expect(Buffer.from(await original.arrayBuffer()).equals(Buffer.from(png))).toBe(true);

    const thumb = await fetch(`${edge.url}/i/${img.id}?variant=thumbnail`);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get("content-type")).toBe("image/png");
    const decoded = PhotonImage.new_from_byteslice(new Uint8Array(await thumb.arrayBuffer()));
    expect([decoded.get_width(), decoded.get_height()]).toEqual([200, 100]);
    decoded.free();
  }, 60_000);
});
