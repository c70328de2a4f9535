/**
 * The one error catalogue for sanbox.
 *
 * Every error that crosses a module boundary is a `SanboxError` with a stable
 * string `code`. Callers branch on `code` (or `instanceof`), never on message text.
 * The codes double as the gRPC "reason" strings of the array contract, and
 * `errno` maps command failures onto NBD error values (see `src/nbd/errno.ts`).
 *
 * Two NBD error kinds are deliberately distinct (as in libnbd):
 *  - `NbdProtocolError`: the peer broke the protocol; the connection is closed.
 *  - `NbdCommandError`: one command failed with an errno; the connection lives on.
 */

export type Errno = "EPERM" | "EIO" | "ENOMEM" | "EINVAL" | "ENOSPC" | "EOVERFLOW" | "ENOTSUP" | "ESHUTDOWN";

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
  | "OUT_OF_RANGE"
  | "RESOURCE_EXHAUSTED"
  | "ABORTED"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "UNAVAILABLE"
  | "CBT_UNAVAILABLE"
  | "READ_ONLY"
  | "NO_SPACE"
  | "IO_ERROR"
  | "CORRUPT"
  | "UNSUPPORTED"
  | "NBD_PROTOCOL"
  | "NBD_COMMAND"
  | "NBD_NEGOTIATION"
  | "CONNECTION_CLOSED"
  | "TOOL_MISSING"
  | "TOOL_FAILED"
  | "TIMEOUT"
  | "CANCELLED";

export class SanboxError extends Error {
  readonly code: ErrorCode;
  /** The errno an NBD server replies with when this error fails a command. */
  readonly errno: Errno;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; errno?: Errno }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options?.errno ?? "EIO";
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends SanboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_ARGUMENT", message, { ...options, errno: "EINVAL" });
  }
}
export class NotFoundError extends SanboxError {
  constructor(message: string) {
    super("NOT_FOUND", message, { errno: "EINVAL" });
  }
}
export class AlreadyExistsError extends SanboxError {
  constructor(message: string) {
    super("ALREADY_EXISTS", message, { errno: "EINVAL" });
  }
}
export class FailedPreconditionError extends SanboxError {
  constructor(message: string) {
    super("FAILED_PRECONDITION", message, { errno: "EINVAL" });
  }
}
export class OutOfRangeError extends SanboxError {
  constructor(message: string, errno: Errno = "EINVAL") {
    super("OUT_OF_RANGE", message, { errno });
  }
}
export class ReadOnlyError extends SanboxError {
  constructor(message: string) {
    super("READ_ONLY", message, { errno: "EPERM" });
  }
}
export class NoSpaceError extends SanboxError {
  constructor(message: string) {
    super("NO_SPACE", message, { errno: "ENOSPC" });
  }
}
export class IoError extends SanboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("IO_ERROR", message, { ...options, errno: "EIO" });
  }
}
/**
 * A failed file-system call as a catalogue error: a full disk or quota is
 * NoSpaceError (ENOSPC to NBD clients, RESOURCE_EXHAUSTED over gRPC), anything
 * else IoError. Catalogue errors pass through unchanged.
 */
export function fsError(e: unknown, message: string): SanboxError {
  if (e instanceof SanboxError) return e;
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  const detail = e instanceof Error ? e.message : String(e);
  if (code === "ENOSPC" || code === "EDQUOT") return new NoSpaceError(`${message}: no space left on the device (${detail})`);
  return new IoError(`${message}: ${detail}`, { cause: e });
}
export class CorruptError extends SanboxError {
  constructor(message: string) {
    super("CORRUPT", message, { errno: "EIO" });
  }
}
export class UnsupportedError extends SanboxError {
  constructor(message: string) {
    super("UNSUPPORTED", message, { errno: "ENOTSUP" });
  }
}
/** CBT cannot answer for this pair of snapshots: the caller must do a full backup. */
/** A daemon could not be reached. `nothingListens`: no socket or connection refused, so retrying at start-up is pointless. */
export class UnavailableError extends SanboxError {
  readonly nothingListens: boolean;
  constructor(message: string, options: { nothingListens?: boolean } = {}) {
    super("UNAVAILABLE", message);
    this.nothingListens = options.nothingListens ?? false;
  }
}
export class CbtUnavailableError extends SanboxError {
  constructor(message: string) {
    super("CBT_UNAVAILABLE", message, { errno: "EINVAL" });
  }
}

