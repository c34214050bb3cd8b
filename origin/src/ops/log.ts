/** Structured JSON logs, one object per line on stdout (stderr for warnings and errors). */
type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, extra?: Record<string, unknown>): void;
  info(msg: string, extra?: Record<string, unknown>): void;
  warn(msg: string, extra?: Record<string, unknown>): void;
  error(msg: string, extra?: Record<string, unknown>): void;
}

export function createLogger(
  minLevel: Level = (process.env.LOG_LEVEL as Level) ?? "info",
  base: Record<string, unknown> = {},
): Logger {
  const min = ORDER[minLevel] ?? ORDER.info;
  const write = (level: Level) => (msg: string, extra?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...extra });
    (level === "warn" || level === "error" ? process.stderr : process.stdout).write(line + "\n");
  };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}
