/**
 * CSI-style paging: `max_entries` (0 = the array chooses) and an opaque
 * `starting_token`. A token names the last key returned, so paging is stable
 * while items are added or removed (no consistent snapshot across pages, as in
 * CSI). A token this array did not issue is ABORTED, as CSI specifies.
 */
import { InvalidArgumentError, SanboxError, quote } from "../../../src/errors.js";

export const DEFAULT_PAGE = 500;
const PREFIX = "p1.";

export function encodeToken(lastKey: string): string {
  return PREFIX + Buffer.from(lastKey, "utf8").toString("base64url");
}

function decodeToken(token: string): string {
  if (!token.startsWith(PREFIX)) throw new SanboxError("ABORTED", `invalid starting_token ${quote(token)}`);
  const body = token.slice(PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw new SanboxError("ABORTED", `invalid starting_token ${quote(token)}`);
  return Buffer.from(body, "base64url").toString("utf8");
}

/** One page of `items` (any order); keys must be unique. */
export function page<T>(items: readonly T[], key: (t: T) => string, maxEntries: number, token: string): { items: T[]; nextToken: string } {
  if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new InvalidArgumentError(`max_entries must be >= 0, got ${maxEntries}`);
  const limit = maxEntries === 0 ? DEFAULT_PAGE : maxEntries;
  const sorted = [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  let start = 0;
  if (token !== "") {
    const after = decodeToken(token);
    start = sorted.findIndex((t) => key(t) > after);
    if (start < 0) start = sorted.length;
  }
  const out = sorted.slice(start, start + limit);
  const last = out[out.length - 1];
  const more = start + limit < sorted.length;
  return { items: out, nextToken: more && last !== undefined ? encodeToken(key(last)) : "" };
}
