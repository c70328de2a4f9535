/**
 * NBD wire constants, named exactly as in the spec (NetworkBlockDevice/nbd doc/proto.md)
 * and nbdkit's nbd-protocol.h, so one grep runs across spec, server and client.
 * Both our server and our client import this one file.
 */

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_OLD_VERSION = 0x00420281861253n;

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const NBD_DEFAULT_PORT = 10809;

// Handshake flags (server → client, 16 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
// Client flags (client → server, 32 bits).
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (16 bits).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_PEEK_EXPORT = 4;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

// Option replies.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
// `>>> 0`: JS bitwise ops yield signed int32; the wire (readUInt32BE) is unsigned.
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0;
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0;
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0;
export const NBD_REP_ERR_PLATFORM = (NBD_REP_FLAG_ERROR | 4) >>> 0;
export const NBD_REP_ERR_TLS_REQD = (NBD_REP_FLAG_ERROR | 5) >>> 0;
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0;
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = (NBD_REP_FLAG_ERROR | 8) >>> 0;
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0;

// NBD_REP_INFO item types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

// Command flags (16 bits).
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;
export const NBD_REPLY_TYPE_IS_ERR = (t: number): boolean => (t & (1 << 15)) !== 0;

// Error values on the wire (Linux errno numbers, as the spec mandates).
export const NBD_SUCCESS = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// base:allocation flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
// qemu:dirty-bitmap:NAME flag.
export const NBD_STATE_DIRTY = 1 << 0;

export const NBD_META_BASE_ALLOCATION = "base:allocation";
export const NBD_META_QEMU_DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:";

// Sizes.
export const NBD_HEADER_REQUEST = 28;
export const NBD_HEADER_SIMPLE_REPLY = 16;
export const NBD_HEADER_STRUCTURED_REPLY = 20;
/** Largest payload we accept or send in one request (the spec's 32 MiB floor). */
export const NBD_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Largest option payload the server accepts during negotiation. */
export const NBD_MAX_OPTION_LENGTH = 64 * 1024;
export const NBD_MAX_STRING = 4096;
/** The spec says a server SHOULD NOT send more than 2^20 extents in one chunk. */
export const NBD_MAX_EXTENTS = 1 << 20;

export const CMD_NAMES: Readonly<Record<number, string>> = {
  [NBD_CMD_READ]: "READ",
  [NBD_CMD_WRITE]: "WRITE",
  [NBD_CMD_DISC]: "DISC",
  [NBD_CMD_FLUSH]: "FLUSH",
  [NBD_CMD_TRIM]: "TRIM",
  [NBD_CMD_CACHE]: "CACHE",
  [NBD_CMD_WRITE_ZEROES]: "WRITE_ZEROES",
  [NBD_CMD_BLOCK_STATUS]: "BLOCK_STATUS",
};

export const OPT_NAMES: Readonly<Record<number, string>> = {
  [NBD_OPT_EXPORT_NAME]: "EXPORT_NAME",
  [NBD_OPT_ABORT]: "ABORT",
  [NBD_OPT_LIST]: "LIST",
  [NBD_OPT_PEEK_EXPORT]: "PEEK_EXPORT",
  [NBD_OPT_STARTTLS]: "STARTTLS",
  [NBD_OPT_INFO]: "INFO",
  [NBD_OPT_GO]: "GO",
  [NBD_OPT_STRUCTURED_REPLY]: "STRUCTURED_REPLY",
  [NBD_OPT_LIST_META_CONTEXT]: "LIST_META_CONTEXT",
  [NBD_OPT_SET_META_CONTEXT]: "SET_META_CONTEXT",
  [NBD_OPT_EXTENDED_HEADERS]: "EXTENDED_HEADERS",
};
