/**
 * EDGE_URL must use TLS (issue 6, item 15): the link carries the origin token and every decrypted
 * DKIM key. Plain http:// (or ws://) is accepted for loopback hosts only.
 */
import { describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";

const base = {
  ORIGIN_TOKEN: "t".repeat(32),
  VERP_SECRET: "v".repeat(32),
};
const load = (EDGE_URL: string) => loadOriginConfig({ ...base, EDGE_URL });

describe("EDGE_URL (issue 6, item 15)", () => {
  it.each(["https://scaisend.example.com", "https://10.0.0.5:8443/"])("accepts %s", (url) => {
    expect(load(url).EDGE_URL).toBe(url);
  });

  it("accepts wss:// and hands it on as https:// (the form the link turns into its WebSocket URL)", () => {
    expect(load("wss://scaisend.example.com").EDGE_URL).toBe("https://scaisend.example.com");
  });

  it.each([
    "http://127.0.0.1:8787",
    "http://127.8.9.10:8787",
    "http://localhost:8787",
    "http://[::1]:8787",
    "http://[::ffff:127.0.0.1]:8787",
  ])("accepts plain %s (loopback)", (url) => {
    expect(load(url).EDGE_URL).toBe(url);
  });

  it("accepts ws:// on loopback and hands it on as http://", () => {
    expect(load("ws://127.0.0.1:8787").EDGE_URL).toBe("http://127.0.0.1:8787");
  });

  it.each([
    "http://scaisend.example.com",
    "http://10.0.0.5:8787",
    "http://192.168.1.10",
    "http://localhost.example.com",
    "http://127.0.0.1.nip.io",
    "ws://scaisend.example.com",
    "http://[::2]:8787",
  ])("refuses %s with a clear message", (url) => {
    expect(() => load(url)).toThrow(
      /EDGE_URL: must be https:\/\/ \(or wss:\/\/\).*only allowed for loopback hosts/,
    );
  });

  it("refuses other schemes", () => {
    expect(() => load("ftp://scaisend.example.com")).toThrow(
      /EDGE_URL: must be an https:\/\/ \(or wss:\/\/\) URL/,
    );
  });
});
