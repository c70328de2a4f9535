/**
 * Changed-block tracking (GetChangedBlocks, modelled on CSI SnapshotMetadata).
 *
 * The centre is the apply-delta oracle of Kubernetes' snapshot-metadata-verifier:
 * restore the base (read the base snapshot's export), apply the reported
 * changes (DATA ranges read from the target's export, ZERO ranges zeroed), and
 * the result must equal the target byte for byte. Around it: TRIM, WRITE_ZEROES
 * and resize are reported; the stream's shape (order across messages,
 * max_results, constant header fields, alignment); starting_offset resume;
 * the documented errors; a deleted base; the live target; and the NBD dirty
 * bitmap agreeing with the RPC.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { SanboxError } from "../../../src/errors.js";
import { v1 } from "../../../src/rpc/proto.js";
import { NBD_META_QEMU_DIRTY_BITMAP_PREFIX, NBD_STATE_DIRTY } from "../../../src/nbd/constants.js";
import { drain, expectCode, firstDifference, must, violation } from "../assert.js";
import type { CheckContext, Lun, Snapshot } from "../context.js";
import { isZero, pattern } from "../data.js";
import type { Extent, FlaggedExtent } from "../../../src/extents/index.js";
import { flatten, fmt, fmtList, sameRanges, uncovered, union, type Message, type ReportedExtent } from "../extents.js";
import { describeArea } from "../registry.js";

const execFileP = promisify(execFile);

interface CbtSetup {
  lun: Lun;
  s1: Snapshot;
  s2: Snapshot;
  size: number;
  /** Ranges changed between s1 and s2, by kind. */
  written: Extent[];
  trimmed: Extent;
  zeroed: Extent;
}

async function changes(t: CheckContext, base: string, target: string, opts: { startingOffset?: number; maxResults?: number; lunId?: string } = {}): Promise<Message[]> {
  return drain(
    t.array.getChangedBlocks({
      baseSnapshotId: base,
      targetSnapshotId: target,
      ...(opts.lunId !== undefined ? { lunId: opts.lunId } : {}),
      startingOffset: opts.startingOffset ?? 0,
      maxResults: opts.maxResults ?? 0,
    }),
  );
}

async function readAll(t: CheckContext, snapshotId: string): Promise<Buffer> {
  const c = await t.open({ snapshotId });
  return c.read(0, c.size);
}

/** The oracle: base content + reported delta (read from the target) must equal the target. */
async function applyDelta(t: CheckContext, base: string, target: string, msgs: readonly Message[]): Promise<void> {
  const cap = msgs[0]?.volumeCapacityBytes ?? 0;
  const baseData = await readAll(t, base);
  const tc = await t.open({ snapshotId: target });
  must(cap === tc.size, `volume_capacity_bytes ${cap} differs from the target export size ${tc.size}`);
  const restored = Buffer.alloc(cap);
  baseData.copy(restored, 0, 0, Math.min(cap, baseData.length));
  for (const e of flatten(msgs)) {
    if (e.offset < 0 || e.offset + e.length > cap) violation(`extent ${fmt(e)} lies outside the volume (${cap} bytes)`);
    if (e.flag === "ZERO") restored.fill(0, e.offset, e.offset + e.length);
    else (await tc.read(e.offset, e.length)).copy(restored, e.offset);
  }
  const want = await tc.read(0, tc.size);
  const at = firstDifference(restored, want);
  if (at >= 0) {
    const bs = t.blockSize;
    const blk = Math.floor(at / bs) * bs;
    violation(
      `base + reported changes differs from the target at byte ${at} (block ${fmt({ offset: blk, length: bs })}); ` +
        `reported extents: ${fmtList(flatten(msgs))}`,
    );
  }
}

