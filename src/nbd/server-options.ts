/**
 * Option haggling for one connection (proto.md "Option types"). Pure decisions
 * over an `OptionContext`; the connection owns the socket. Every option either
 * gets its replies here, ends negotiation (GO/EXPORT_NAME), or asks the
 * connection to switch to TLS or to close.
 *
 * TLS policy (nbdkit's --tls): "off" refuses STARTTLS; "on" allows it; "require"
 * answers every option but STARTTLS/ABORT with ERR_TLS_REQD until TLS is up.
 */
import { NbdProtocolError, NotFoundError, PermissionDeniedError, SanboxError, UnauthenticatedError, errorMessage } from "../errors.js";
import type { ExportProvider, NbdBackend, SessionInfo } from "./backend.js";
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_PAYLOAD,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_PLATFORM,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPT_NAMES,
} from "./constants.js";
import {
  decodeInfoRequest,
  decodeMetaContextRequest,
  encodeExportNameReply,
  encodeInfoItem,
  encodeMetaContextReply,
  encodeOptionReply,
  encodeServerReply,
} from "./handshake-codec.js";
import { matchContexts } from "./meta-context.js";

export type TlsMode = "off" | "on" | "require";

export interface OptionContext {
  readonly provider: ExportProvider;
  readonly tlsMode: TlsMode;
  readonly tlsActive: boolean;
  readonly session: SessionInfo;
  readonly noZeroes: boolean;
  /** Negotiated so far; owned by the connection and updated here. */
  readonly state: NegotiationState;
  send(buf: Buffer): void;
}

export interface NegotiationState {
  structuredReplies: boolean;
  /** Export name the SET_META_CONTEXT selection applies to, and the selection (id = index + 1). */
  metaExport: string | undefined;
  metaSelected: string[];
}

export type OptionOutcome =
  | { next: "continue" }
  | { next: "close"; reason: string }
  | { next: "starttls" }
  | { next: "transmission"; backend: NbdBackend; exportName: string; contexts: string[] };

export function transmissionFlags(b: NbdBackend): number {
  let f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_DF;
  if (b.readOnly) f |= NBD_FLAG_READ_ONLY;
  if (b.canFlush) f |= NBD_FLAG_SEND_FLUSH;
  if (b.canFua) f |= NBD_FLAG_SEND_FUA;
  if (!b.readOnly && b.canTrim) f |= NBD_FLAG_SEND_TRIM;
  if (!b.readOnly && b.canZero) f |= NBD_FLAG_SEND_WRITE_ZEROES;
  if (!b.readOnly && b.canZero && b.canFastZero) f |= NBD_FLAG_SEND_FAST_ZERO;
  if (b.canCache) f |= NBD_FLAG_SEND_CACHE;
  if (b.canMultiConn) f |= NBD_FLAG_CAN_MULTI_CONN;
  return f;
}

function errorReplyType(e: unknown): number {
  if (e instanceof NotFoundError) return NBD_REP_ERR_UNKNOWN;
  if (e instanceof PermissionDeniedError || e instanceof UnauthenticatedError) return NBD_REP_ERR_POLICY;
  if (e instanceof SanboxError && e.code === "INVALID_ARGUMENT") return NBD_REP_ERR_INVALID;
  return NBD_REP_ERR_PLATFORM;
}

export async function handleOption(ctx: OptionContext, option: number, data: Buffer): Promise<OptionOutcome> {
  try {
    return await handleOptionUnchecked(ctx, option, data);
  } catch (e: unknown) {
    // The option was framed correctly; only its payload is malformed, so the
    // spec's answer is NBD_REP_ERR_INVALID, and negotiation goes on.
    if (!(e instanceof NbdProtocolError) || option === NBD_OPT_EXPORT_NAME) throw e;
    ctx.send(encodeOptionReply(option, NBD_REP_ERR_INVALID, Buffer.from(e.message, "utf8")));
    return { next: "continue" };
  }
}

