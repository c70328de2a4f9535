/**
 * The one mapping between sanbox's error catalogue and gRPC status codes.
 *
 * Server side, a thrown SanboxError becomes a status with the matching gRPC code,
 * its message as details, and its stable `code` in the trailing metadata key
 * `sanbox-reason` (several reasons share one gRPC code, e.g. NO_SPACE and
 * RESOURCE_EXHAUSTED, CBT_UNAVAILABLE and FAILED_PRECONDITION). Client side,
 * `errorFromStatus` rebuilds the same error class, so callers branch on
 * `e.code` whether they called the store directly or went over the wire.
 * A status without a reason (another vendor's array) maps from its gRPC code.
 */
import { Metadata, status as Status, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import {
  AlreadyExistsError,
  CbtUnavailableError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  PermissionDeniedError,
  SanboxError,
  UnauthenticatedError,
  boundMessage,
  errorMessage,
  type ErrorCode,
} from "../errors.js";

export const REASON_KEY = "sanbox-reason";

const CODE_OF: Readonly<Record<ErrorCode, Status>> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  OUT_OF_RANGE: Status.OUT_OF_RANGE,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  ABORTED: Status.ABORTED,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  UNAVAILABLE: Status.UNAVAILABLE,
  CBT_UNAVAILABLE: Status.FAILED_PRECONDITION,
  READ_ONLY: Status.FAILED_PRECONDITION,
  NO_SPACE: Status.RESOURCE_EXHAUSTED,
  IO_ERROR: Status.INTERNAL,
  CORRUPT: Status.DATA_LOSS,
  UNSUPPORTED: Status.UNIMPLEMENTED,
  NBD_PROTOCOL: Status.INTERNAL,
  NBD_COMMAND: Status.INTERNAL,
  NBD_NEGOTIATION: Status.INTERNAL,
  CONNECTION_CLOSED: Status.UNAVAILABLE,
  TOOL_MISSING: Status.INTERNAL,
  TOOL_FAILED: Status.INTERNAL,
  TIMEOUT: Status.DEADLINE_EXCEEDED,
  CANCELLED: Status.CANCELLED,
};

/** The reason a bare gRPC code stands for, when the server sent none. */
const REASON_OF: Readonly<Partial<Record<Status, ErrorCode>>> = {
  [Status.INVALID_ARGUMENT]: "INVALID_ARGUMENT",
  [Status.NOT_FOUND]: "NOT_FOUND",
  [Status.ALREADY_EXISTS]: "ALREADY_EXISTS",
  [Status.FAILED_PRECONDITION]: "FAILED_PRECONDITION",
  [Status.OUT_OF_RANGE]: "OUT_OF_RANGE",
  [Status.RESOURCE_EXHAUSTED]: "RESOURCE_EXHAUSTED",
  [Status.ABORTED]: "ABORTED",
  [Status.UNAUTHENTICATED]: "UNAUTHENTICATED",
  [Status.PERMISSION_DENIED]: "PERMISSION_DENIED",
  [Status.UNAVAILABLE]: "UNAVAILABLE",
  [Status.UNIMPLEMENTED]: "UNSUPPORTED",
  [Status.DATA_LOSS]: "CORRUPT",
  [Status.DEADLINE_EXCEEDED]: "TIMEOUT",
  [Status.CANCELLED]: "CANCELLED",
  [Status.INTERNAL]: "IO_ERROR",
  [Status.UNKNOWN]: "IO_ERROR",
};

const REASONS = new Set<string>(Object.keys(CODE_OF));
function isErrorCode(s: string): s is ErrorCode {
  return REASONS.has(s);
}

export function grpcCodeOf(code: ErrorCode): Status {
  return CODE_OF[code];
}

/** What a server handler sends for a thrown value. Non-SanboxErrors are INTERNAL. */
export function toStatus(e: unknown): Partial<StatusObject> & { code: Status } {
  const metadata = new Metadata();
  if (e instanceof SanboxError) {
    metadata.set(REASON_KEY, e.code);
    return { code: CODE_OF[e.code], details: boundMessage(e.message), metadata };
  }
  metadata.set(REASON_KEY, "IO_ERROR");
  return { code: Status.INTERNAL, details: boundMessage(`internal error: ${errorMessage(e)}`), metadata };
}

/** The SanboxError a client call failed with. */
export function errorFromStatus(code: number, details: string, metadata: Metadata | undefined): SanboxError {
  const sent = metadata?.get(REASON_KEY)[0];
  const reason: ErrorCode = typeof sent === "string" && isErrorCode(sent) ? sent : (REASON_OF[code as Status] ?? "IO_ERROR");
  return makeError(reason, details);
}

export function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as Partial<ServiceError>).code === "number" && "details" in e;
}

/** Rebuilds the catalogue class for a reason, so `instanceof` works across the wire too. */
export function makeError(reason: ErrorCode, message: string): SanboxError {
  switch (reason) {
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(message);
    case "NOT_FOUND":
      return new NotFoundError(message);
    case "ALREADY_EXISTS":
      return new AlreadyExistsError(message);
    case "FAILED_PRECONDITION":
      return new FailedPreconditionError(message);
    case "OUT_OF_RANGE":
      return new OutOfRangeError(message);
    case "CBT_UNAVAILABLE":
      return new CbtUnavailableError(message);
    case "PERMISSION_DENIED":
      return new PermissionDeniedError(message);
    case "UNAUTHENTICATED":
      return new UnauthenticatedError(message);
    default:
      return new SanboxError(reason, message);
  }
}
