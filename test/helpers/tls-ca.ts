/**
 * A throw-away certificate authority for TLS tests, made with the openssl CLI (no npm dependency):
 * `createTestCa()` makes a CA; `ca.issue(names)` a server certificate for those DNS names signed by
 * it. Code under test trusts `ca.cert` through its CA setting (MTA_STS_CA_FILE, `tlsCa`), so a
 * certificate it issued validates, and a self-signed one (smtp-servers.ts createSelfSignedCert) or
 * one issued for other names does not.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TlsCredentials } from "./smtp-servers.ts";

export interface TestCa {
  /** The CA certificate (PEM), to trust. */
  cert: string;
  /** A server certificate for `names` (DNS subjectAltNames), signed by this CA. */
  issue(names: string[]): TlsCredentials;
  /** Removes the CA's key files. */
  dispose(): void;
}

const openssl = (args: string[], cwd: string) => execFileSync("openssl", args, { cwd, stdio: "ignore" });
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function createTestCa(commonName = "ScaiSend Test CA"): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "scaisend-ca-"));
  openssl(
    [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      `/CN=${commonName}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  const cert = readFileSync(join(dir, "ca.pem"), "utf8");
  let serial = 1;
  return {
    cert,
    issue(names) {
      const n = serial++;
      writeFileSync(
        join(dir, `leaf${n}.ext`),
        [
          "basicConstraints=CA:FALSE",
          "keyUsage=critical,digitalSignature",
          "extendedKeyUsage=serverAuth",
          `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
        ].join("\n"),
      );
      openssl(
        [
          "req",
          "-new",
          ...EC_KEY,
          "-keyout",
          `leaf${n}.key`,
          "-out",
          `leaf${n}.csr`,
          "-subj",
          `/CN=${names[0] ?? "leaf"}`,
        ],
        dir,
      );
      openssl(
        [
          "x509",
          "-req",
          "-in",
          `leaf${n}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-set_serial",
          String(1000 + n),
          "-days",
          "1",
          "-extfile",
          `leaf${n}.ext`,
          "-out",
          `leaf${n}.pem`,
        ],
        dir,
      );
      return {
        key: readFileSync(join(dir, `leaf${n}.key`), "utf8"),
        cert: readFileSync(join(dir, `leaf${n}.pem`), "utf8"),
      };
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
