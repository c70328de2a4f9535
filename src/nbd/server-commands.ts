/**
 * Executes one validated request against a backend and encodes its reply
 * (proto.md "Simple reply message", "Structured reply message"). Returns the
 * buffers to write, in order; the connection writes them as one corked batch so
 * a reply is never interleaved with another.
 *
 * Structured mode: READ replies with OFFSET_DATA/OFFSET_HOLE chunks (one data
 * chunk when DF is set) and errors as ERROR_OFFSET/ERROR chunks; BLOCK_STATUS
 * sends one chunk per selected context; other commands use simple replies, which
 * the spec allows for non-READ commands.
 */
import { SanboxError, errorMessage, type Errno } from "../errors.js";
import type { NbdBackend, ReadPiece, StatusExtent } from "./backend.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
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
  NBD_MAX_EXTENTS,
  NBD_REPLY_FLAG_DONE,
} from "./constants.js";
import { errnoToWire } from "./errno.js";
import type { RequestHeader } from "./transmission-codec.js";
import {
  encodeBlockStatus,
  encodeErrorChunk,
  encodeOffsetDataHead,
  encodeOffsetHole,
  encodeSimpleReply,
  type BlockDescriptor,
} from "./transmission-codec.js";

export interface CommandContext {
  backend: NbdBackend;
  structuredReplies: boolean;
  /** Selected meta contexts; wire id = index + 1. */
  contexts: readonly string[];
}

/** Buffers to write in order; `onSent` runs once they have left for the kernel. */
export type Reply = Buffer[] & { onSent?: () => void };

export function errorReply(ctx: CommandContext, h: RequestHeader, errno: Errno, message: string): Buffer[] {
  const wire = errnoToWire(errno);
  if (ctx.structuredReplies && (h.type === NBD_CMD_READ || h.type === NBD_CMD_BLOCK_STATUS)) {
    return [encodeErrorChunk(NBD_REPLY_FLAG_DONE, h.cookie, wire, message)];
  }
  return [encodeSimpleReply(wire, h.cookie)];
}

export async function executeCommand(ctx: CommandContext, h: RequestHeader, payload: Buffer | undefined): Promise<Reply> {
  const b = ctx.backend;
  const fua = (h.flags & NBD_CMD_FLAG_FUA) !== 0;
  try {
    switch (h.type) {
      case NBD_CMD_READ:
        return await readReply(ctx, h);
      case NBD_CMD_WRITE:
        await b.write(h.offset, payload ?? Buffer.alloc(0), { fua });
        break;
      case NBD_CMD_FLUSH:
        await b.flush();
        break;
      case NBD_CMD_TRIM:
        await b.trim(h.offset, h.length, { fua });
        break;
      case NBD_CMD_WRITE_ZEROES:
        await b.zero(h.offset, h.length, {
          fua,
          mayTrim: (h.flags & NBD_CMD_FLAG_NO_HOLE) === 0,
          fastZero: (h.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0,
        });
        break;
      case NBD_CMD_CACHE:
        await b.cache(h.offset, h.length);
        break;
      case NBD_CMD_BLOCK_STATUS:
        return await blockStatusReply(ctx, h);
    }
    return [encodeSimpleReply(0, h.cookie)];
  } catch (e: unknown) {
    const errno: Errno = e instanceof SanboxError ? e.errno : "EIO";
    return errorReply(ctx, h, errno, errorMessage(e));
  }
}

async function readReply(ctx: CommandContext, h: RequestHeader): Promise<Reply> {
  const b = ctx.backend;
  if (!ctx.structuredReplies) {
    const data = await b.read(h.offset, h.length);
    return [encodeSimpleReply(0, h.cookie), data];
  }
  const df = (h.flags & NBD_CMD_FLAG_DF) !== 0;
  let pieces: ReadPiece[];
  if (!df && b.readSparse) {
    pieces = await b.readSparse(h.offset, h.length);
  } else {
    pieces = [{ offset: h.offset, data: await b.read(h.offset, h.length) }];
  }
  const out: Reply = [];
  const releases: (() => void)[] = [];
  pieces.forEach((p, i) => {
    const flags = i === pieces.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
    if ("data" in p) {
      out.push(encodeOffsetDataHead(flags, h.cookie, p.offset, p.data.length), p.data);
      if (p.release) releases.push(p.release);
    } else {
      out.push(encodeOffsetHole(flags, h.cookie, p.offset, p.hole));
    }
  });
  if (releases.length > 0) out.onSent = () => releases.forEach((r) => r());
  return out;
}

/** Clip backend extents to [offset, offset+length), drop empties, cap the count. */
export function clipExtents(extents: readonly StatusExtent[], offset: number, length: number, reqOne: boolean): BlockDescriptor[] {
  const end = offset + length;
  const out: BlockDescriptor[] = [];
  let cursor = offset;
  for (const e of extents) {
    const eEnd = e.offset + e.length;
    if (eEnd <= cursor) continue; // wholly before the cursor
    if (e.offset > cursor) break; // a gap: report only what is contiguous
    const stop = Math.min(eEnd, end);
    const last = out[out.length - 1];
    if (last !== undefined && last.flag === e.flag) out[out.length - 1] = { length: last.length + stop - cursor, flag: e.flag };
    else out.push({ length: stop - cursor, flag: e.flag });
    cursor = stop;
    if (cursor >= end || reqOne || out.length >= NBD_MAX_EXTENTS) break;
  }
  return reqOne ? out.slice(0, 1) : out;
}

async function blockStatusReply(ctx: CommandContext, h: RequestHeader): Promise<Buffer[]> {
  const reqOne = (h.flags & NBD_CMD_FLAG_REQ_ONE) !== 0;
  const chunks: Buffer[] = [];
  for (let i = 0; i < ctx.contexts.length; i++) {
    const name = ctx.contexts[i];
    if (name === undefined) continue;
    const raw = await ctx.backend.blockStatus(name, h.offset, h.length);
    const extents = clipExtents(raw, h.offset, h.length, reqOne);
    if (extents.length === 0) throw new SanboxError("IO_ERROR", `backend returned no extent at ${h.offset} for ${name}`);
    const flags = i === ctx.contexts.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
    chunks.push(encodeBlockStatus(flags, h.cookie, i + 1, extents));
  }
  return chunks;
}
