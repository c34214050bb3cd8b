/**
 * An origin node, assembled: links to every hub shard, the job runner, the delivery engine, the ops
 * HTTP server (/healthz, /readyz, /metrics) and, in development, the dev inbox that stands in for
 * the internet. `startOriginNode` is what main.ts and the end-to-end tests run.
 *
 * Each call is one origin process as the edge sees it: a fresh boot id goes in every hello, so the hub
 * re-dispatches at once whatever a previous process with the same NODE_ID held (docs/link-protocol.md).
 * NODE_ID must therefore be unique per running process and stable across its restarts (the default,
 * the host name, is both for one process per host).
 *
 * The outcome journal (JOURNAL_DIR/<NODE_ID>, origin/src/journal/outcome-journal.ts) is opened before
 * any link: the results an earlier process of this node wrote and never saw acknowledged go out on
 * each shard's link before its hello, and the runner answers a re-dispatched job from it.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { OriginConfig } from "./config.ts";
import { claimOwner, newBootId } from "./coord/coordinator.ts";
import { createCoordinator, type Coordinator } from "./coord/index.ts";
import { createDeliveryEngine } from "./delivery/engine.ts";
import { publicBaseUrl, type TrackingContext } from "./compose/tracking.ts";
import { createDeliveryLimits, createThrottle, createThrottlePolicy } from "./delivery/throttle.ts";
import { createWarmup, parseWarmupSchedule, parseWarmupStart } from "./delivery/warmup.ts";
import { startDevInbox, type DevInbox } from "./dev-inbox/index.ts";
import { InboundForwarder } from "./inbound/forwarder.ts";
import { startInboundServer, type InboundServer } from "./inbound/server.ts";
import { startSubmissionFromConfig, type SubmissionServer } from "./submission/index.ts";
import { OutcomeJournal } from "./journal/outcome-journal.ts";
import { EdgeLink } from "./link/edge-link.ts";
import { createLogger, type Logger } from "./ops/log.ts";
import { assertBindable, createSourceAddresses, loadIpPoolConfig } from "./smtp/source-address.ts";
import { createMetrics } from "./ops/metrics.ts";
import { JobRunner } from "./worker/job-runner.ts";
import { createBlobFetcher } from "./blobs/blob-fetcher.ts";
import { withBlobs } from "./blobs/resolve-job.ts";
import { createChannelRunner } from "./channels/index.ts";
import { isChannelJob } from "../../shared/link/channel-job.ts";
import type { LinkJob } from "../../shared/link/protocol.ts";

export const ORIGIN_VERSION = "0.1.0";

export interface OriginNode {
  httpPort: number;
  inbox: DevInbox | null;
  links: EdgeLink[];
  runner: JobRunner<LinkJob>;
  /** Per-host limits and job de-duplication: Redis when REDIS_URL is set, else in memory. */
  coordinator: Coordinator;
  /** Results written before they are sent, reported again after a crash (JOURNAL_DIR). */
  journal: OutcomeJournal;
  /** The inbound SMTP server for bounces and FBL reports (docs/bounces.md), when INBOUND_SMTP_PORT is set. */
  inbound: InboundServer | null;
  /** SMTP submission with API keys (docs/smtp-submission.md), when SUBMISSION_PORT or SUBMISSION_TLS_PORT is set. */
  submission: SubmissionServer | null;
  /** Stops taking work, lets jobs in flight finish and report (up to DRAIN_TIMEOUT_MS), then closes. */
  drain(): Promise<void>;
}

