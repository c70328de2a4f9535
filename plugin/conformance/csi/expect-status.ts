/**
 * "This call must fail with gRPC code X", for any CSI driver. The comparison is
 * on the gRPC status code alone: a foreign driver sends no sanbox reason
 * string, and sanbox's finer reasons (CBT_UNAVAILABLE, …) map onto the same
 * codes (src/rpc/status.ts), so both are judged alike. A stream call counts as
 * failing when reading it fails.
 */
import { status as Status } from "@grpc/grpc-js";
import { SanboxError, errorMessage } from "../../../src/errors.js";
import { grpcCodeOf } from "../../../src/rpc/status.js";
import { RuleViolation } from "../assert.js";

export { Status };

export function statusName(code: number): string {
  return Status[code] ?? String(code);
}

export async function expectStatus(call: () => Promise<unknown>, want: Status, what: string): Promise<void> {
  try {
    await call();
  } catch (e: unknown) {
    const got = e instanceof SanboxError ? grpcCodeOf(e.code) : undefined;
    if (got === want) return;
    throw new RuleViolation(`${what}: expected ${statusName(want)}, got ${got !== undefined ? statusName(got) : "a non-gRPC error"} (${errorMessage(e)})`);
  }
  throw new RuleViolation(`${what}: expected ${statusName(want)}, but the call succeeded`);
}

/** Drains a stream, so that an error sent mid-stream or at its start fails the promise. */
export async function drainStream(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}