async function handleOptionUnchecked(ctx: OptionContext, option: number, data: Buffer): Promise<OptionOutcome> {
  const reply = (type: number, payload?: Buffer): void => ctx.send(encodeOptionReply(option, type, payload));
  const fail = (type: number, message: string): OptionOutcome => {
    reply(type, Buffer.from(message, "utf8"));
    return { next: "continue" };
  };

  if (option === NBD_OPT_EXPORT_NAME && ctx.tlsMode === "require" && !ctx.tlsActive) {
    return { next: "close", reason: "NBD_OPT_EXPORT_NAME before STARTTLS with TLS required" };
  }
  if (ctx.tlsMode === "require" && !ctx.tlsActive && option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
    return fail(NBD_REP_ERR_TLS_REQD, "TLS is required: send NBD_OPT_STARTTLS first");
  }

  switch (option) {
    case NBD_OPT_ABORT:
      reply(NBD_REP_ACK);
      return { next: "close", reason: "client sent NBD_OPT_ABORT" };

    case NBD_OPT_STARTTLS:
      if (data.length !== 0) return fail(NBD_REP_ERR_INVALID, "STARTTLS takes no data");
      if (ctx.tlsMode === "off") return fail(NBD_REP_ERR_UNSUP, "TLS is not enabled on this server");
      if (ctx.tlsActive) return fail(NBD_REP_ERR_INVALID, "TLS is already active");
      reply(NBD_REP_ACK);
      return { next: "starttls" };

    case NBD_OPT_LIST: {
      if (data.length !== 0) return fail(NBD_REP_ERR_INVALID, "LIST takes no data");
      const exports = await ctx.provider.list(ctx.session);
      for (const e of exports) reply(NBD_REP_SERVER, encodeServerReply(e.name, e.description));
      reply(NBD_REP_ACK);
      return { next: "continue" };
    }

    case NBD_OPT_STRUCTURED_REPLY:
      if (data.length !== 0) return fail(NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
      ctx.state.structuredReplies = true;
      reply(NBD_REP_ACK);
      return { next: "continue" };

    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT: {
      const isSet = option === NBD_OPT_SET_META_CONTEXT;
      if (!ctx.state.structuredReplies) return fail(NBD_REP_ERR_INVALID, "negotiate NBD_OPT_STRUCTURED_REPLY first");
      const req = decodeMetaContextRequest(data);
      let available: readonly string[];
      try {
        available = await ctx.provider.metaContexts(req.exportName, ctx.session);
      } catch (e: unknown) {
        return fail(errorReplyType(e), errorMessage(e));
      }
      const matched = matchContexts(available, req.queries, !isSet);
      if (isSet) {
        ctx.state.metaExport = req.exportName;
        ctx.state.metaSelected = matched;
      }
      matched.forEach((name, i) => reply(NBD_REP_META_CONTEXT, encodeMetaContextReply(isSet ? i + 1 : 0, name)));
      reply(NBD_REP_ACK);
      return { next: "continue" };
    }

    case NBD_OPT_INFO:
    case NBD_OPT_GO: {
      const req = decodeInfoRequest(data);
      let backend: NbdBackend;
      try {
        backend = await ctx.provider.open(req.name, ctx.session);
      } catch (e: unknown) {
        return fail(errorReplyType(e), errorMessage(e));
      }
      const flags = transmissionFlags(backend);
      reply(NBD_REP_INFO, encodeInfoItem({ type: NBD_INFO_EXPORT, size: backend.size, flags }));
      if (req.infos.includes(NBD_INFO_NAME)) reply(NBD_REP_INFO, encodeInfoItem({ type: NBD_INFO_NAME, name: req.name }));
      if (req.infos.includes(NBD_INFO_DESCRIPTION) && backend.description !== undefined) {
        reply(NBD_REP_INFO, encodeInfoItem({ type: NBD_INFO_DESCRIPTION, description: backend.description }));
      }
      if (req.infos.includes(NBD_INFO_BLOCK_SIZE)) {
        const bs = backend.blockSize ?? { minimum: 1, preferred: 4096, maximum: NBD_MAX_PAYLOAD };
        reply(NBD_REP_INFO, encodeInfoItem({ type: NBD_INFO_BLOCK_SIZE, ...bs }));
      }
      reply(NBD_REP_ACK);
      if (option === NBD_OPT_INFO) {
        await backend.close?.();
        return { next: "continue" };
      }
      // Contexts selected for another export name do not carry over (proto.md SET_META_CONTEXT).
      const contexts = ctx.state.metaExport === req.name ? ctx.state.metaSelected : [];
      return { next: "transmission", backend, exportName: req.name, contexts };
    }

    case NBD_OPT_EXPORT_NAME: {
      let name: string;
      try {
        name = data.toString("utf8");
        const backend = await ctx.provider.open(name, ctx.session);
        ctx.send(encodeExportNameReply(backend.size, transmissionFlags(backend), ctx.noZeroes));
        const contexts = ctx.state.metaExport === name ? ctx.state.metaSelected : [];
        return { next: "transmission", backend, exportName: name, contexts };
      } catch (e: unknown) {
        // EXPORT_NAME has no error reply: the spec says to close the connection.
        return { next: "close", reason: `NBD_OPT_EXPORT_NAME failed: ${errorMessage(e)}` };
      }
    }

    default:
      return fail(NBD_REP_ERR_UNSUP, `option ${OPT_NAMES[option] ?? option} is not supported`);
  }
}
