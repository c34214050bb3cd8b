/**
 * An SMTP refusal: smtp-server answers an Error with `responseCode` with that code and the message
 * (docs/smtp-submission.md#replies). The enhanced status code (RFC 3463) leads the text, as in the
 * inbound server, because smtp-server adds none of its own here.
 */
export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    // One line, at most ~450 characters: RFC 5321 §4.5.3.1.5 caps a reply line at 512 octets.
    const line = message.replace(/[\r\n\t]+/g, " ").trim();
    super(line.length > 450 ? `${line.slice(0, 447)}...` : line);
  }
}

export const isSmtpReply = (err: unknown): err is SmtpReply => err instanceof SmtpReply;
