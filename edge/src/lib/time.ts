/** API timestamps: ISO-8601 in UTC to the second, as ScaiSend's docs show them ("2026-04-23T10:00:00Z"). */
export const isoSeconds = (ms: number | null): string | null =>
  ms === null ? null : new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
