/** Which OriginHub shard owns a message: FNV-1a over the id, so the mapping is stable and even. */
export function shardFor(messageId: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < messageId.length; i++) {
    h ^= messageId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

export const hubName = (shard: number) => `hub-${shard}`;
