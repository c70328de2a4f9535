/**
 * What an NBD server serves: a backend (nbdkit's plugin model), which is a
 * BlockDevice (src/block-device.ts) plus what NBD adds: capabilities, zero,
 * cache, block status, sparse reads and meta contexts. Capabilities are
 * declared apart from operations, so the server advertises exactly what the
 * backend can do and validates every request before the backend sees it
 * (nbdkit's validate_request). From the server, backends therefore receive
 * only in-range, permitted requests (called directly, as block devices, they
 * check for themselves) and report failures by throwing a SanboxError whose
 * `errno` becomes the NBD error.
 *
 * LUN, snapshot, memory, file and backup-repository backends all implement this.
 * Because a backend is a block device, the memory and file backends also serve
 * as the datastore's devices and the oracle's images, without an adapter.
 */
import type { BlockDevice, WriteOptions } from "../block-device.js";
import type { FlaggedExtent } from "../extents/flagged.js";

export type { WriteOptions } from "../block-device.js";

export interface BackendCapabilities {
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canZero: boolean;
  /** WRITE_ZEROES with FAST_ZERO: the backend fails fast (ENOTSUP) when zeroing would be slow. */
  readonly canFastZero: boolean;
  readonly canCache: boolean;
  /** Safe for several connections at once: a flush on one covers writes acknowledged on all. */
  readonly canMultiConn: boolean;
}

export interface BlockSizeConstraints {
  minimum: number;
  preferred: number;
  maximum: number;
}

/**
 * One extent of a block-status answer; offsets are absolute. `flag` holds the
 * context's state bits (base:allocation: NBD_STATE_HOLE | NBD_STATE_ZERO;
 * qemu:dirty-bitmap: NBD_STATE_DIRTY), the u32 NBD sends for the extent.
 */
export type StatusExtent = FlaggedExtent<number>;

/**
 * Part of a sparse read: data, or a hole that reads as zeros. `release`, if
 * given, is called once the server no longer needs `data` (it has been handed
 * to the kernel), so a backend can recycle pooled buffers.
 */
export type ReadPiece = { offset: number; data: Buffer; release?: () => void } | { offset: number; hole: number };

export interface ZeroOptions extends WriteOptions {
  /** NBD_CMD_FLAG_NO_HOLE not set: the backend may deallocate. */
  mayTrim: boolean;
  /** NBD_CMD_FLAG_FAST_ZERO set: throw an ENOTSUP error rather than zero slowly. */
  fastZero: boolean;
}

export interface NbdBackend extends BlockDevice, BackendCapabilities {
  readonly description?: string;
  readonly blockSize?: BlockSizeConstraints;
  /** Meta contexts this export can serve, e.g. "base:allocation", "qemu:dirty-bitmap:S1". */
  metaContexts(): readonly string[];

  /** Optional: a read that reports holes, so structured replies can send OFFSET_HOLE. */
  readSparse?(offset: number, length: number): Promise<ReadPiece[]>;
  /** `data` is lent: it is reused once the returned promise settles, so copy what you keep. */
  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  /**
   * Required here: the server calls it only when canTrim; a backend without trim
   * throws. Every writable backend here trims, so a BlockDevice user that trims
   * whenever `trim` exists only ever meets the throwing kind on a read-only device.
   */
  trim(offset: number, length: number, opts?: WriteOptions): Promise<void>;
  zero(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  cache(offset: number, length: number): Promise<void>;
  /**
   * Extents from `offset` for `context`. Must start at `offset` and be contiguous;
   * may cover less than `length` (at least one extent) or run past it (the server clips).
   */
  blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]>;
  /** Called when the last connection using this backend instance closes. */
  close?(): Promise<void>;
}

/** Who is asking: filled in by the server from the transport and the TLS handshake. */
export interface SessionInfo {
  /** TLS-PSK identity the client proved, or undefined on a plain connection. */
  readonly tlsIdentity: string | undefined;
  /** "unix" for a local socket, else the peer address. */
  readonly peer: string;
}

export interface ExportListing {
  name: string;
  description?: string;
}

/**
 * The server's view of its exports. `open` is called once per connection at
 * NBD_OPT_GO/EXPORT_NAME and throws NotFoundError / PermissionDenied-style
 * SanboxErrors which become NBD_REP_ERR_UNKNOWN / NBD_REP_ERR_POLICY.
 */
export interface ExportProvider {
  list(session: SessionInfo): Promise<ExportListing[]>;
  open(name: string, session: SessionInfo): Promise<NbdBackend>;
  /** Contexts available for `name`, for LIST/SET_META_CONTEXT before GO. */
  metaContexts(name: string, session: SessionInfo): Promise<readonly string[]>;
}
