/**
 * Which addresses an MX answer may send the origin to (issue 6, item 14): the table in
 * origin/src/smtp/address-policy.ts, checked address by address.
 */
import { describe, expect, it } from "vitest";
import { isLoopbackHost, nonPublicReason } from "../../origin/src/smtp/address-policy.ts";

describe("nonPublicReason", () => {
  it.each([
    ["127.0.0.1", /loopback/],
    ["127.255.0.9", /loopback/],
    ["10.1.2.3", /private/],
    ["172.16.0.1", /private/],
    ["172.31.255.255", /private/],
    ["192.168.0.1", /private/],
    ["100.64.0.1", /CGNAT/],
    ["100.127.255.254", /CGNAT/],
    ["169.254.169.254", /metadata/],
    ["169.254.10.1", /link-local/],
    ["0.0.0.0", /unspecified/],
    ["255.255.255.255", /broadcast/],
    ["224.0.0.251", /multicast/],
    ["240.0.0.1", /reserved/],
    ["192.0.2.10", /documentation/],
    ["::", /unspecified/],
    ["::1", /loopback/],
    ["::ffff:127.0.0.1", /loopback.*IPv6 form/],
    ["::ffff:7f00:1", /loopback.*IPv6 form/],
    ["::ffff:10.0.0.1", /private.*IPv6 form/],
    ["::ffff:a9fe:a9fe", /metadata.*IPv6 form/],
    ["64:ff9b::192.168.1.1", /private.*IPv6 form/],
    ["2002:7f00:1::", /loopback.*IPv6 form/],
    ["fc00::1", /unique local/],
    ["fd12:3456::1", /unique local/],
    ["fd00:ec2::254", /metadata/],
    ["fe80::1", /link-local/],
    ["fe80::1%eth0", /link-local/],
    ["ff02::1", /multicast/],
    ["2001:db8::1", /documentation/],
    ["not-an-ip", /not an IP address/],
  ])("%s is refused (%s)", (address, reason) => {
    expect(nonPublicReason(address)).toMatch(reason);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255", // just below CGNAT
    "100.128.0.0", // just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "198.41.0.4",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
  ])("%s is public", (address) => {
    expect(nonPublicReason(address)).toBeNull();
  });
});

describe("isLoopbackHost", () => {
  it.each(["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "[::ffff:127.0.0.1]"])(
    "%s is loopback",
    (host) => expect(isLoopbackHost(host)).toBe(true),
  );
  it.each(["example.com", "localhost.example.com", "10.0.0.1", "0.0.0.0", "::", "[::2]", "128.0.0.1"])(
    "%s is not",
    (host) => expect(isLoopbackHost(host)).toBe(false),
  );
});
