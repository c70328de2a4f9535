/** status.ts: every reason maps to one gRPC code and comes back as the same error class. */
import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { CbtUnavailableError, NotFoundError, NoSpaceError, SanboxError, type ErrorCode } from "../../../src/errors.js";
import { errorFromStatus, grpcCodeOf, REASON_KEY, toStatus } from "../../../src/rpc/status.js";

const REASONS: ErrorCode[] = ["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED", "ABORTED", "UNAUTHENTICATED", "PERMISSION_DENIED", "CBT_UNAVAILABLE", "NO_SPACE"];

describe("rpc status mapping", () => {
  it("round-trips every contract reason with its class and message", () => {
    for (const code of REASONS) {
      const s = toStatus(new SanboxError(code, `m-${code}`));
      expect(s.code).toBe(grpcCodeOf(code));
      const back = errorFromStatus(s.code, s.details ?? "", s.metadata);
      expect(back.code).toBe(code);
      expect(back.message).toBe(`m-${code}`);
    }
    const nf = toStatus(new NotFoundError("x"));
    expect(errorFromStatus(nf.code, "x", nf.metadata)).toBeInstanceOf(NotFoundError);
    const cbt = toStatus(new CbtUnavailableError("full backup"));
    expect(cbt.code).toBe(status.FAILED_PRECONDITION);
    expect(errorFromStatus(cbt.code, "", cbt.metadata)).toBeInstanceOf(CbtUnavailableError);
    expect(toStatus(new NoSpaceError("full")).code).toBe(status.RESOURCE_EXHAUSTED);
  });

  it("maps the CSI codes used by the contract to their numbers", () => {
    expect(grpcCodeOf("INVALID_ARGUMENT")).toBe(3);
    expect(grpcCodeOf("NOT_FOUND")).toBe(5);
    expect(grpcCodeOf("ALREADY_EXISTS")).toBe(6);
    expect(grpcCodeOf("FAILED_PRECONDITION")).toBe(9);
    expect(grpcCodeOf("ABORTED")).toBe(10);
    expect(grpcCodeOf("OUT_OF_RANGE")).toBe(11);
    expect(grpcCodeOf("UNAUTHENTICATED")).toBe(16);
  });

  it("a status without a reason (another vendor's array) maps from its code", () => {
    expect(errorFromStatus(status.NOT_FOUND, "gone", new Metadata()).code).toBe("NOT_FOUND");
    expect(errorFromStatus(status.ABORTED, "token", undefined).code).toBe("ABORTED");
    const md = new Metadata();
    md.set(REASON_KEY, "NOT_A_REASON");
    expect(errorFromStatus(status.OUT_OF_RANGE, "", md).code).toBe("OUT_OF_RANGE");
  });

  it("a non-SanboxError is INTERNAL with reason IO_ERROR", () => {
    const s = toStatus(new TypeError("boom"));
    expect(s.code).toBe(status.INTERNAL);
    expect(s.metadata?.get(REASON_KEY)[0]).toBe("IO_ERROR");
  });
});