function checkShape(msgs: readonly Message[], opts: { capacity: number; maxResults: number; align: number; startingOffset: number }): ReportedExtent[] {
  must(msgs.length >= 1, "the stream sent no message (at least one is required, to carry volume_capacity_bytes)");
  const first = msgs[0];
  must(first !== undefined, "no first message");
  must(first.blockMetadataType !== v1.BlockMetadataType.BLOCK_METADATA_TYPE_UNKNOWN, "block_metadata_type is UNKNOWN");
  let prevEnd = -1;
  let prev: ReportedExtent | undefined;
  msgs.forEach((m, i) => {
    must(m.blockMetadataType === first.blockMetadataType, `message ${i} changes block_metadata_type (${first.blockMetadataType} -> ${m.blockMetadataType})`);
    must(m.volumeCapacityBytes === first.volumeCapacityBytes, `message ${i} changes volume_capacity_bytes (${first.volumeCapacityBytes} -> ${m.volumeCapacityBytes})`);
    if (opts.maxResults > 0) must(m.blockMetadata.length <= opts.maxResults, `message ${i} has ${m.blockMetadata.length} extents, max_results is ${opts.maxResults}`);
    for (const e of flatten([m])) {
      must(e.length > 0, `message ${i}: extent ${fmt(e)} is empty`);
      must(e.flag !== "UNSPECIFIED", `message ${i}: extent ${fmt(e)} has no type (DATA or ZERO)`);
      must(e.offset % opts.align === 0 && (e.length % opts.align === 0 || e.offset + e.length === opts.capacity), `message ${i}: extent ${fmt(e)} is not aligned to ${opts.align}`);
      must(e.offset >= 0 && e.offset + e.length <= opts.capacity, `message ${i}: extent ${fmt(e)} lies outside the volume (${opts.capacity} bytes)`);
      must(e.offset >= prevEnd, `message ${i}: extent ${fmt(e)} is not after the previous extent ${prev !== undefined ? fmt(prev) : ""} (extents must be ascending and non-overlapping across messages)`);
      prevEnd = e.offset + e.length;
      prev = e;
    }
  });
  must(first.volumeCapacityBytes === opts.capacity, `volume_capacity_bytes ${first.volumeCapacityBytes}, expected the target size ${opts.capacity}`);
  const flat = flatten(msgs);
  const early = flat.find((e) => e.offset + e.length <= opts.startingOffset);
  must(early === undefined, `extent ${early !== undefined ? fmt(early) : ""} ends at or before starting_offset ${opts.startingOffset}`);
  return flat;
}

