// Model test: random file-system operations against an in-memory reference.
// After every step the invariant checker passes and every file reads as the model says;
// "reopen" mounts the device afresh mid-sequence.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/nbd/backends/memory-backend.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { fsck } from "../../src/datastore/fsck.js";
import { SanboxError } from "../../src/errors.js";

type Node = { kind: "dir" } | { kind: "file"; data: Buffer };
type Model = Map<string, Node>;

type Op =
  | { op: "mkdir"; p: string }
  | { op: "create"; p: string; size: number }
  | { op: "write"; p: string; off: number; len: number; seed: number }
  | { op: "truncate"; p: string; size: number }
  | { op: "trim"; p: string; off: number; len: number }
  | { op: "delete"; p: string }
  | { op: "rename"; from: string; to: string }
  | { op: "reopen" }
  | { op: "commit" };

const PATHS = ["/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/f", "/g"];
const path = fc.constantFrom(...PATHS);
// Data operations mostly hit the two top-level files, so they exist often enough.
const filePath = fc.oneof({ arbitrary: fc.constantFrom("/f", "/g"), weight: 4 }, { arbitrary: path, weight: 1 });
const off = fc.integer({ min: 0, max: 12000 });
const len = fc.integer({ min: 0, max: 5000 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("mkdir" as const), p: path }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("create" as const), p: filePath, size: off }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("write" as const), p: filePath, off, len, seed: fc.integer({ min: 1, max: 255 }) }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant("truncate" as const), p: filePath, size: off }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant("trim" as const), p: filePath, off, len }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("delete" as const), p: path }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("rename" as const), from: path, to: path }), weight: 2 },
  { arbitrary: fc.constant({ op: "reopen" as const }), weight: 1 },
  { arbitrary: fc.constant({ op: "commit" as const }), weight: 1 },
);

export function pattern(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = (x >>> 0) & 0xff;
  }
  return b;
}

const parentOf = (p: string): string => p.slice(0, p.lastIndexOf("/")) || "/";

function isDir(m: Model, p: string): boolean {
  return p === "/" || m.get(p)?.kind === "dir";
}

/** Applies `o` to the model; returns false when the real file system must refuse it. */
function apply(m: Model, o: Op): boolean {
  switch (o.op) {
    case "mkdir":
    case "create":
      if (m.has(o.p) || !isDir(m, parentOf(o.p))) return false;
      m.set(o.p, o.op === "mkdir" ? { kind: "dir" } : { kind: "file", data: Buffer.alloc(o.size) });
      return true;
    case "write":
    case "truncate":
    case "trim": {
      const n = m.get(o.p);
      if (n?.kind !== "file") return false;
      if (o.op === "write") {
        const data = n.data.length < o.off + o.len ? Buffer.concat([n.data, Buffer.alloc(o.off + o.len - n.data.length)]) : n.data;
        pattern(o.seed, o.len).copy(data, o.off);
        n.data = data;
      } else if (o.op === "truncate") {
        n.data = o.size <= n.data.length ? Buffer.from(n.data.subarray(0, o.size)) : Buffer.concat([n.data, Buffer.alloc(o.size - n.data.length)]);
      } else {
        n.data.fill(0, Math.min(o.off, n.data.length), Math.min(o.off + o.len, n.data.length));
      }
      return true;
    }
    case "delete": {
      const n = m.get(o.p);
      if (n === undefined) return false;
      if (n.kind === "dir" && [...m.keys()].some((k) => k.startsWith(o.p + "/"))) return false;
      m.delete(o.p);
      return true;
    }
    case "rename": {
      if (!m.has(o.from) || !isDir(m, parentOf(o.to))) return false;
      if (o.to === o.from) return true;
      if (m.has(o.to) || o.to.startsWith(o.from + "/")) return false;
      for (const [k, v] of [...m]) {
        if (k === o.from || k.startsWith(o.from + "/")) {
          m.delete(k);
          m.set(o.to + k.slice(o.from.length), v);
        }
      }
      return true;
    }
    default:
      return true;
  }
}

async function applyReal(ds: Datastore, o: Op): Promise<void> {
  switch (o.op) {
    case "mkdir":
      return ds.mkdir(o.p);
    case "create":
      return ds.create(o.p, { size: o.size });
    case "write":
      return ds.write(o.p, o.off, pattern(o.seed, o.len));
    case "truncate":
      return ds.truncate(o.p, o.size);
    case "trim":
      return ds.trim(o.p, o.off, o.len);
    case "delete":
      return ds.delete(o.p);
    case "rename":
      return ds.rename(o.from, o.to);
    default:
      return;
  }
}

async function expectSame(ds: Datastore, m: Model): Promise<void> {
  const report = ds.check();
  expect(report.errors).toEqual([]);
  const entries = await ds.walk();
  expect(entries.map((e) => `${e.path}:${e.kind}`).sort()).toEqual([...m].map(([k, v]) => `${k}:${v.kind}`).sort());
  for (const [p, n] of m) {
    if (n.kind !== "file") continue;
    const got = await ds.readFile(p);
    expect(got.length).toBe(n.data.length);
    expect(got.equals(n.data)).toBe(true);
    const map = await ds.extentMap(p);
    for (const x of map) expect(x.fileOffset + x.length).toBeLessThanOrEqual(n.data.length);
  }
}

describe("datastore file system vs a reference model", () => {
  for (const mode of ["auto", "manual"] as const) {
    it(`random operation sequences (${mode} commit)`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40, size: "max" }), fc.constantFrom(512, 1024, 4096), async (ops, blockSize) => {
          const dev = new MemoryBackend(256 * 1024);
          let ds = await Datastore.format(dev, { blockSize }, { strict: true, commit: mode });
          const model: Model = new Map();
          for (const o of ops) {
            if (o.op === "reopen") {
              await ds.commit();
              ds = await Datastore.open(dev, { strict: true, commit: mode });
            } else if (o.op === "commit") {
              await ds.commit();
              expect((await fsck(dev)).ok).toBe(true);
            } else {
              const shadow: Model = new Map([...model].map(([k, v]) => [k, v.kind === "file" ? { kind: "file", data: Buffer.from(v.data) } : v]));
              const ok = apply(shadow, o);
              let threw: unknown;
              try {
                await applyReal(ds, o);
              } catch (e: unknown) {
                threw = e;
              }
              if (ok && threw !== undefined) throw threw instanceof Error ? threw : new Error("non-Error thrown");
              expect(threw === undefined ? "ok" : "refused").toBe(ok ? "ok" : "refused");
              if (threw !== undefined) expect(threw).toBeInstanceOf(SanboxError);
              if (ok) {
                model.clear();
                for (const [k, v] of shadow) model.set(k, v);
              }
            }
            await expectSame(ds, model);
          }
          await ds.commit();
          expect((await fsck(dev)).errors).toEqual([]);
          await expectSame(await Datastore.open(dev), model);
        }),
        { numRuns: 120 },
      );
    });
  }
});
