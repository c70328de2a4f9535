/**
 * Logs go to stderr (stdout is for results). Level from SANBOX_LOG:
 * error | warn | info | debug (default info; tests set warn to keep output quiet).
 */
export type LogLevel = "error" | "warn" | "info" | "debug";
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

function envLevel(): LogLevel {
  const v = process.env.SANBOX_LOG;
  return v === "error" || v === "warn" || v === "info" || v === "debug" ? v : "info";
}

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  child(prefix: string): Logger;
}

export function createLogger(prefix = "sanbox", level: LogLevel = envLevel()): Logger {
  const emit = (l: LogLevel, msg: string): void => {
    if (ORDER[l] <= ORDER[level]) process.stderr.write(`${new Date().toISOString()} ${l.padEnd(5)} ${prefix}: ${msg}\n`);
  };
  return {
    error: (m) => emit("error", m),
    warn: (m) => emit("warn", m),
    info: (m) => emit("info", m),
    debug: (m) => emit("debug", m),
    child: (p) => createLogger(`${prefix}/${p}`, level),
  };
}

export const silentLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => silentLogger,
};
