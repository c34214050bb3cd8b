/**
 * Reads a response body whole, but never more than `max` bytes: past the cap the stream is
 * cancelled and the answer is null, so a peer that sends without end (or lies in Content-Length)
 * costs at most `max` bytes of memory. Used wherever the edge reads what a URL it fetched sends back
 * (docs/architecture.md, SSRF-guarded fetches).
 */
export async function readCapped(res: Response, max: number): Promise<Uint8Array | null> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
