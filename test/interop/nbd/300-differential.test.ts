/**
 * Differential test: the same random sequence of writes, trims, zeroes (with
 * and without NO_HOLE), flushes and unaligned reads goes to our server (memory
 * backend) and to `nbdkit memory` of the same size, through the same client
 * (libnbd, one long-lived nbdsh per server). Every read must be identical, every
 * command must succeed on both, and our block status must agree with our data:
 * whatever we report as a hole or zero reads as zeros.
 *
 * fast-check prints the seed and the shrunk sequence on failure; replay with
 * `fc.assert(..., { seed, path })`.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, it } from "vitest";
import { NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../src/nbd/constants.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { NbdshSession, type NbdshCommand, type NbdshReply } from "../../support/nbdsh-session.js";

const SIZE = 1024 * 1024;
const PAGE = 64 * 1024;
const MAX_IO = 96 * 1024;

type Op =
  | { op: "write"; off: number; len: number; seed: number; fua: boolean }
  | { op: "trim"; off: number; len: number }
  | { op: "zero"; off: number; len: number; noHole: boolean }
  | { op: "read"; off: number; len: number }
  | { op: "status"; off: number; len: number }
  | { op: "flush" };

/** Offsets biased towards page boundaries, where allocation decisions change. */
const offset = fc.oneof(
  fc.nat({ max: SIZE - 1 }),
  fc.nat({ max: SIZE / PAGE - 1 }).map((p) => p * PAGE),
  fc.tuple(fc.nat({ max: SIZE / PAGE - 1 }), fc.integer({ min: -3, max: 3 })).map(([p, d]) => Math.min(SIZE - 1, Math.max(0, p * PAGE + d))),
);
const range = (max: number): fc.Arbitrary<{ off: number; len: number }> =>
  fc.tuple(offset, fc.oneof(fc.integer({ min: 1, max }), fc.constantFrom(PAGE, 2 * PAGE, 1, 512))).map(([off, len]) => ({ off, len: Math.max(1, Math.min(len, SIZE - off)) }));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(range(MAX_IO), fc.nat({ max: 255 }), fc.boolean()).map(([r, seed, fua]): Op => ({ op: "write", ...r, seed, fua })) },
  { weight: 2, arbitrary: range(4 * PAGE).map((r): Op => ({ op: "trim", ...r })) },
  { weight: 2, arbitrary: fc.tuple(range(4 * PAGE), fc.boolean()).map(([r, noHole]): Op => ({ op: "zero", ...r, noHole })) },
  { weight: 4, arbitrary: range(MAX_IO).map((r): Op => ({ op: "read", ...r })) },
  { weight: 1, arbitrary: range(4 * PAGE).map((r): Op => ({ op: "status", ...r })) },
  { weight: 1, arbitrary: fc.constant<Op>({ op: "flush" }) },
);

function pattern(len: number, seed: number): string {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 7 + (i >> 9)) & 0xff;
  return b.toString("hex");
}

function toCommand(o: Op): NbdshCommand {
  switch (o.op) {
    case "write":
      return { op: "pwrite", off: o.off, hex: pattern(o.len, o.seed), flags: o.fua ? NBD_CMD_FLAG_FUA : 0 };
    case "trim":
      return { op: "trim", off: o.off, len: o.len };
    case "zero":
      return { op: "zero", off: o.off, len: o.len, flags: o.noHole ? NBD_CMD_FLAG_NO_HOLE : 0 };
    case "read":
      return { op: "pread", off: o.off, len: o.len };
    case "status":
      return { op: "block_status", off: o.off, len: o.len };
    case "flush":
      return { op: "flush" };
  }
}

/** Ranges [start, end) our base:allocation reports as hole or zero. */
function zeroRanges(off: number, r: NbdshReply): [number, number][] {
  const e = r.extents?.["base:allocation"] ?? [];
  const out: [number, number][] = [];
  let pos = off;
  for (let i = 0; i + 1 < e.length; i += 2) {
    const len = e[i] ?? 0;
    const flags = e[i + 1] ?? 0;
    if ((flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)) !== 0) out.push([pos, pos + len]);
    pos += len;
  }
  return out;
}

async function readAll(h: NbdshSession): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let off = 0; off < SIZE; off += 256 * 1024) parts.push(Buffer.from((await h.ok({ op: "pread", off, len: 256 * 1024 })).hex ?? "", "hex"));
  return Buffer.concat(parts);
}

/** Our reported zero ranges inside [off, off+len) must read back as zeros from our server. */
async function checkStatusAgainstData(ours: NbdshSession, off: number, len: number, status: NbdshReply): Promise<void> {
  for (const [a, b] of zeroRanges(off, status)) {
    const end = Math.min(b, off + len);
    for (let p = a; p < end; p += 256 * 1024) {
      const n = Math.min(256 * 1024, end - p);
      const data = Buffer.from((await ours.ok({ op: "pread", off: p, len: n })).hex ?? "", "hex");
      if (!data.equals(Buffer.alloc(n))) throw new Error(`block status reports [${a}, ${b}) as hole/zero, but bytes at ${p}..${p + n} are not zero`);
    }
  }
}

describe("differential: our server vs nbdkit memory", () => {
  let server: RunningServer;
  let kit: Nbdkit;
  let ours: NbdshSession;
  let theirs: NbdshSession;

  beforeAll(async () => {
    server = await startServer({ size: SIZE });
    kit = await Nbdkit.start({ plugin: "memory", pluginArgs: [String(SIZE)] });
    ours = await NbdshSession.open(server.uri);
    theirs = await NbdshSession.open(kit.uri, { metaContexts: [] });
  });
  afterAll(async () => {
    await ours.close();
    await theirs.close();
    await kit.stop();
    await server.stop();
  });

  it("agrees on every read for random op sequences, and our block status matches our data", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), async (ops) => {
        // Start each run from an all-zero disk on both sides, so a run replays alone.
        for (const h of [ours, theirs]) await h.ok({ op: "zero", off: 0, len: SIZE });
        for (const [i, o] of ops.entries()) {
          const cmd = toCommand(o);
          if (o.op === "status") {
            const st = await ours.ok(cmd);
            await checkStatusAgainstData(ours, o.off, o.len, st);
            continue;
          }
          const [a, b] = await Promise.all([ours.run(cmd), theirs.run(cmd)]);
          if (!a.ok || !b.ok) throw new Error(`op ${i} ${JSON.stringify(o)}: ours ${a.ok ? "ok" : a.message ?? ""}, nbdkit ${b.ok ? "ok" : b.message ?? ""}`);
          if (o.op === "read" && a.hex !== b.hex) throw new Error(`op ${i} read ${o.off}+${o.len} differs from nbdkit`);
        }
        const [mine, ref] = await Promise.all([readAll(ours), readAll(theirs)]);
        if (!mine.equals(ref)) throw new Error("final disk contents differ from nbdkit");
        await checkStatusAgainstData(ours, 0, SIZE, await ours.ok({ op: "block_status", off: 0, len: SIZE }));
      }),
      { numRuns: 100 },
    );
  }, 120_000);
});