/** The NBD peer violated the protocol. The connection is unusable and gets closed. */
export class NbdProtocolError extends SanboxError {
  constructor(message: string) {
    super("NBD_PROTOCOL", message, { errno: "EINVAL" });
  }
}
/** Option negotiation failed (e.g. unknown export, TLS required). The connection is closed. */
export class NbdNegotiationError extends SanboxError {
  /** NBD_REP_ERR_* value the server sent, if any. */
  readonly reply: number | undefined;
  constructor(message: string, reply?: number) {
    super("NBD_NEGOTIATION", message);
    this.reply = reply;
  }
}
/** One NBD command failed with an errno. Only that command fails. */
export class NbdCommandError extends SanboxError {
  constructor(message: string, errno: Errno) {
    super("NBD_COMMAND", message, { errno });
  }
}
export class ConnectionClosedError extends SanboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONNECTION_CLOSED", message, { ...options, errno: "ESHUTDOWN" });
  }
}
export class CancelledError extends SanboxError {
  constructor(message = "operation cancelled") {
    super("CANCELLED", message);
  }
}
/** The user stopped the command with a signal; the CLI exits 130 (SIGINT) or 143 (SIGTERM). */
export class InterruptedError extends CancelledError {
  constructor(
    readonly signal: "SIGINT" | "SIGTERM",
    message = `interrupted by ${signal}`,
  ) {
    super(message);
  }
}
/** A worker thread died (crashed, exited, was terminated) while running a job; only its jobs fail. */
export class WorkerCrashedError extends SanboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ABORTED", message, options);
  }
}
/** A job a worker thread ran threw; the worker lives on. `remoteName` is the thrown error's class name. */
export class WorkerJobError extends SanboxError {
  constructor(
    message: string,
    readonly remoteName: string,
  ) {
    super("IO_ERROR", message);
  }
}
export class TimeoutError extends SanboxError {
  constructor(message: string) {
    super("TIMEOUT", message);
  }
}
/** A required external tool is not installed. The message names the install command. */
export class ToolMissingError extends SanboxError {
  constructor(tool: string, pkg: string) {
    super("TOOL_MISSING", `${tool} is not installed; install it with: apt-get install -y ${pkg} (or run: npm run setup)`);
  }
}
export class ToolFailedError extends SanboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("TOOL_FAILED", message, options);
  }
}

/** How many characters of a caller's input an error message quotes at most. */
export const QUOTE_CHARS = 64;
/** The longest error message sent over the wire or printed (a backstop: messages quote input through `quote`). */
export const MAX_MESSAGE_CHARS = 1024;

/**
 * A caller's value as an error message quotes it: JSON-quoted (so control
 * characters and binary input stay on one line) and cut to `max` characters,
 * with the full length said when cut. Every message that repeats input goes
 * through here: an unbounded echo once made error replies too large to deliver.
 */
export function quote(v: unknown, max = QUOTE_CHARS): string {
  const s = typeof v === "string" ? v : String(v);
  if (s.length <= max) return JSON.stringify(s);
  // Do not cut a surrogate pair in half.
  const end = /[\uD800-\uDBFF]/.test(s.charAt(max - 1)) ? max - 1 : max;
  return `${JSON.stringify(s.slice(0, end))}… (${s.length} characters)`;
}

/** `m` cut to MAX_MESSAGE_CHARS. */
export function boundMessage(m: string, max = MAX_MESSAGE_CHARS): string {
  return m.length <= max ? m : `${m.slice(0, max)}… (message cut at ${max} of ${m.length} characters)`;
}

/** Narrow an unknown thrown value to a message. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The caller is authenticated but not allowed (LUN masking, read-only policy). */
export class PermissionDeniedError extends SanboxError {
  constructor(message: string) {
    super("PERMISSION_DENIED", message, { errno: "EPERM" });
  }
}
export class UnauthenticatedError extends SanboxError {
  constructor(message: string) {
    super("UNAUTHENTICATED", message, { errno: "EPERM" });
  }
}
