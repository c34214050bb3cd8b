/**
 * A reused SMTP session sends many bodies; the data-block watcher that smtp/step-timeouts.ts puts on
 * the socket for each body must leave with that body. Left behind, watchers pile up on long sessions
 * (Node warns after ten) and every later 'drain' runs them all.
 */
import { afterEach, expect, it } from "vitest";
import { RFC5321_TIMEOUTS, StepTimedConnection } from "../../origin/src/smtp/step-timeouts.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

let server: TestSmtpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const body = (i: number, bytes: number) =>
  Buffer.concat([
    Buffer.from(
      `From: a@sender.test\r\nTo: b@inbox.test\r\nSubject: ${i}\r\nMessage-ID: <${i}@sender.test>\r\n\r\n`,
    ),
    Buffer.alloc(bytes, "y".repeat(78) + "\r\n"),
  ]);

function send(conn: StepTimedConnection, raw: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    conn.send({ from: "bounces@sender.test", to: ["b@inbox.test"] }, raw, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

it("keeps at most one drain watcher and one end listener of its own, however many bodies a session sends", async () => {
  server = await startSinkServer();
  const conn = new StepTimedConnection({
    host: "127.0.0.1",
    port: server.port,
    ignoreTLS: true,
    stepTimeouts: RFC5321_TIMEOUTS,
    logger: false,
  });
  conn.on("error", () => {});
  await new Promise<void>((resolve, reject) =>
    conn.connect((err?: Error) => (err ? reject(err) : resolve())),
  );
  const socket = (conn as unknown as { _socket: NodeJS.EventEmitter })._socket;
  const baseDrain = socket.listenerCount("drain");
  const baseEnd = conn.listenerCount("end");
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    // Small bodies (one write) and bodies larger than the socket buffer (several drains) alike.
    for (let i = 0; i < 24; i++) {
      await send(conn, body(i, i % 2 === 0 ? 200 : 300_000));
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(socket.listenerCount("drain")).toBeLessThanOrEqual(baseDrain + 1);
    expect(conn.listenerCount("end")).toBeLessThanOrEqual(baseEnd + 1);
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    expect(server.messages.length).toBe(24);
  } finally {
    process.off("warning", onWarning);
    conn.quit();
  }
});
