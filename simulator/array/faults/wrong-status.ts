/**
 * TEST-ONLY fault `wrong-status`: GetLun and GetSnapshot of an unknown id answer
 * INTERNAL (reason IO_ERROR) instead of NOT_FOUND, breaking docs/contract.md
 * "Errors" (an unknown LUN or snapshot in a Get is NOT_FOUND). A caller that
 * branches on NOT_FOUND ("already gone, carry on") sees an array failure.
 *
 * Only the status of those two calls changes: the message is the real one,
 * prefixed, and every other error and every answer passes through.
 */
import { IoError, SanboxError } from "../../../src/errors.js";
import { overlay, type ServiceFilter } from "./filter.js";

async function notFoundAsInternal<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e: unknown) {
    if (e instanceof SanboxError && e.code === "NOT_FOUND") throw new IoError(`failpoint wrong-status: ${e.message}`);
    throw e;
  }
}

export const wrongStatus: ServiceFilter = (next) =>
  overlay(next, {
    getLun: (req, ctx) => notFoundAsInternal(next.getLun(req, ctx)),
    getSnapshot: (req, ctx) => notFoundAsInternal(next.getSnapshot(req, ctx)),
  });
