/**
 * How the hypervisor retries a lost path to the array: bounded exponential
 * backoff, a pure schedule so it can be tested without sockets.
 *
 *   attempt 1 at once, then waits of initialMs, 2·initialMs, 4·initialMs, … capped at maxMs,
 *   until `limit` attempts have failed: the path is then FAILED.
 *
 * With the defaults (8 attempts, 100 ms doubling to at most 2 s) a path gives up
 * about 7 s after the outage (7.1 s of waits plus the attempts): long enough to ride out a restart of the array
 * daemon, short enough that a VM on a dead array shows FAILED rather than hanging.
 * No jitter: one hypervisor per array here, so there is no herd to spread.
 */
import { InvalidArgumentError } from "../../src/errors.js";

export interface ReconnectPolicy {
  /** Connection attempts before the path is FAILED (>= 1). */
  limit: number;
  /** The wait after the first failed attempt. */
  initialMs: number;
  /** No wait is longer than this. */
  maxMs: number;
}

export const DEFAULT_RECONNECT_LIMIT = 8;
export const DEFAULT_RECONNECT_POLICY: Readonly<ReconnectPolicy> = { limit: DEFAULT_RECONNECT_LIMIT, initialMs: 100, maxMs: 2_000 };

export function checkPolicy(p: ReconnectPolicy): ReconnectPolicy {
  if (!Number.isSafeInteger(p.limit) || p.limit < 1) throw new InvalidArgumentError(`reconnect limit ${p.limit} must be a positive integer`);
  if (!Number.isSafeInteger(p.initialMs) || p.initialMs < 0) throw new InvalidArgumentError(`reconnect initial delay ${p.initialMs} ms must be a non-negative integer`);
  if (!Number.isSafeInteger(p.maxMs) || p.maxMs < p.initialMs) throw new InvalidArgumentError(`reconnect maximum delay ${p.maxMs} ms must be an integer >= the initial delay`);
  return p;
}

/** The wait before attempt `n` (1-based): 0 for the first, then doubling from initialMs, capped at maxMs. */
export function backoffDelay(n: number, p: ReconnectPolicy): number {
  if (n <= 1) return 0;
  // 2^(n-2) overflows nothing: the exponent is capped once the cap is reached.
  const exp = Math.min(n - 2, 30);
  return Math.min(p.maxMs, p.initialMs * 2 ** exp);
}

/** Every wait of a full cycle, attempt 1 … limit. */
export function backoffSchedule(p: ReconnectPolicy): number[] {
  return Array.from({ length: p.limit }, (_, i) => backoffDelay(i + 1, p));
}
