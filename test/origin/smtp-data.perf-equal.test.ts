/**
 * The DATA bytes the transport writes (origin/src/smtp/smtp-data.ts, one pass, one socket write)
 * against nodemailer's DataStream, the reference it replaces on the event loop: over a corpus of
 * built and DKIM-signed messages and of hand-made and random edge cases (dots at line starts, bare
 * LF, bare CR, CR before a dot, no final line break, empty), `smtpData(raw)` must equal what the
 * library's stream writes for `raw`, byte for byte. Then on the wire: the real transport sends
 * messages to a loopback server that records the raw bytes after the 354, which must be the same
 * reference bytes, and a message larger than the socket buffers still arrives whole.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import DataStream from "nodemailer/lib/smtp-connection/data-stream.js";
import { buildMime, type ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { signDkim } from "../../origin/src/compose/dkim.ts";
import { smtpData } from "../../origin/src/smtp/smtp-data.ts";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { rsaKeyPem } from "../bench/lib/mail.ts";

/** What nodemailer's DataStream writes for `raw` handed to it in one chunk, as SMTPConnection.send does. */
function reference(raw: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = new DataStream();
    const out: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => out.push(chunk));
    stream.on("end", () => resolve(Buffer.concat(out)));
    stream.on("error", reject);
    stream.write(raw);
    stream.end();
  });
}

function job(message: Partial<ComposableJob["message"]>): ComposableJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "tnt_1",
    attempt: 1,
    recipients: ["rcpt@inbox.test"],
    message: {
      from: { email: "news@sender.test", name: "Sender" },
      to: [{ email: "rcpt@inbox.test" }],
      subject: "Hello",
      headers: {},
      messageIdHeader: "m1@sender.test",
      ...message,
    },
    dkim: null,
  };
}

const key = rsaKeyPem();
const dkim = { domain: "sender.test", selector: "s1", privateKeyPem: key };

async function builtCorpus(): Promise<Array<[string, Buffer]>> {
  const jobs: Array<[string, ComposableJob]> = [
    ["html", job({ html: "<p>one</p>\n.<p>dot at a line start</p>\n..\n.\n" })],
    ["text with dots", job({ text: ".\n..\nline\n. \n.end" })],
    ["text and html", job({ text: "plain\r\n.\r\n", html: "<p>html</p>" })],
    ["8-bit", job({ subject: "Grüße ✓", text: "Grüße aus Köln\n.Ä\n" })],
    ["long", job({ html: `${"<p>a paragraph = with words</p>\n.".repeat(3000)}` })],
    ["empty text", job({ text: "" })],
  ];
  const out: Array<[string, Buffer]> = [];
  for (const [name, j] of jobs) {
    const mime = await buildMime(j, { date: new Date("2026-03-04T05:06:07Z") });
    out.push([`${name}, unsigned`, mime]);
    out.push([`${name}, signed`, await signDkim(mime, dkim, { signTime: new Date("2026-03-04T05:06:07Z") })]);
  }
  return out;
}

const handMade: Array<[string, string]> = [
  ["empty", ""],
  ["one dot", "."],
  ["two dots", ".."],
  ["dot line LF", ".\n"],
  ["dot line CRLF", ".\r\n"],
  ["dot after LF", "a\n.b\n"],
  ["dot after CRLF", "a\r\n.b\r\n"],
  ["terminator inside", "a\r\n.\r\nb"],
  ["bare LF only", "\n\n\n"],
  ["no final line break", "a\r\nb"],
  ["final LF", "a\r\nb\n"],
  ["lone CR", "a\rb"],
  ["final CR", "a\r"],
  ["CR dot CR (smuggling)", "a\r.\rb\r\n"],
  ["CR LF mix", "a\r\r\n\n\r.\n.\r"],
  ["CRLF then bare CR at start", "\r\n\r."],
  ["LF then dot at end", "x\n."],
];

/** Deterministic random strings over the bytes that matter (a, ., space, CR, LF). */
function randomCorpus(count: number): Buffer[] {
  let seed = 12345;
  const next = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const alphabet = [0x61, 0x2e, 0x20, 0x0d, 0x0a];
  return Array.from({ length: count }, () =>
    Buffer.from(Array.from({ length: next() % 40 }, () => alphabet[next() % alphabet.length]!)),
  );
}

