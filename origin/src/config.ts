/**
 * Origin configuration: the only reader of process.env. Every setting has a type, a default where
 * one makes sense, and a description (printed by `--help`; docs/configuration.md lists them all).
 */
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { isLoopbackHost } from "./smtp/address-policy.ts";
import { createThrottlePolicy } from "./delivery/throttle.ts";
import { parseWarmupSchedule, parseWarmupStart } from "./delivery/warmup.ts";
import { loadIpPoolConfig, parseHeloNames, parseIpPools } from "./smtp/source-address.ts";
import { channelConfigShape } from "./channels/config.ts";

const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");
const port = z.coerce.number().int().min(0).max(65535);
const hostPort = z
  .string()
  .regex(/^[^:\s]+:\d{1,5}$/, 'must look like "host:port"')
  .transform((v) => {
    const i = v.lastIndexOf(":");
    return { host: v.slice(0, i), port: Number(v.slice(i + 1)) };
  });

/** Runs a parser of a throttle or warm-up spec and reports its error message as the issue. */
const checked =
  (parse: (v: string) => unknown) =>
  (v: string | undefined, ctx: z.RefinementCtx): void => {
    if (v === undefined) return;
    try {
      parse(v);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
    }
  };

const list = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean),
);

export const OriginConfigSchema = z.object({
  // The link carries the origin token and every decrypted DKIM key: TLS is required except on
  // loopback (tests, `npm run dev`). ws(s):// is accepted and normalised to http(s)://, the form
  // EdgeLink turns into its WebSocket URL.
  EDGE_URL: z
    .url()
    .superRefine((value, ctx) => {
      const url = new URL(value);
      if (url.protocol === "https:" || url.protocol === "wss:") return;
      if ((url.protocol === "http:" || url.protocol === "ws:") && isLoopbackHost(url.hostname)) return;
      ctx.addIssue({
        code: "custom",
        message:
          url.protocol === "http:" || url.protocol === "ws:"
            ? `must be https:// (or wss://): ${url.protocol}// would send the origin token and DKIM keys in clear; plain http is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost)`
            : `must be an https:// (or wss://) URL, not ${url.protocol}//`,
      });
    })
    .transform((value) => value.replace(/^ws(s?):/i, "http$1:"))
    .describe(
      "Base URL of the edge Worker, e.g. https://scaisend.example.com; https:// or wss:// required, http:// only for loopback hosts",
    ),
  ORIGIN_TOKEN: z
    .string()
    .min(32)
    .describe("Shared secret that authenticates this node's link (same as the edge's)"),
  VERP_SECRET: z
    .string()
    .min(32)
    .describe("HMAC key for VERP return paths; every node and the bounce server share it"),
  NODE_ID: z
    .string()
    .min(1)
    .max(128)
    .default(os.hostname())
    .describe(
      "Name of this node on the edge and in logs: unique among running processes, and the same across a " +
        "restart, so the edge re-dispatches a restarted process's jobs at once (set it when several " +
        "processes share a host)",
    ),
  CAPACITY: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(100)
    .describe("Jobs this node works on at once"),
  HELO_NAME: z
    .string()
    .min(1)
    .default(os.hostname())
    .describe("Name sent in EHLO; should match the node's reverse DNS"),
  SMTP_PORT: port.default(25).describe("Port of recipients' MX servers (25; tests use others)"),
  // IP pools (smtp/source-address.ts, docs/configuration.md#ip-pools); each address is bound once at start.
  IP_POOLS: z
    .string()
    .optional()
    .superRefine(checked(parseIpPools))
    .describe(
      'Named pools of source addresses outbound SMTP binds to, e.g. "transactional=192.0.2.10,192.0.2.11;marketing=192.0.2.20,2001:db8::20"; a send picks one with ip_pool_name; unset = no pools (the system picks the address)',
    ),
  IP_POOL_DEFAULT: z
    .string()
    .optional()
    .describe(
      "Pool of IP_POOLS for sends that name none; unset = those go out from the address the system picks",
    ),
  IP_POOL_HELO_NAMES: z
    .string()
    .optional()
    .superRefine(checked(parseHeloNames))
    .describe(
      'EHLO name per pool address, e.g. "192.0.2.10=mta1.example.com,2001:db8::20=mta6.example.com" (each should be its address\'s reverse DNS); others say HELO_NAME',
    ),
  SMARTHOST: hostPort
    .optional()
    .describe(
      "Send everything to this host:port instead of MX (a relay, or the dev inbox); not subject to ALLOW_PRIVATE_MX",
    ),
  ALLOW_PRIVATE_MX: bool
    .default(false)
    .describe(
      "Let recipients' MX (or implicit-MX A/AAAA) answers point at loopback, private, link-local, CGNAT or metadata addresses; off, such mail bounces with 5.4.4",
    ),
  DNS_SERVERS: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .optional()
    .describe("Comma-separated DNS servers (ip or ip:port) for MX look-ups; the system resolver when unset"),
  MTA_STS: bool
    .default(true)
    .describe(
      "Look up recipient domains' MTA-STS policies (RFC 8461) and apply them: enforce → only listed MX hosts, STARTTLS with a valid certificate, else deferred; testing → delivered, shortfall reported; false = opportunistic TLS only",
    ),
  MTA_STS_CA_FILE: z
    .string()
    .min(1)
    .optional()
    .describe(
      "PEM file of extra CA certificates trusted beside Node's bundled roots for MTA-STS policy hosts and the MX certificates a policy requires (a private CA; tests)",
    ),
  RETURN_PATH_DOMAIN: z
    .string()
    .optional()
    .describe("Domain of VERP bounce addresses; defaults to the sender's domain"),
  CONNECT_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(30_000)
    .describe("TCP connect timeout per MX host"),
  // RFC 5321 §4.5.3.2: one timer per reply the client waits for (smtp/step-timeouts.ts), each capped
  // by the job deadline.
  SMTP_TIMEOUT_GREETING_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(300_000)
    .describe("Wait for an MX server's 220 greeting once connected (RFC 5321: 5 min)"),
  SMTP_TIMEOUT_HELO_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(300_000)
    .describe("Wait for the reply to EHLO/HELO, STARTTLS (and its handshake), RSET and QUIT"),
  SMTP_TIMEOUT_MAIL_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(300_000)
    .describe("Wait for the reply to MAIL FROM (RFC 5321: 5 min)"),
  SMTP_TIMEOUT_RCPT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(300_000)
    .describe("Wait for the reply to each RCPT TO (RFC 5321: 5 min)"),
  SMTP_TIMEOUT_DATA_INIT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(120_000)
    .describe("Wait for the 354 reply to DATA (RFC 5321: 2 min)"),
  SMTP_TIMEOUT_DATA_BLOCK_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(180_000)
    .describe("Longest time a send of message data may take to complete (RFC 5321: 3 min)"),
  SMTP_TIMEOUT_DATA_DONE_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(600_000)
    .describe('Wait for the reply after the message\'s final "." (RFC 5321: 10 min)'),
  MAX_CONNECTIONS_PER_HOST: z.coerce
    .number()
    .int()
    .min(1)
    .default(5)
    .describe("Concurrent SMTP connections per MX host"),
  MAX_MESSAGES_PER_CONNECTION: z.coerce
    .number()
    .int()
    .min(1)
    .default(100)
    .describe(
      "Messages one SMTP session to an MX carries before it is closed with QUIT and a new one opened",
    ),
  MX_CACHE_TTL_S: z.coerce
    .number()
    .int()
    .min(0)
    .default(300)
    .describe("Upper bound on how long MX answers are cached"),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must look like "redis://host:6379" (or rediss:// for TLS)')
    .optional()
    .describe(
      "Redis shared by several origin nodes (per-host limits, job de-duplication); in-memory when unset",
    ),
  HOST_SLOT_TTL_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(60_000)
    .describe(
      "Lease of one per-host connection slot, renewed while held; a crashed node's slots free after this",
    ),
  HOST_SLOT_WAIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(120_000)
    .describe("How long a delivery waits for a free per-host slot before it is deferred"),
  // Per-destination limits and warm-up (delivery/throttle.ts, delivery/warmup.ts; docs/operations.md).
  THROTTLE_RATES: z
    .string()
    .optional()
    .superRefine(checked((v) => createThrottlePolicy({ rates: v })))
    .describe(
      'Recipients per interval per destination domain, e.g. "gmail.com=20/1s,example.org=600/1m,*=none", over the built-in gmail.com 20/1s, outlook.com 10/1s, yahoo.com 10/1s, icloud.com 5/1s (a provider\'s domains share one: googlemail.com counts as gmail.com); `*` = every other domain (default none)',
    ),
  THROTTLE_CONCURRENCY: z
    .string()
    .optional()
    .superRefine(checked((v) => createThrottlePolicy({ concurrency: v })))
    .describe(
      'SMTP transactions at once per destination domain across nodes, e.g. "gmail.com=20,*=20", over the built-in gmail.com 20, outlook.com 10, yahoo.com 10, icloud.com 5, * 20; a transaction waits up to HOST_SLOT_WAIT_MS for its turn',
    ),
  THROTTLE_MAX_WAIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(30_000)
    .describe(
      "Longest wait for a destination's rate token (never past half the time left before the job deadline); beyond it the recipients are deferred with a retry time",
    ),
  THROTTLE_BACKOFF_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(60_000)
    .describe(
      "Pause of a destination after it pushed back (421, or THROTTLE_PUSHBACK_AFTER all-4xx transactions in a row); doubled for each repeat while its back-off level has not decayed",
    ),
  THROTTLE_PUSHBACK_AFTER: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(3)
    .describe(
      "Transactions in a row with a 4xx for every recipient before a destination counts as pushing back (a 421 always does); one alone is usually greylisting",
    ),
  THROTTLE_BACKOFF_MAX_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(3_600_000)
    .describe("Longest back-off pause of a destination"),
  THROTTLE_BACKOFF_DECAY_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(600_000)
    .describe(
      "After its pause a destination drops one back-off level (each level halves its connections and rate) per this long without pushback",
    ),
  WARMUP_SCHEDULE: z
    .string()
    .optional()
    .superRefine(checked(parseWarmupSchedule))
    .describe(
      'Warm-up: recipients allowed per UTC day from the start date, e.g. "50,100,250,500,1000*2,2500,5000,10000"; past its end no limit; unset = off',
    ),
  WARMUP_START: z
    .string()
    .optional()
    .superRefine(checked(parseWarmupStart))
    .describe(
      'Warm-up start dates: "example.com=2026-12-01" per sending domain, "*=2026-12-01" for everything this node (its IP) sends; over the day\'s allowance mail is deferred to the next day, never bounced',
    ),
  JOB_CLAIM_TTL_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(600_000)
    .describe(
      "How long a node's claim on a message lasts; must outlive the edge's lease (LINK_LEASE_MS) plus the job deadline (0.4 × lease), and is raised to that when shorter",
    ),
  LINK_MAX_UNACKED_RESULTS: z.coerce
    .number()
    .int()
    .min(1)
    .default(1_000)
    .describe(
      "Results per shard link waiting for the edge's acknowledgement (e.g. while D1 is down) at which the node stops taking jobs on that link until acknowledgements catch up",
    ),
  JOURNAL_DIR: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Directory of the outcome journal (results written before they are sent, reported again after a crash; one subdirectory per NODE_ID); default /var/lib/scaisend/journal with NODE_ENV=production, else .dev/journal; keep it on local disk, back it up with the node, never delete it while the node has work",
    ),
  JOURNAL_FSYNC_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(1_000)
    .default(20)
    .describe(
      "How often the outcome journal is fsynced while written: a crash of the process loses nothing, a power loss at most this interval; 0 = after every result",
    ),
  JOB_RESULT_TTL_S: z.coerce
    .number()
    .int()
    .min(1)
    .default(86_400)
    .describe("How long final per-recipient outcomes are kept so a re-dispatched job is not delivered twice"),
  COMPOSE_THREADS: z.coerce
    .number()
    .int()
    .min(0)
    .max(256)
    .default(Math.max(1, os.availableParallelism() - 1))
    .describe(
      "Worker threads that build and DKIM-sign messages, so the SMTP/link event loop never waits on them; default cores − 1 (at least 1), 0 = on the main thread",
    ),
  DKIM_FAST_PATH: bool
    .default(true)
    .describe(
      "Sign buildMime's messages with the origin's DKIM fast path (byte-identical to mailauth's dkimSign, about half the CPU); false = mailauth for every message",
    ),
  BLOB_CACHE_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(256 * 1024 * 1024)
    .describe(
      "Memory for attachments and large bodies fetched from the edge, kept so the messages of one request fetch each once (least recently used dropped first); 0 = no cache",
    ),
  BLOB_FETCH_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(60_000)
    .describe(
      "Time limit of one attachment or body fetch from the edge (at most half of the job's remaining time); a failed fetch defers the message",
    ),
  HTTP_HOST: z.string().default("127.0.0.1").describe("Address for /healthz, /readyz and /metrics"),
  HTTP_PORT: port.default(9464).describe("Port for /healthz, /readyz and /metrics (0 = pick one)"),
  DRAIN_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(30_000)
    .describe("On SIGTERM, how long to let jobs in flight finish"),
  DEV_INBOX: bool
    .default(false)
    .describe("Development: deliver every message into the built-in inbox instead of MX"),
  DEV_INBOX_SMTP_PORT: port.default(2525).describe("Dev inbox SMTP port"),
  DEV_INBOX_HTTP_PORT: port.default(8025).describe("Dev inbox web page port"),
  DEV_INBOX_MAX_MESSAGES: z.coerce
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(500)
    .describe("Dev inbox retention: messages kept in memory; the oldest is dropped beyond it"),
  DEV_DKIM_RECORDS: z
    .string()
    .optional()
    .describe(
      'Development: JSON {"sel._domainkey.domain": "v=DKIM1; …"} the dev inbox verifies DKIM against',
    ),
  // Inbound bounces and complaints (docs/bounces.md): off unless INBOUND_SMTP_PORT is set.
  INBOUND_SMTP_PORT: port
    .optional()
    .describe("Port of the inbound SMTP server for bounces and FBL reports (25 in production); unset = off"),
  INBOUND_SMTP_HOST: z.string().default("0.0.0.0").describe("Address the inbound SMTP server listens on"),
  INBOUND_DOMAINS: list
    .optional()
    .describe(
      "Comma-separated bounce domains the inbound server takes mail for; defaults to RETURN_PATH_DOMAIN",
    ),
  INBOUND_FBL_ADDRESSES: list
    .optional()
    .describe("Comma-separated feedback loop (ARF) addresses the inbound server takes mail for"),
  INBOUND_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(10 * 1024 * 1024)
    .describe("Largest inbound message (552 5.3.4 above it)"),
  INBOUND_MAX_CONNECTIONS_PER_IP: z.coerce
    .number()
    .int()
    .min(1)
    .default(10)
    .describe("Inbound SMTP connections one client IP may hold at once (421 above it)"),
  INBOUND_CONNECTIONS_PER_MINUTE: z.coerce
    .number()
    .int()
    .min(1)
    .default(60)
    .describe("New inbound SMTP connections per client IP per minute (421 above it)"),
  INBOUND_MAX_MESSAGES_PER_CONNECTION: z.coerce
    .number()
    .int()
    .min(1)
    .default(100)
    .describe("Messages per inbound SMTP connection"),
  INBOUND_MAX_PENDING_EVENTS: z.coerce
    .number()
    .int()
    .min(1)
    .default(10_000)
    .describe(
      "Inbound events waiting for the edge's acknowledgement at which new reports get 452 (retried by the sender)",
    ),
  INBOUND_ACK_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(15_000)
    .describe(
      "How long DATA waits for the edge to record a report before answering 451 (the sender retries)",
    ),
  INBOUND_IDLE_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(300_000)
    .describe(
      "How long the inbound server waits for a silent client before 421 and close (RFC 5321 §4.5.3.2.7: at least 5 minutes)",
    ),
  INBOUND_TLS_KEY_FILE: z.string().optional().describe("PEM key file: offer STARTTLS on the inbound server"),
  INBOUND_TLS_CERT_FILE: z.string().optional().describe("PEM certificate file for INBOUND_TLS_KEY_FILE"),
  // SMTP submission with API keys, as SendGrid's relay (docs/smtp-submission.md): off unless a port is set.
  SUBMISSION_PORT: port
    .optional()
    .describe(
      "STARTTLS submission port (587); without SUBMISSION_TLS_* it serves loopback clients only, in plaintext; unset = off",
    ),
  SUBMISSION_TLS_PORT: port
    .optional()
    .describe("Implicit-TLS submission port (465); needs SUBMISSION_TLS_KEY_FILE/CERT_FILE; unset = off"),
  SUBMISSION_HOST: z.string().default("0.0.0.0").describe("Address the submission listeners bind"),
  SUBMISSION_TLS_KEY_FILE: z.string().optional().describe("PEM key file for the submission listeners"),
  SUBMISSION_TLS_CERT_FILE: z
    .string()
    .optional()
    .describe("PEM certificate file for SUBMISSION_TLS_KEY_FILE"),
  SUBMISSION_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(20 * 1024 * 1024)
    .describe("Largest submitted message, advertised as SIZE (552 5.3.4 above it; mail/send's 20 MiB)"),
  SUBMISSION_MAX_RECIPIENTS: z.coerce
    .number()
    .int()
    .min(1)
    .max(1_000)
    .default(1_000)
    .describe("Recipients per submitted message (452 4.5.3 above it; mail/send's limit is 1,000)"),
  SUBMISSION_MAX_CONNECTIONS_PER_KEY: z.coerce
    .number()
    .int()
    .min(1)
    .default(20)
    .describe("Authenticated submission connections one API key may hold at once (421 above it)"),
  SUBMISSION_AUTH_FAILURES: z.coerce
    .number()
    .int()
    .min(1)
    .default(5)
    .describe(
      "Failed AUTHs from one client address before it is refused (421) for SUBMISSION_AUTH_COOLDOWN_MS",
    ),
  SUBMISSION_AUTH_COOLDOWN_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(300_000)
    .describe("How long a client address stays refused after too many failed AUTHs (from its last failure)"),
  SUBMISSION_AUTH_TARPIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(1_000)
    .describe("Delay before a failed AUTH's 535, times the address's failures so far (at most 10 s)"),
  SUBMISSION_KEY_CACHE_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(10_000)
    .describe("How long an API key that passed AUTH is taken as valid without asking the edge again"),
  SUBMISSION_EDGE_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(60_000)
    .describe(
      "How long a submission waits for the edge's mail/send before answering 451 (the client retries)",
    ),
  SUBMISSION_IDLE_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .default(300_000)
    .describe("How long a silent submission client is waited for before 421 and close"),
  // SMS, push and web push providers (origin/src/channels/config.ts, docs/channels.md#configuration).
  ...channelConfigShape,
});

