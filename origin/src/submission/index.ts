/**
 * SMTP submission (docs/smtp-submission.md) from the origin's settings: off unless SUBMISSION_PORT
 * or SUBMISSION_TLS_PORT is set. node.ts starts it after the node's other listeners.
 */
import type { OriginConfig } from "../config.ts";
import type { SubmissionMetrics } from "../ops/metrics.ts";
import { createEdgeClient } from "./edge-client.ts";
import { startSubmissionServer, type SubmissionServer } from "./server.ts";

export type { SubmissionServer } from "./server.ts";

export async function startSubmissionFromConfig(
  config: OriginConfig,
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void,
  metrics?: SubmissionMetrics,
): Promise<SubmissionServer | null> {
  if (config.SUBMISSION_PORT === undefined && config.SUBMISSION_TLS_PORT === undefined) return null;
  const { SUBMISSION_TLS_KEY_FILE: keyFile, SUBMISSION_TLS_CERT_FILE: certFile } = config;
  if (Boolean(keyFile) !== Boolean(certFile)) {
    throw new Error("SUBMISSION_TLS_KEY_FILE and SUBMISSION_TLS_CERT_FILE go together");
  }
  if (config.SUBMISSION_TLS_PORT !== undefined && !keyFile) {
    throw new Error("SUBMISSION_TLS_PORT is set but SUBMISSION_TLS_KEY_FILE/CERT_FILE are not");
  }
  return startSubmissionServer({
    host: config.SUBMISSION_HOST,
    ...(config.SUBMISSION_PORT !== undefined ? { port: config.SUBMISSION_PORT } : {}),
    ...(config.SUBMISSION_TLS_PORT !== undefined ? { tlsPort: config.SUBMISSION_TLS_PORT } : {}),
    ...(keyFile && certFile ? { tls: { keyFile, certFile } } : {}),
    hostname: config.HELO_NAME,
    edge: createEdgeClient({
      edgeUrl: config.EDGE_URL,
      timeoutMs: config.SUBMISSION_EDGE_TIMEOUT_MS,
      keyCacheMs: config.SUBMISSION_KEY_CACHE_MS,
    }),
    maxMessageBytes: config.SUBMISSION_MAX_MESSAGE_BYTES,
    maxRecipients: config.SUBMISSION_MAX_RECIPIENTS,
    limits: {
      maxAuthFailures: config.SUBMISSION_AUTH_FAILURES,
      cooldownMs: config.SUBMISSION_AUTH_COOLDOWN_MS,
      tarpitMs: config.SUBMISSION_AUTH_TARPIT_MS,
      maxConnectionsPerKey: config.SUBMISSION_MAX_CONNECTIONS_PER_KEY,
    },
    idleTimeoutMs: config.SUBMISSION_IDLE_TIMEOUT_MS,
    log,
    ...(metrics ? { metrics } : {}),
  });
}