describe("smtpData equals nodemailer's DataStream", () => {
  it("on built and signed messages", async () => {
    for (const [name, raw] of await builtCorpus()) {
      expect(smtpData(raw).equals(await reference(raw)), name).toBe(true);
    }
  });

  it("on hand-made edge cases", async () => {
    for (const [name, text] of handMade) {
      const raw = Buffer.from(text, "latin1");
      const ours = smtpData(raw);
      const theirs = await reference(raw);
      expect(ours.toString("latin1"), name).toBe(theirs.toString("latin1"));
    }
  });

  it("on 3,000 random strings of a, dot, space, CR and LF", async () => {
    let differing = 0;
    for (const raw of randomCorpus(3000)) {
      if (!smtpData(raw).equals(await reference(raw))) differing++;
    }
    expect(differing).toBe(0);
  });

  it("ends every message with CRLF . CRLF and stuffs every dot at a line start", () => {
    const data = smtpData(Buffer.from("a\n.b\n..c"));
    expect(data.toString("latin1")).toBe("a\r\n..b\r\n...c\r\n.\r\n");
  });
});

/** A loopback SMTP server that records the raw bytes each DATA phase received, terminator included. */
async function startWireServer(): Promise<{ port: number; bodies: Buffer[]; close(): Promise<void> }> {
  const bodies: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    let buffer = Buffer.alloc(0);
    let inData = false;
    socket.write("220 wire.test ESMTP\r\n");
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          const end = buffer.indexOf("\r\n.\r\n");
          const atStart = buffer.subarray(0, 3).toString("latin1") === ".\r\n";
          if (end === -1 && !atStart) return;
          const length = atStart ? 3 : end + 5;
          bodies.push(Buffer.from(buffer.subarray(0, length)));
          buffer = buffer.subarray(length);
          inData = false;
          socket.write("250 2.0.0 queued\r\n");
          continue;
        }
        const eol = buffer.indexOf("\r\n");
        if (eol === -1) return;
        const line = buffer.subarray(0, eol).toString("latin1");
        buffer = buffer.subarray(eol + 2);
        const verb = line.split(/[ :]/)[0]!.toUpperCase();
        if (verb === "EHLO") socket.write("250-wire.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        else if (verb === "DATA") {
          socket.write("354 go ahead\r\n");
          inData = true;
        } else if (verb === "QUIT") socket.end("221 bye\r\n");
        else socket.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    bodies,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let transport: SmtpTransport | undefined;
let wire: Awaited<ReturnType<typeof startWireServer>> | undefined;
afterEach(async () => {
  await transport?.close();
  await wire?.close();
  transport = undefined;
  wire = undefined;
});

describe("the transport's DATA on the wire", () => {
  it("is the library's DataStream output for each message, over one reused session", async () => {
    wire = await startWireServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
    });
    const corpus = [
      ...(await builtCorpus()).map(([, raw]) => raw),
      Buffer.from("Subject: dots\n\n.\n..\r\n.x\r\nend"),
      Buffer.from("Subject: lone CR\r\n\r\na\rb\r.c\r"),
    ];
    for (const raw of corpus) {
      const outcomes = await transport.deliver({
        hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
        port: wire.port,
        envelopeFrom: "bounces@sender.test",
        recipients: ["rcpt@inbox.test"],
        raw,
      });
      expect(outcomes[0]?.status).toBe("delivered");
    }
    expect(wire.bodies).toHaveLength(corpus.length);
    for (const [i, raw] of corpus.entries()) {
      expect(wire.bodies[i]!.equals(await reference(raw)), `message ${i}`).toBe(true);
    }
  });

  it("carries a message far larger than the socket buffers whole", async () => {
    wire = await startWireServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
    });
    const raw = Buffer.from(`Subject: big\r\n\r\n${"0123456789 .abcdefghij\r\n.".repeat(200_000)}`);
    const outcomes = await transport.deliver({
      hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
      port: wire.port,
      envelopeFrom: "bounces@sender.test",
      recipients: ["rcpt@inbox.test"],
      raw,
    });
    expect(outcomes[0]?.status).toBe("delivered");
    expect(wire.bodies[0]!.equals(await reference(raw))).toBe(true);
  });
});
