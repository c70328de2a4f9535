/**
 * validateRequest: the one gate before a backend (proto.md "Request types",
 * "Error values"). Table tests per command, then properties over random headers.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BackendCapabilities } from "../../../src/nbd/backend.js";
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
} from "../../../src/nbd/constants.js";
import { validateRequest, type ValidationContext } from "../../../src/nbd/request-validation.js";
import type { RequestHeader } from "../../../src/nbd/transmission-codec.js";

const SIZE = 1024 * 1024;
const ALL: BackendCapabilities = {
  readOnly: false,
  canFlush: true,
  canFua: true,
  canTrim: true,
  canZero: true,
  canFastZero: true,
  canCache: true,
  canMultiConn: true,
};
const ctx = (over: Partial<ValidationContext> = {}, caps: Partial<BackendCapabilities> = {}): ValidationContext => ({
  size: SIZE,
  caps: { ...ALL, ...caps },
  structuredReplies: true,
  metaContextCount: 1,
  ...over,
});
const req = (type: number, offset: number, length: number, flags = 0): RequestHeader => ({ type, offset, length, flags, cookie: 1n });

type Row = [string, RequestHeader, ValidationContext, string | undefined];

const table: Row[] = [
  // READ
  ["read in range", req(NBD_CMD_READ, 0, 512), ctx(), undefined],
  ["read ending exactly at the end", req(NBD_CMD_READ, SIZE - 1, 1), ctx(), undefined],
  ["read with DF", req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_DF), ctx(), undefined],
  ["read past the end", req(NBD_CMD_READ, SIZE - 1, 2), ctx(), "EINVAL"],
  ["read at the end", req(NBD_CMD_READ, SIZE, 1), ctx(), "EINVAL"],
  ["zero-length read", req(NBD_CMD_READ, 0, 0), ctx(), "EINVAL"],
  ["read over the payload limit", req(NBD_CMD_READ, 0, NBD_MAX_PAYLOAD + 1), ctx({ size: 2 * NBD_MAX_PAYLOAD }), "EINVAL"],
  ["read with NO_HOLE", req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_NO_HOLE), ctx(), "EINVAL"],
  ["read at an offset beyond 2^53", req(NBD_CMD_READ, 2 ** 64 - 512, 512), ctx(), "EINVAL"],
  ["read on a read-only export", req(NBD_CMD_READ, 0, 512), ctx({}, { readOnly: true }), undefined],
  // WRITE
  ["write in range", req(NBD_CMD_WRITE, 0, 512), ctx(), undefined],
  ["write with FUA", req(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_FUA), ctx(), undefined],
  ["write past the end", req(NBD_CMD_WRITE, SIZE - 511, 512), ctx(), "ENOSPC"],
  ["write on a read-only export", req(NBD_CMD_WRITE, 0, 512), ctx({}, { readOnly: true }), "EPERM"],
  ["write past the end on a read-only export", req(NBD_CMD_WRITE, SIZE, 512), ctx({}, { readOnly: true }), "EPERM"],
  ["zero-length write", req(NBD_CMD_WRITE, 0, 0), ctx(), "EINVAL"],
  ["write with DF", req(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_DF), ctx(), "EINVAL"],
  ["write over the payload limit", req(NBD_CMD_WRITE, 0, NBD_MAX_PAYLOAD + 1), ctx({ size: 2 * NBD_MAX_PAYLOAD }), "EINVAL"],
  // TRIM
  ["trim in range", req(NBD_CMD_TRIM, 0, SIZE), ctx(), undefined],
  ["trim larger than the payload limit", req(NBD_CMD_TRIM, 0, 0xffffffff), ctx({ size: 2 ** 33 }), undefined],
  ["trim past the end", req(NBD_CMD_TRIM, 1, SIZE), ctx(), "ENOSPC"],
  ["trim unsupported", req(NBD_CMD_TRIM, 0, 512), ctx({}, { canTrim: false }), "EINVAL"],
  ["trim on a read-only export", req(NBD_CMD_TRIM, 0, 512), ctx({}, { readOnly: true }), "EPERM"],
  ["zero-length trim", req(NBD_CMD_TRIM, 0, 0), ctx(), "EINVAL"],
  ["trim with NO_HOLE", req(NBD_CMD_TRIM, 0, 512, NBD_CMD_FLAG_NO_HOLE), ctx(), "EINVAL"],
  // WRITE_ZEROES
  ["zero in range", req(NBD_CMD_WRITE_ZEROES, 0, 512), ctx(), undefined],
  ["zero with NO_HOLE, FAST_ZERO and FUA", req(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_FUA), ctx(), undefined],
  ["zero past the end", req(NBD_CMD_WRITE_ZEROES, SIZE, 1), ctx(), "ENOSPC"],
  ["zero unsupported", req(NBD_CMD_WRITE_ZEROES, 0, 512), ctx({}, { canZero: false }), "EINVAL"],
  ["fast zero unsupported", req(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_FAST_ZERO), ctx({}, { canFastZero: false }), "EINVAL"],
  ["zero on a read-only export", req(NBD_CMD_WRITE_ZEROES, 0, 512), ctx({}, { readOnly: true }), "EPERM"],
  ["zero with REQ_ONE", req(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_REQ_ONE), ctx(), "EINVAL"],
  // FLUSH
  ["flush", req(NBD_CMD_FLUSH, 0, 0), ctx(), undefined],
  ["flush unsupported", req(NBD_CMD_FLUSH, 0, 0), ctx({}, { canFlush: false }), "EINVAL"],
  ["flush on a read-only export", req(NBD_CMD_FLUSH, 0, 0), ctx({}, { readOnly: true }), undefined],
  // proto.md: with NBD_FLAG_SEND_FUA, FUA MUST be accepted on every command.
  ["flush with FUA", req(NBD_CMD_FLUSH, 0, 0, NBD_CMD_FLAG_FUA), ctx(), undefined],
  ["read with FUA", req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_FUA), ctx(), undefined],
  ["cache with FUA", req(NBD_CMD_CACHE, 0, 512, NBD_CMD_FLAG_FUA), ctx(), undefined],
  ["block status with FUA", req(NBD_CMD_BLOCK_STATUS, 0, 512, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE), ctx(), undefined],
  ["flush with FUA when FUA is not advertised", req(NBD_CMD_FLUSH, 0, 0, NBD_CMD_FLAG_FUA), ctx({}, { canFua: false }), "EINVAL"],
  // CACHE
  ["cache in range", req(NBD_CMD_CACHE, 0, SIZE), ctx(), undefined],
  ["cache past the end", req(NBD_CMD_CACHE, 0, SIZE + 1), ctx(), "EINVAL"],
  ["cache unsupported", req(NBD_CMD_CACHE, 0, 512), ctx({}, { canCache: false }), "EINVAL"],
  // BLOCK_STATUS
  ["block status", req(NBD_CMD_BLOCK_STATUS, 0, SIZE), ctx(), undefined],
  ["block status with REQ_ONE", req(NBD_CMD_BLOCK_STATUS, 0, 512, NBD_CMD_FLAG_REQ_ONE), ctx(), undefined],
  ["block status without structured replies", req(NBD_CMD_BLOCK_STATUS, 0, 512), ctx({ structuredReplies: false }), "EINVAL"],
  ["block status without a meta context", req(NBD_CMD_BLOCK_STATUS, 0, 512), ctx({ metaContextCount: 0 }), "EINVAL"],
  ["block status past the end", req(NBD_CMD_BLOCK_STATUS, SIZE - 1, 2), ctx(), "EINVAL"],
  ["zero-length block status", req(NBD_CMD_BLOCK_STATUS, 0, 0), ctx(), "EINVAL"],
  ["block status with DF", req(NBD_CMD_BLOCK_STATUS, 0, 512, NBD_CMD_FLAG_DF), ctx(), "EINVAL"],
  // others
  ["disconnect", req(NBD_CMD_DISC, 0, 0), ctx(), undefined],
  ["unknown command 8", req(8, 0, 512), ctx(), "EINVAL"],
  ["unknown command 0xffff", req(0xffff, 0, 0), ctx(), "EINVAL"],
  ["unknown flag bit", req(NBD_CMD_READ, 0, 512, 1 << 15), ctx(), "EINVAL"],
];

describe("validateRequest table", () => {
  it.each(table)("%s", (_name, h, c, errno) => {
    expect(validateRequest(h, c)?.errno).toBe(errno);
  });

  it("an oversized WRITE the decoder discarded fails with EINVAL even if its length looks fine", () => {
    expect(validateRequest(req(NBD_CMD_WRITE, 0, 512), ctx(), true)?.errno).toBe("EINVAL");
  });

  it("honours a smaller configured payload limit", () => {
    expect(validateRequest(req(NBD_CMD_READ, 0, 4097), ctx({ maxPayload: 4096 }))?.errno).toBe("EINVAL");
    expect(validateRequest(req(NBD_CMD_READ, 0, 4096), ctx({ maxPayload: 4096 }))).toBeUndefined();
  });

  it("every rejection carries a reason", () => {
    for (const [, h, c] of table) {
      const r = validateRequest(h, c);
      if (r) expect(r.reason.length).toBeGreaterThan(0);
    }
  });
});

describe("validateRequest properties", () => {
  const anyHeader = fc.record({
    type: fc.integer({ min: 0, max: 9 }),
    flags: fc.integer({ min: 0, max: 0x3f }),
    cookie: fc.constant(1n),
    offset: fc.oneof(fc.nat({ max: SIZE + 10 }), fc.constant(2 ** 64 - 1)),
    length: fc.oneof(fc.nat({ max: SIZE + 10 }), fc.constant(0xffffffff)),
  });

  it("accepts nothing that reaches past the end (except flush and disconnect, which carry no range)", () => {
    fc.assert(
      fc.property(anyHeader, (h) => {
        const ok = validateRequest(h, ctx()) === undefined;
        if (ok && h.type !== NBD_CMD_FLUSH && h.type !== NBD_CMD_DISC) expect(h.offset + h.length).toBeLessThanOrEqual(SIZE);
      }),
    );
  });

  it("never lets a write-like command through on a read-only export", () => {
    fc.assert(
      fc.property(anyHeader, (h) => {
        const r = validateRequest(h, ctx({}, { readOnly: true }));
        if (h.type === NBD_CMD_WRITE || h.type === NBD_CMD_TRIM || h.type === NBD_CMD_WRITE_ZEROES) expect(r?.errno).toMatch(/EPERM|EINVAL/);
      }),
    );
  });

  it("answers only with EINVAL, ENOSPC or EPERM", () => {
    fc.assert(
      fc.property(anyHeader, fc.boolean(), fc.boolean(), (h, ro, sr) => {
        const r = validateRequest(h, ctx({ structuredReplies: sr }, { readOnly: ro }));
        if (r) expect(["EINVAL", "ENOSPC", "EPERM"]).toContain(r.errno);
      }),
    );
  });
});
