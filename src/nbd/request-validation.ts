/**
 * The one place a request is checked before any backend sees it (nbdkit's
 * validate_request). Returns the errno to reply with, or undefined if valid.
 *
 * Follows proto.md "Request types" and "Error values": out-of-range → EINVAL,
 * except write-like commands past the end → ENOSPC; write-like on a read-only
 * export → EPERM; unsupported commands or flags → EINVAL; DF that cannot be
 * honoured → EOVERFLOW (we always honour it).
 */
import type { Errno } from "../errors.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_MAX_PAYLOAD,
} from "./constants.js";
import type { BackendCapabilities } from "./backend.js";
import type { RequestHeader } from "./transmission-codec.js";

export interface ValidationContext {
  size: number;
  caps: BackendCapabilities;
  structuredReplies: boolean;
  metaContextCount: number;
  maxPayload?: number;
}

export interface Invalid {
  errno: Errno;
  reason: string;
}

const ALLOWED_FLAGS: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_DF | NBD_CMD_FLAG_FUA,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_DISC]: 0,
  [NBD_CMD_FLUSH]: 0,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: 0,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_REQ_ONE,
};

export function validateRequest(h: RequestHeader, ctx: ValidationContext, oversized = false): Invalid | undefined {
  const allowed = ALLOWED_FLAGS[h.type];
  if (allowed === undefined) return { errno: "EINVAL", reason: `unknown command ${h.type}` };
  // proto.md: once NBD_FLAG_SEND_FUA is advertised, FUA MUST be accepted on every command (even if ignored).
  const fua = ctx.caps.canFua ? NBD_CMD_FLAG_FUA : 0;
  if ((h.flags & ~(allowed | fua)) !== 0) return { errno: "EINVAL", reason: `flags 0x${h.flags.toString(16)} not valid for this command` };
  const maxPayload = ctx.maxPayload ?? NBD_MAX_PAYLOAD;
  const end = h.offset + h.length;
  const inRange = Number.isSafeInteger(end) && end <= ctx.size;
  const writeLike = h.type === NBD_CMD_WRITE || h.type === NBD_CMD_TRIM || h.type === NBD_CMD_WRITE_ZEROES;

  if (writeLike && ctx.caps.readOnly) return { errno: "EPERM", reason: "export is read-only" };
  switch (h.type) {
    case NBD_CMD_READ:
      if (h.length === 0) return { errno: "EINVAL", reason: "zero-length read" };
      if (h.length > maxPayload) return { errno: "EINVAL", reason: `read of ${h.length} bytes exceeds ${maxPayload}` };
      if (!inRange) return { errno: "EINVAL", reason: "read beyond end of export" };
      return undefined;
    case NBD_CMD_WRITE:
      if (oversized || h.length > maxPayload) return { errno: "EINVAL", reason: `write payload of ${h.length} bytes exceeds ${maxPayload}` };
      if (h.length === 0) return { errno: "EINVAL", reason: "zero-length write" };
      if (!inRange) return { errno: "ENOSPC", reason: "write beyond end of export" };
      return undefined;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
      if (h.type === NBD_CMD_TRIM && !ctx.caps.canTrim) return { errno: "EINVAL", reason: "trim not supported by this export" };
      if (h.type === NBD_CMD_WRITE_ZEROES && !ctx.caps.canZero) return { errno: "EINVAL", reason: "write zeroes not supported" };
      if ((h.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && !ctx.caps.canFastZero) return { errno: "EINVAL", reason: "fast zero not supported" };
      if (h.length === 0) return { errno: "EINVAL", reason: "zero-length request" };
      if (!inRange) return { errno: "ENOSPC", reason: "request beyond end of export" };
      return undefined;
    case NBD_CMD_FLUSH:
      if (!ctx.caps.canFlush) return { errno: "EINVAL", reason: "flush not supported" };
      return undefined;
    case NBD_CMD_CACHE:
      if (!ctx.caps.canCache) return { errno: "EINVAL", reason: "cache not supported" };
      if (!inRange) return { errno: "EINVAL", reason: "cache beyond end of export" };
      return undefined;
    case NBD_CMD_BLOCK_STATUS:
      if (!ctx.structuredReplies || ctx.metaContextCount === 0) {
        return { errno: "EINVAL", reason: "block status needs structured replies and a meta context" };
      }
      if (h.length === 0) return { errno: "EINVAL", reason: "zero-length block status" };
      if (!inRange) return { errno: "EINVAL", reason: "block status beyond end of export" };
      return undefined;
    default:
      return undefined;
  }
}