export async function startOriginNode(
  config: OriginConfig,
  log: Logger = createLogger(),
): Promise<OriginNode> {
  const metrics = createMetrics();
  // IP pools: an address this host cannot bind stops the node here, before it takes any work.
  const ipPools = loadIpPoolConfig(config);
  await assertBindable(ipPools);
  const sourceAddresses = ipPools.pools.size > 0 ? createSourceAddresses(ipPools) : undefined;
  // First, so a second live process under this NODE_ID fails here (the journal's lock) before it links.
  const journal = OutcomeJournal.open({
    dir: config.JOURNAL_DIR,
    nodeId: config.NODE_ID,
    fsyncIntervalMs: config.JOURNAL_FSYNC_MS,
    retainMs: config.JOB_RESULT_TTL_S * 1000,
    log: (level, msg, extra) => log[level](msg, extra),
  });
  if (journal.recovery.inherited > 0) {
    log.info("outcome journal: reporting results of an earlier process before taking work", {
      results: journal.recovery.inherited,
      shards: journal.inheritedShards(),
      dir: journal.nodeDir,
    });
  }
  let inbox: DevInbox | null = null;
  let smarthost = config.SMARTHOST;
  if (config.DEV_INBOX) {
    const records = config.DEV_DKIM_RECORDS
      ? (JSON.parse(config.DEV_DKIM_RECORDS) as Record<string, string>)
      : {};
    inbox = await startDevInbox({
      smtpPort: config.DEV_INBOX_SMTP_PORT,
      httpPort: config.DEV_INBOX_HTTP_PORT,
      maxMessages: config.DEV_INBOX_MAX_MESSAGES,
      // The dev inbox checks DKIM against the records the edge asked us to publish, not real DNS.
      dkimResolver: async (name) => {
        const value = records[name.toLowerCase()];
        if (value === undefined)
          throw Object.assign(new Error(`no record for ${name}`), { code: "ENOTFOUND" });
        return [[value]];
      },
      log: (msg, extra) => log.info(`dev inbox: ${msg}`, extra),
    });
    smarthost = { host: "127.0.0.1", port: inbox.smtpPort };
  }

  // Several nodes share per-host slots and job claims through Redis; a single node keeps them in memory.
  // One per process: the edge tells a restart (same NODE_ID, new boot id) from a reconnect by it.
  const bootId = newBootId();
  const coordinator = createCoordinator(
    config,
    (level, msg, extra) => log[level](`coordinator: ${msg}`, extra),
    claimOwner(config.NODE_ID, bootId),
  );
  // Per-destination rate, connections and back-off, and warm-up, shared through the coordinator.
  const warmup = createWarmup({
    coordinator,
    schedule: parseWarmupSchedule(config.WARMUP_SCHEDULE),
    starts: parseWarmupStart(config.WARMUP_START),
    nodeId: config.NODE_ID,
    ...(sourceAddresses ? { sourceAddresses: sourceAddresses.addresses } : {}),
    metrics,
  });
  const limits = createDeliveryLimits({
    throttle: createThrottle({
      coordinator,
      policy: createThrottlePolicy({
        ...(config.THROTTLE_RATES ? { rates: config.THROTTLE_RATES } : {}),
        ...(config.THROTTLE_CONCURRENCY ? { concurrency: config.THROTTLE_CONCURRENCY } : {}),
        maxWaitMs: config.THROTTLE_MAX_WAIT_MS,
        pushbackAfter: config.THROTTLE_PUSHBACK_AFTER,
        backoff: {
          baseMs: config.THROTTLE_BACKOFF_MS,
          maxMs: config.THROTTLE_BACKOFF_MAX_MS,
          decayMs: config.THROTTLE_BACKOFF_DECAY_MS,
        },
      }),
      slotTtlMs: config.HOST_SLOT_TTL_MS,
      slotWaitMs: config.HOST_SLOT_WAIT_MS,
      metrics,
      log: (level, msg, extra) => log[level](msg, extra),
    }),
    warmup,
  });
  // From the edge's welcome (docs/link-protocol.md#tracking); links are signed once it came.
  let trackingContext: TrackingContext | undefined;
  const engine = createDeliveryEngine({
    tracking: () => trackingContext,
    heloName: config.HELO_NAME,
    smtpPort: config.SMTP_PORT,
    ...(smarthost ? { smarthost } : {}),
    ...(config.DNS_SERVERS ? { dnsServers: config.DNS_SERVERS } : {}),
    ...(config.RETURN_PATH_DOMAIN ? { returnPathDomain: config.RETURN_PATH_DOMAIN } : {}),
    verpSecret: config.VERP_SECRET,
    connectTimeoutMs: config.CONNECT_TIMEOUT_MS,
    stepTimeouts: {
      greetingMs: config.SMTP_TIMEOUT_GREETING_MS,
      heloMs: config.SMTP_TIMEOUT_HELO_MS,
      mailMs: config.SMTP_TIMEOUT_MAIL_MS,
      rcptMs: config.SMTP_TIMEOUT_RCPT_MS,
      dataInitMs: config.SMTP_TIMEOUT_DATA_INIT_MS,
      dataBlockMs: config.SMTP_TIMEOUT_DATA_BLOCK_MS,
      dataDoneMs: config.SMTP_TIMEOUT_DATA_DONE_MS,
    },
    maxConnectionsPerHost: config.MAX_CONNECTIONS_PER_HOST,
    maxMessagesPerConnection: config.MAX_MESSAGES_PER_CONNECTION,
    coordinator,
    hostSlotTtlMs: config.HOST_SLOT_TTL_MS,
    hostSlotWaitMs: config.HOST_SLOT_WAIT_MS,
    mxCacheTtlMs: config.MX_CACHE_TTL_S * 1000,
    allowPrivateMx: config.ALLOW_PRIVATE_MX,
    mtaSts: config.MTA_STS,
    ...(config.MTA_STS_CA_FILE ? { tlsCa: readFileSync(config.MTA_STS_CA_FILE, "utf8") } : {}),
    composeThreads: config.COMPOSE_THREADS,
    dkimFastPath: config.DKIM_FAST_PATH,
    limits,
    ...(sourceAddresses ? { sourceAddresses } : {}),
    onPoolMissing: (pool) => metrics.ipPoolMissing.inc({ pool }),
    log: (level, msg, extra) => log[level](msg, extra),
  });

  // SMS, push and web push jobs go to their provider adapters (channels/, docs/channels.md).
  const channels = createChannelRunner(config, (level, msg, extra) => log[level](msg, extra));
  // Attachments and large bodies travel by reference; they are fetched before the build (blobs/).
  const deliverMail = withBlobs(
    createBlobFetcher({
      edgeUrl: config.EDGE_URL,
      token: config.ORIGIN_TOKEN,
      maxCacheBytes: config.BLOB_CACHE_BYTES,
      timeoutMs: config.BLOB_FETCH_TIMEOUT_MS,
    }),
    (job, opts) => engine.deliver(job, opts),
  );
  const runner = new JobRunner<LinkJob>({
    capacity: config.CAPACITY,
    deliver: (job, opts) => (isChannelJob(job) ? channels.run(job, opts) : deliverMail(job, opts)),
    metrics,
    log: (level, msg, extra) => log[level](msg, extra),
    journal,
    coordination: {
      coordinator,
      nodeId: config.NODE_ID,
      bootId,
      claimTtlMs: config.JOB_CLAIM_TTL_MS,
      resultTtlMs: config.JOB_RESULT_TTL_S * 1000,
    },
  });

  const links: EdgeLink[] = [];
  // Inbound bounce/complaint events wait here until the edge acknowledges them (docs/bounces.md).
  const forwarder = new InboundForwarder({
    links: () => links,
    maxPending: config.INBOUND_MAX_PENDING_EVENTS,
    log: (level, msg, extra) => log[level](msg, extra),
  });
  const openLink = (shard: number) => {
    const link: EdgeLink = new EdgeLink({
      edgeUrl: config.EDGE_URL,
      token: config.ORIGIN_TOKEN,
      shard,
      nodeId: config.NODE_ID,
      bootId,
      version: ORIGIN_VERSION,
      pools: sourceAddresses?.names ?? [],
      // Each link asks for its share of the node's capacity, not for the whole free room.
      freeCapacity: () => runner.roomFor(link),
      onJobs: (jobs, l) => runner.accept(jobs, l),
      onChannelJobs: (jobs, l) => runner.accept(jobs, l),
      onWelcome: (w) => {
        log.info("link up", { shard: w.shard, hub: w.hubs?.[w.shard], shards: w.shards, leaseMs: w.leaseMs });
        if (w.tracking) {
          const baseUrl = publicBaseUrl(w.tracking.baseUrl ?? config.EDGE_URL);
          trackingContext = { key: w.tracking.key, baseUrl };
        }
        // Shard 0 tells us how many shards exist; one link per shard.
        for (let s = links.length; s < w.shards; s++) openLink(s);
        forwarder.linkUp();
      },
      onInboundAck: (keys) => forwarder.acknowledge(keys),
      onStateChange: (up) => metrics.linkUp.set(up ? 1 : 0, { shard: String(shard) }),
      onResultAck: (jobIds) => {
        journal.acknowledged(jobIds);
        runner.refill();
      },
      log: (level, msg, extra) => log[level](msg, extra),
      maxUnackedResults: config.LINK_MAX_UNACKED_RESULTS,
    });
    // What an earlier process of this node journaled for this shard goes out before this link's hello.
    link.preloadResults(journal.inheritedFor(shard));
    links.push(link);
    runner.register(link);
    link.start();
  };
  openLink(0);

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") return json(res, 200, { status: "healthy" });
    if (path === "/readyz") {
      const ready = links.length > 0 && links.every((l) => l.connected);
      return json(res, ready ? 200 : 503, {
        status: ready ? "ready" : "not ready",
        links: links.map((l) => l.connected),
      });
    }
    if (path === "/metrics") {
      metrics.coordinatorDegraded.set("degraded" in coordinator && coordinator.degraded ? 1 : 0);
      // Today's warm-up counts of every node on the same Redis, read (nothing counted) for this
      // scrape; a read slower than a second, or failing, leaves the last values.
      const refreshed = warmup.refreshMetrics().catch(() => {});
      const late = new Promise<void>((r) => setTimeout(r, 1_000).unref());
      void Promise.race([refreshed, late]).then(() => {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        res.end(metrics.render());
      });
      return;
    }
    json(res, 404, { detail: "Not Found" });
  });
  await new Promise<void>((resolve) => server.listen(config.HTTP_PORT, config.HTTP_HOST, resolve));
  const httpPort = (server.address() as AddressInfo).port;
  let inboundServer: InboundServer | null = null;
  if (config.INBOUND_SMTP_PORT !== undefined) {
    const domains = config.INBOUND_DOMAINS ?? (config.RETURN_PATH_DOMAIN ? [config.RETURN_PATH_DOMAIN] : []);
    if (domains.length === 0 && (config.INBOUND_FBL_ADDRESSES ?? []).length === 0) {
      throw new Error(
        "INBOUND_SMTP_PORT is set but no INBOUND_DOMAINS, RETURN_PATH_DOMAIN or INBOUND_FBL_ADDRESSES",
      );
    }
    forwarder.start();
    inboundServer = await startInboundServer({
      host: config.INBOUND_SMTP_HOST,
      port: config.INBOUND_SMTP_PORT,
      hostname: config.HELO_NAME,
      domains,
      fblAddresses: config.INBOUND_FBL_ADDRESSES ?? [],
      verp: { secret: config.VERP_SECRET },
      forwarder,
      maxMessageBytes: config.INBOUND_MAX_MESSAGE_BYTES,
      maxConnectionsPerIp: config.INBOUND_MAX_CONNECTIONS_PER_IP,
      connectionsPerMinute: config.INBOUND_CONNECTIONS_PER_MINUTE,
      maxMessagesPerConnection: config.INBOUND_MAX_MESSAGES_PER_CONNECTION,
      ackTimeoutMs: config.INBOUND_ACK_TIMEOUT_MS,
      idleTimeoutMs: config.INBOUND_IDLE_TIMEOUT_MS,
      onMessage: (kind, outcome) => metrics.inboundMessages.inc({ kind, outcome }),
      ...(config.INBOUND_TLS_KEY_FILE && config.INBOUND_TLS_CERT_FILE
        ? { tls: { keyFile: config.INBOUND_TLS_KEY_FILE, certFile: config.INBOUND_TLS_CERT_FILE } }
        : {}),
      log: (level, msg, extra) => log[level](msg, extra),
    });
  }
  const submission = await startSubmissionFromConfig(
    config,
    (level, msg, extra) => log[level](msg, extra),
    metrics,
  );
  log.info("origin node started", {
    nodeId: config.NODE_ID,
    httpPort,
    devInbox: inbox?.url ?? null,
    coordinator: coordinator.kind,
  });

  let drained: Promise<void> | null = null;
  const drain = () => {
    drained ??= (async () => {
      log.info("draining", { inFlight: runner.inFlight });
      for (const l of links) l.stopCredits();
      await inboundServer?.close();
      await submission?.close();
      const timeout = new Promise<void>((r) => setTimeout(r, config.DRAIN_TIMEOUT_MS).unref());
      await Promise.race([runner.whenIdle(), timeout]);
      await Promise.all(links.map((l) => l.waitForAcks(5_000)));
      forwarder.close();
      for (const l of links) l.close();
      await engine.close();
      channels.close();
      // After the engine: a delivery that ends while it closes is journaled for the next start.
      await journal.close();
      await coordinator.close();
      await new Promise<void>((r) => server.close(() => r()));
      await inbox?.close();
      log.info("origin node stopped");
    })();
    return drained;
  };

  return { httpPort, inbox, links, runner, coordinator, journal, inbound: inboundServer, submission, drain };
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
