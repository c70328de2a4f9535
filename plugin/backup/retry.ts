/**
 * Retrying transient failures with exponential backoff and jitter. Transient
 * means the array or the connection hiccupped (UNAVAILABLE, TIMEOUT,
 * CONNECTION_CLOSED, ABORTED); anything else (NOT_FOUND, a bad argument,
 * CORRUPT) fails at once, since trying again cannot help. Reads, being
 * idempotent, also retry an EIO the NBD server answered (isRetryableRead).
 *
 * An aborted `signal` ends the retrying: it is checked before each attempt
 * and cuts a backoff sleep short, so a stopped command never waits out a
 * backoff. Cleanup paths pass no signal: they must run to the end after a stop.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { SanboxError, type ErrorCode } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";

const TRANSIENT: ReadonlySet<ErrorCode> = new Set(["UNAVAILABLE", "TIMEOUT", "CONNECTION_CLOSED", "ABORTED"]);

export function isTransient(e: unknown): boolean {
  return e instanceof SanboxError && TRANSIENT.has(e.code);
}

/** For idempotent reads: also an I/O error the server reported (EIO), which a path failover may clear. */
export function isRetryableRead(e: unknown): boolean {
  return isTransient(e) || (e instanceof SanboxError && e.code === "NBD_COMMAND" && e.errno === "EIO");
}

export interface RetryOptions {
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  log?: Logger;
  /** Which errors to retry (default: isTransient). */
  retryIf?: (e: unknown) => boolean;
  /** Called before each retry (e.g. reconnect). */
  onRetry?: (e: unknown, attempt: number) => Promise<void> | void;
  /** Stops retrying (the attempt in flight is not cancelled; its caller decides). */
  signal?: AbortSignal;
}

export async function withRetry<T>(what: string, fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 5;
  const base = opts.baseDelayMs ?? 50;
  const max = opts.maxDelayMs ?? 2000;
  const signal = opts.signal;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn();
    } catch (e: unknown) {
      if (signal?.aborted === true) throw signal.reason;
      if (!(opts.retryIf ?? isTransient)(e) || attempt >= attempts) throw e;
      const delay = Math.min(max, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      opts.log?.warn(`${what}: ${e instanceof Error ? e.message : String(e)}; retry ${attempt}/${attempts - 1} in ${Math.round(delay)} ms`);
      await sleep(delay, undefined, signal !== undefined ? { signal } : {}).catch(() => signal?.throwIfAborted());
      signal?.throwIfAborted();
      await opts.onRetry?.(e, attempt);
    }
  }
}
