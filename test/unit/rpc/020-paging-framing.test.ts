/** Pure pieces of the service: CSI paging tokens, CBT stream framing, endpoints, bearer auth, dirty-bitmap status. */
import { Metadata } from "@grpc/grpc-js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NBD_STATE_DIRTY } from "../../../src/nbd/constants.js";
import { BearerAuth } from "../../../src/rpc/auth.js";
import { parseEndpoint } from "../../../src/rpc/endpoint.js";
import { v1 } from "../../../src/rpc/proto.js";
import { dirtyStatus } from "../../../simulator/array/exports/volume-backend.js";
import { frame } from "../../../simulator/array/service/array-service.js";
import { page } from "../../../simulator/array/service/paging.js";

describe("paging", () => {
  it("visits every item exactly once for any page size", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { maxLength: 40 }), fc.integer({ min: 1, max: 9 }), (keys, n) => {
        const seen: string[] = [];
        let token = "";
        let rounds = 0;
        do {
          const p = page(keys, (k) => k, n, token);
          expect(p.items.length).toBeLessThanOrEqual(n);
          seen.push(...p.items);
          token = p.nextToken;
        } while (token !== "" && ++rounds < 100);
        expect([...seen].sort()).toEqual([...keys].sort());
      }),
    );
  });
  it("rejects foreign tokens with ABORTED and negative sizes with INVALID_ARGUMENT", () => {
    expect(() => page(["a"], (k) => k, 0, "xyz")).toThrow(expect.objectContaining({ code: "ABORTED" }) as Error);
    expect(() => page(["a"], (k) => k, -1, "")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }) as Error);
  });
});

describe("CBT stream framing", () => {
  const ext = Array.from({ length: 10 }, (_, i) => ({ offset: i * 100, length: 50, flag: v1.ExtentType.DATA }));
  it("splits into max_results per message and keeps order", () => {
    const msgs = [...frame(ext, 1000, 0, 3)];
    expect(msgs.map((m) => m.blockMetadata?.length)).toEqual([3, 3, 3, 1]);
    expect(msgs.flatMap((m) => m.blockMetadata ?? []).map((b) => b.byteOffset)).toEqual(ext.map((e) => e.offset));
  });
  it("resumes: the first extent ends after starting_offset", () => {
    for (let s = 0; s <= 1000; s += 7) {
      const got = [...frame(ext, 1000, s, 4)].flatMap((m) => m.blockMetadata ?? []);
      expect(got).toEqual(
        ext.filter((e) => e.offset + e.length > s).map((e) => ({ byteOffset: e.offset, sizeBytes: e.length, type: e.flag })),
      );
    }
  });
  it("always sends one message (capacity) and refuses offsets outside the volume", () => {
    expect([...frame([], 4096, 0, 10)]).toEqual([{ blockMetadataType: v1.BlockMetadataType.VARIABLE_LENGTH, volumeCapacityBytes: 4096, blockMetadata: [] }]);
    expect(() => [...frame(ext, 1000, 1001, 1)]).toThrow(expect.objectContaining({ code: "OUT_OF_RANGE" }) as Error);
    expect(() => [...frame(ext, 1000, -1, 1)]).toThrow(expect.objectContaining({ code: "OUT_OF_RANGE" }) as Error);
  });
});

describe("qemu:dirty-bitmap status from changed extents", () => {
  const dirty = [
    { offset: 100, length: 100 },
    { offset: 400, length: 50 },
  ];
  it("is contiguous from the offset, clean and dirty alternating", () => {
    expect(dirtyStatus(dirty, 0, 1000)).toEqual([
      { offset: 0, length: 100, flag: 0 },
      { offset: 100, length: 100, flag: NBD_STATE_DIRTY },
      { offset: 200, length: 200, flag: 0 },
      { offset: 400, length: 50, flag: NBD_STATE_DIRTY },
      { offset: 450, length: 550, flag: 0 },
    ]);
    expect(dirtyStatus(dirty, 150, 300)).toEqual([
      { offset: 150, length: 50, flag: NBD_STATE_DIRTY },
      { offset: 200, length: 200, flag: 0 },
      { offset: 400, length: 50, flag: NBD_STATE_DIRTY },
    ]);
  });
});

describe("endpoints and bearer auth", () => {
  it("parses unix:PATH and HOST:PORT", () => {
    expect(parseEndpoint("unix:/a/b.sock")).toEqual({ kind: "unix", path: "/a/b.sock" });
    expect(parseEndpoint("unix:///a/b.sock")).toEqual({ kind: "unix", path: "/a/b.sock" });
    expect(parseEndpoint("127.0.0.1:5000")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 5000, tls: false });
    expect(parseEndpoint("tls:array.example:443")).toEqual({ kind: "tcp", host: "array.example", port: 443, tls: true });
    expect(() => parseEndpoint("nonsense")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }) as Error);
  });
  it("checks the bearer token", () => {
    const auth = new BearerAuth("tok");
    const md = new Metadata();
    expect(() => auth.check(md)).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }) as Error);
    md.set("authorization", "Bearer tok");
    expect(() => auth.check(md)).not.toThrow();
    md.set("authorization", "Bearer tok2");
    expect(() => auth.check(md)).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }) as Error);
    expect(() => new BearerAuth(undefined).check(new Metadata())).not.toThrow();
  });
});