/** Runs `nbdinfo --map=CONTEXT --json URI` (libnbd's tool); skips the check when it is not installed. */
async function nbdinfoMap(t: CheckContext, context: string, uri: string): Promise<FlaggedExtent<number>[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileP("nbdinfo", [`--map=${context}`, "--json", uri], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }));
  } catch (e: unknown) {
    if (e instanceof Error && "code" in e && e.code === "ENOENT") t.skip("nbdinfo is not installed (apt-get install libnbd-bin)");
    violation(`nbdinfo --map=${context} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const v: unknown = JSON.parse(stdout);
  if (!Array.isArray(v)) violation(`nbdinfo --map --json printed ${stdout.slice(0, 200)}`);
  return v.map((x: unknown) => {
    if (typeof x !== "object" || x === null) violation(`nbdinfo map entry ${JSON.stringify(x)}`);
    const o = x as Record<string, unknown>;
    if (typeof o.offset !== "number" || typeof o.length !== "number" || typeof o.type !== "number") violation(`nbdinfo map entry ${JSON.stringify(x)}`);
    return { offset: o.offset, length: o.length, flag: o.type }; // nbdinfo's "type" is the extent's state bits
  });
}

describeArea("cbt", (area) => {
  const setup = area.fixture(async (t): Promise<CbtSetup> => {
    const bs = t.blockSize;
    const size = bs * 128;
    const lun = await t.createLun("cbt", size);
    const live = await t.open({ lunId: lun.lunId });
    const blocks = (a: number, b: number): Extent => ({ offset: a * bs, length: (b - a) * bs });
    for (const r of [blocks(0, 4), blocks(10, 20), blocks(40, 42), blocks(60, 80)]) await live.write(r.offset, pattern(`${lun.name}/base/${r.offset}`, r.length));
    await live.flush();
    const s1 = await t.snapshotOne(lun.lunId, "cbt-base");
    const written = [{ offset: 2 * bs + 100, length: 512 }, blocks(30, 33), blocks(100, 102), blocks(127, 128)];
    for (const r of written) await live.write(r.offset, pattern(`${lun.name}/new/${r.offset}`, r.length));
    const trimmed = blocks(10, 13);
    const zeroed = blocks(60, 63);
    if (!live.canTrim || !live.canZero) violation("the LUN export does not offer TRIM and WRITE_ZEROES");
    await live.trim(trimmed.offset, trimmed.length);
    await live.zero(zeroed.offset, zeroed.length);
    await live.flush();
    const s2 = await t.snapshotOne(lun.lunId, "cbt-target");
    return { lun, s1, s2, size, written, trimmed, zeroed };
  });
  const opts = { requires: ["cbt"] as const };

  area.it(
    "cbt.apply-delta",
    "apply-delta oracle: the base snapshot plus the reported changed extents (DATA read from the target, ZERO as zeros) equals the target byte for byte",
    async (t) => {
      const s = await setup(t);
      await applyDelta(t, s.s1.snapshotId, s.s2.snapshotId, await changes(t, s.s1.snapshotId, s.s2.snapshotId));
    },
    opts,
  );

  area.it(
    "cbt.trim-zero-reported",
    "every change counts: writes, TRIM and WRITE_ZEROES between base and target are all covered by reported extents, and a ZERO extent reads as zeros in the target",
    async (t) => {
      const s = await setup(t);
      const flat = flatten(await changes(t, s.s1.snapshotId, s.s2.snapshotId));
      const u = union(flat);
      const gaps = (r: Extent): Extent[] => uncovered(u, r.offset, r.length);
      const tg = uncovered(u, s.trimmed.offset, s.trimmed.length);
      must(tg.length === 0, `trimmed range ${fmt(s.trimmed)} is not reported (missing ${fmtList(tg)}); reported: ${fmtList(flat)}`);
      const zg = gaps(s.zeroed);
      must(zg.length === 0, `zeroed range ${fmt(s.zeroed)} is not reported (missing ${fmtList(zg)}); reported: ${fmtList(flat)}`);
      for (const w of s.written) {
        const g = gaps(w);
        must(g.length === 0, `written range ${fmt(w)} is not reported (missing ${fmtList(g)})`);
      }
      const tc = await t.open({ snapshotId: s.s2.snapshotId });
      for (const e of flat.filter((x) => x.flag === "ZERO")) must(isZero(await tc.read(e.offset, e.length)), `extent ${fmt(e)} is typed ZERO but the target holds data there`);
    },
    opts,
  );

  area.it(
    "cbt.stream-order",
    "the stream is well formed: extents ascending and non-overlapping within and across messages, aligned, inside the volume, at most max_results per message, constant header fields; any max_results gives the same answer",
    async (t) => {
      const s = await setup(t);
      const shape = { capacity: s.size, align: t.blockSize, startingOffset: 0 };
      const full = checkShape(await changes(t, s.s1.snapshotId, s.s2.snapshotId), { ...shape, maxResults: 0 });
      must(full.length >= 3, `expected several changed extents, got ${fmtList(full)}`);
      for (const mr of [1, 2, 3]) {
        const msgs = await changes(t, s.s1.snapshotId, s.s2.snapshotId, { maxResults: mr });
        const got = checkShape(msgs, { ...shape, maxResults: mr });
        must(msgs.length >= Math.ceil(full.length / mr), `max_results ${mr}: ${msgs.length} messages for ${full.length} extents`);
        must(sameRanges(got, full), `max_results ${mr} gives ${fmtList(got)}, max_results 0 gives ${fmtList(full)}`);
      }
      await expectCode(() => changes(t, s.s1.snapshotId, s.s2.snapshotId, { maxResults: -1 }), "INVALID_ARGUMENT", "GetChangedBlocks(max_results -1)");
    },
    opts,
  );

  area.it(
    "cbt.starting-offset",
    "starting_offset S resumes: the stream holds exactly the extents of the full answer that end after S (the first may start before S); S = size is empty; S < 0 or S > size is OUT_OF_RANGE",
    async (t) => {
      const s = await setup(t);
      const base = s.s1.snapshotId;
      const target = s.s2.snapshotId;
      const full = flatten(await changes(t, base, target));
      const [e0, e1] = full;
      must(e0 !== undefined && e1 !== undefined, `expected at least two changed extents, got ${fmtList(full)}`);
      const last = full[full.length - 1] ?? e1;
      const points = [0, e0.offset + e0.length, e1.offset, e1.offset + Math.floor(e1.length / 2), Math.floor((e0.offset + e0.length + e1.offset) / 2), last.offset + 1, s.size];
      for (const S of points) {
        for (const maxResults of [0, 1]) {
          const msgs = await changes(t, base, target, { startingOffset: S, maxResults });
          const got = checkShape(msgs, { capacity: s.size, align: 1, maxResults, startingOffset: S });
          const want = full.filter((e) => e.offset + e.length > S);
          const clip = (l: readonly Extent[]): Extent[] => union(l.map((e) => ({ offset: Math.max(e.offset, S), length: e.offset + e.length - Math.max(e.offset, S) })));
          must(sameRanges(clip(got), clip(want)), `starting_offset ${S} (max_results ${maxResults}) gives ${fmtList(got)}, expected ${fmtList(want)}`);
        }
      }
      await expectCode(() => changes(t, base, target, { startingOffset: -1 }), "OUT_OF_RANGE", "GetChangedBlocks(starting_offset -1)");
      await expectCode(() => changes(t, base, target, { startingOffset: s.size + t.blockSize }), "OUT_OF_RANGE", "GetChangedBlocks(starting_offset beyond the volume)");
    },
    opts,
  );

  area.it(
    "cbt.errors",
    "GetChangedBlocks errors: a base newer than the target is INVALID_ARGUMENT, an unknown base NOT_FOUND, a target not of lun_id INVALID_ARGUMENT, a base of another LUN CBT_UNAVAILABLE",
    async (t) => {
      const s = await setup(t);
      await expectCode(() => changes(t, s.s2.snapshotId, s.s1.snapshotId), "INVALID_ARGUMENT", "GetChangedBlocks(base newer than target)");
      await expectCode(() => changes(t, t.name("no-such-snap"), s.s2.snapshotId), ["NOT_FOUND", "CBT_UNAVAILABLE"], "GetChangedBlocks(unknown base)");
      await expectCode(() => changes(t, s.s1.snapshotId, t.name("no-such-snap")), "NOT_FOUND", "GetChangedBlocks(unknown target)");
      await expectCode(() => changes(t, "", s.s2.snapshotId), "INVALID_ARGUMENT", "GetChangedBlocks(no base)");
      const other = await t.createLun("cbt-other", t.blockSize * 4);
      const os = await t.snapshotOne(other.lunId);
      await expectCode(() => changes(t, s.s1.snapshotId, s.s2.snapshotId, { lunId: other.lunId }), "INVALID_ARGUMENT", "GetChangedBlocks(target not a snapshot of lun_id)");
      await expectCode(() => changes(t, os.snapshotId, s.s2.snapshotId), ["CBT_UNAVAILABLE", "INVALID_ARGUMENT"], "GetChangedBlocks(base of another LUN)");
    },
    opts,
  );

  area.it(
    "cbt.resize-reported",
    "resize counts as a change: after a shrink and a regrow the discarded tail is reported (and reads as zeros), growth reports the new size as volume_capacity_bytes, and the apply-delta oracle holds across sizes",
    async (t) => {
      const bs = t.blockSize;
      const lun = await t.createLun("cbt-resize", bs * 32);
      const c1 = await t.open({ lunId: lun.lunId });
      await c1.write(0, pattern(`${lun.name}/full`, bs * 32));
      await c1.flush();
      const a = await t.snapshotOne(lun.lunId, "rs-a");
      await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 16 });
      await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 32 });
      const b = await t.snapshotOne(lun.lunId, "rs-b");
      const ab = await changes(t, a.snapshotId, b.snapshotId);
      const flat = checkShape(ab, { capacity: bs * 32, align: bs, maxResults: 0, startingOffset: 0 });
      const gap = uncovered(union(flat), bs * 16, bs * 16);
      must(gap.length === 0, `the range cut off by the shrink ${fmt({ offset: bs * 16, length: bs * 16 })} is not reported (missing ${fmtList(gap)})`);
      await applyDelta(t, a.snapshotId, b.snapshotId, ab);
      await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 48 });
      const c2 = await t.open({ lunId: lun.lunId });
      await c2.write(bs * 40, pattern(`${lun.name}/grown`, bs));
      await c2.flush();
      const c = await t.snapshotOne(lun.lunId, "rs-c");
      const bc = await changes(t, b.snapshotId, c.snapshotId);
      const flat2 = checkShape(bc, { capacity: bs * 48, align: bs, maxResults: 0, startingOffset: 0 });
      must(uncovered(union(flat2), bs * 40, bs).length === 0, `a write in the grown area at ${fmt({ offset: bs * 40, length: bs })} is not reported: ${fmtList(flat2)}`);
      await applyDelta(t, b.snapshotId, c.snapshotId, bc);
    },
    { requires: ["cbt", "resize"] },
  );

  area.it(
    "cbt.live-target",
    "with an empty target and lun_id, GetChangedBlocks diffs against the live LUN and reports a write made after the base",
    async (t) => {
      const s = await setup(t);
      const bs = t.blockSize;
      const lun = await t.createLun("cbt-live", bs * 16);
      const c = await t.open({ lunId: lun.lunId });
      const base = await t.snapshotOne(lun.lunId, "live-base");
      await c.write(bs * 5, pattern("live", bs));
      await c.flush();
      const flat = flatten(await drain(t.array.getChangedBlocks({ baseSnapshotId: base.snapshotId, lunId: lun.lunId })));
      must(uncovered(union(flat), bs * 5, bs).length === 0, `a live write at ${fmt({ offset: bs * 5, length: bs })} is not reported: ${fmtList(flat)}`);
      await expectCode(() => drain(t.array.getChangedBlocks({ baseSnapshotId: s.s1.snapshotId })), "INVALID_ARGUMENT", "GetChangedBlocks(no target, no lun_id)");
    },
    { requires: ["cbt", "cbtLiveTarget"] },
  );

  area.it(
    "cbt.dirty-bitmap",
    "the snapshot export's qemu:dirty-bitmap:<base> meta context marks dirty exactly the ranges GetChangedBlocks(base, snapshot) reports",
    async (t) => {
      const s = await setup(t);
      const ctxName = `${NBD_META_QEMU_DIRTY_BITMAP_PREFIX}${s.s1.snapshotId}`;
      const c = await t.open({ snapshotId: s.s2.snapshotId }, { metaContexts: [ctxName] });
      const dirty: Extent[] = [];
      for await (const e of c.extents(ctxName)) if ((e.flag & NBD_STATE_DIRTY) !== 0) dirty.push({ offset: e.offset, length: e.length });
      const flat = flatten(await changes(t, s.s1.snapshotId, s.s2.snapshotId));
      must(sameRanges(dirty, flat), `dirty bitmap ${fmtList(union(dirty))} differs from GetChangedBlocks ${fmtList(union(flat))}`);
    },
    { requires: ["cbt", "nbdDirtyBitmaps"] },
  );

  area.it(
    "cbt.nbdinfo-map",
    "stock tools read the array's CBT: `nbdinfo --map=qemu:dirty-bitmap:<base> URI` on the target's export shows dirty exactly what GetChangedBlocks reports",
    async (t) => {
      const s = await setup(t);
      const exp = await t.exportOf({ snapshotId: s.s2.snapshotId });
      const map = await nbdinfoMap(t, `${NBD_META_QEMU_DIRTY_BITMAP_PREFIX}${s.s1.snapshotId}`, exp.uri);
      const dirty = map.filter((e) => (e.flag & NBD_STATE_DIRTY) !== 0);
      const flat = flatten(await changes(t, s.s1.snapshotId, s.s2.snapshotId));
      must(sameRanges(dirty, flat), `nbdinfo --map shows dirty ${fmtList(union(dirty))}, GetChangedBlocks reports ${fmtList(union(flat))}`);
    },
    { requires: ["cbt", "nbdDirtyBitmaps"] },
  );

  area.it(
    "cbt.deleted-base",
    "a deleted base gets the documented answer: with cbt_from_deleted_base the diff still answers (at least the changes it reported before), otherwise NOT_FOUND or CBT_UNAVAILABLE",
    async (t) => {
      const bs = t.blockSize;
      const lun = await t.createLun("cbt-del", bs * 16);
      const c = await t.open({ lunId: lun.lunId });
      await c.write(0, pattern("del/base", bs * 4));
      await c.flush();
      const a = await t.snapshotOne(lun.lunId, "del-a");
      await c.write(bs * 8, pattern("del/new", bs * 2));
      await c.flush();
      const b = await t.snapshotOne(lun.lunId, "del-b");
      const before = flatten(await changes(t, a.snapshotId, b.snapshotId));
      await t.array.deleteSnapshot({ snapshotId: a.snapshotId });
      if (t.claims("cbtFromDeletedBase")) {
        let after: ReportedExtent[];
        try {
          after = flatten(await changes(t, a.snapshotId, b.snapshotId));
        } catch (e: unknown) {
          violation(`the array claims cbt_from_deleted_base but GetChangedBlocks(deleted base) failed: ${e instanceof SanboxError ? e.code : ""} ${e instanceof Error ? e.message : String(e)}`);
        }
        for (const r of before) must(uncovered(union(after), r.offset, r.length).length === 0, `after deleting the base, the change ${fmt(r)} is no longer reported: ${fmtList(after)}`);
      } else {
        await expectCode(() => changes(t, a.snapshotId, b.snapshotId), ["NOT_FOUND", "CBT_UNAVAILABLE"], "GetChangedBlocks(deleted base) without cbt_from_deleted_base");
      }
    },
    opts,
  );
});
