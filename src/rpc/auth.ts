/**
 * Bearer-token authentication of control-plane calls: metadata
 * `authorization: Bearer <token>`. With no token configured (the local Unix
 * socket) every call is accepted. The comparison is constant-time.
 */
import { timingSafeEqual, createHash } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { UnauthenticatedError } from "../errors.js";

export const AUTHORIZATION = "authorization";

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

export class BearerAuth {
  private readonly expected: Buffer | undefined;
  constructor(token: string | undefined) {
    this.expected = token === undefined ? undefined : digest(token);
  }

  get required(): boolean {
    return this.expected !== undefined;
  }

  /** Throws UnauthenticatedError unless the call carries the right token. */
  check(metadata: Metadata): void {
    if (this.expected === undefined) return;
    const v = metadata.get(AUTHORIZATION)[0];
    const m = typeof v === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(v) : null;
    if (!m || m[1] === undefined) throw new UnauthenticatedError("missing bearer token (metadata authorization: Bearer <token>)");
    if (!timingSafeEqual(digest(m[1]), this.expected)) throw new UnauthenticatedError("invalid bearer token");
  }
}

/** Reads a token file: the first non-empty line. */
export function parseTokenFile(text: string): string | undefined {
  return text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== "");
}