export type OriginConfig = Omit<z.infer<typeof OriginConfigSchema>, "JOURNAL_DIR"> & { JOURNAL_DIR: string };

/** JOURNAL_DIR's default: the system's state directory in production, the repository's .dev/ otherwise. */
export function defaultJournalDir(env: NodeJS.ProcessEnv): string {
  return env.NODE_ENV === "production"
    ? "/var/lib/scaisend/journal"
    : path.resolve(process.cwd(), ".dev", "journal");
}

export function loadOriginConfig(env: NodeJS.ProcessEnv = process.env): OriginConfig {
  const parsed = OriginConfigSchema.safeParse(env);
  // Settings that name each other (the default pool, the addresses of EHLO names) are checked together.
  const crossChecked = (data: z.infer<typeof OriginConfigSchema>): string[] => {
    try {
      loadIpPoolConfig(data);
      return [];
    } catch (err) {
      return [`  ${err instanceof Error ? err.message : String(err)}`];
    }
  };
  if (parsed.success) {
    const problems = crossChecked(parsed.data);
    if (problems.length === 0)
      return { ...parsed.data, JOURNAL_DIR: parsed.data.JOURNAL_DIR ?? defaultJournalDir(env) };
    throw new Error(`invalid origin configuration:\n${problems.join("\n")}`);
  }
  const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
  throw new Error(`invalid origin configuration:\n${lines.join("\n")}`);
}

export function describeConfig(): string {
  return Object.entries(OriginConfigSchema.shape)
    .map(([key, schema]) => `  ${key.padEnd(26)} ${schema.description ?? ""}`)
    .join("\n");
}
