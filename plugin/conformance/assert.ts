/**
 * How a conformance check says "the array broke a rule".
 *
 * A check states its rule once (registry.ts); inside, `must(cond, detail)` and
 * `expectCode(call, code, what)` throw a RuleViolation carrying only the
 * evidence. The runner turns it into a failed result that names the check and
 * its rule. Any other error escaping a check is reported as an unexpected
 * error (the array failed a call that should have worked).
 *
 * RuleViolation never leaves the suite: the runner catches every one, so it is
 * not part of the src/errors.ts catalogue (which holds errors that cross module
 * boundaries).
 */
import { SanboxError, errorMessage, type ErrorCode } from "../../src/errors.js";

export class RuleViolation extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = "RuleViolation";
  }
}

/** Raised by `t.skip()`: the check does not apply (capability or feature not offered). */
export class SkipCheck extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "SkipCheck";
  }
}

export function must(cond: boolean, detail: string): asserts cond {
  if (!cond) throw new RuleViolation(detail);
}

export function violation(detail: string): never {
  throw new RuleViolation(detail);
}

/** Codes that stand for the same gRPC status (a reason-less array maps from its code). */
const SAME_STATUS: Readonly<Partial<Record<ErrorCode, readonly ErrorCode[]>>> = {
  FAILED_PRECONDITION: ["FAILED_PRECONDITION", "CBT_UNAVAILABLE", "READ_ONLY"],
  RESOURCE_EXHAUSTED: ["RESOURCE_EXHAUSTED", "NO_SPACE"],
};

/**
 * Awaits `call`, which must fail with one of `codes` (reason strings of the
 * contract; FAILED_PRECONDITION also accepts its finer reasons).
 */
export async function expectCode(call: () => Promise<unknown>, codes: ErrorCode | readonly ErrorCode[], what: string): Promise<SanboxError> {
  const want = typeof codes === "string" ? [codes] : codes;
  const accepted = new Set(want.flatMap((c) => SAME_STATUS[c] ?? [c]));
  let result: unknown;
  try {
    result = await call();
  } catch (e: unknown) {
    if (e instanceof SanboxError && accepted.has(e.code)) return e;
    const got = e instanceof SanboxError ? e.code : "a non-gRPC error";
    throw new RuleViolation(`${what}: expected ${want.join(" or ")}, got ${got} (${errorMessage(e)})`);
  }
  throw new RuleViolation(`${what}: expected ${want.join(" or ")}, but the call succeeded (${JSON.stringify(result)?.slice(0, 200) ?? "no value"})`);
}

/** Drains an async iterable (a gRPC stream) into a list. */
export async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** First differing byte of two buffers, or -1 when equal. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
