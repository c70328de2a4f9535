/**
 * Allocated extents (GetAllocatedBlocks, CSI GetMetadataAllocated): every byte
 * that holds data lies in a reported extent, everything outside reads as
 * zeros, a fresh LUN reports nothing, and the stream has the CBT shape
 * (ascending, starting_offset resume).
 */
import { drain, expectCode, must } from "../assert.js";
import { isZero, pattern } from "../data.js";
import type { Extent } from "../../../src/extents/index.js";
import { flatten, fmt, fmtList, uncovered, union } from "../extents.js";
import { describeArea } from "../registry.js";

describeArea("allocated", (area) => {
  area.it("allocated.extents", "GetAllocatedBlocks covers every written range, everything outside its extents reads as zeros, and a fresh LUN reports no data", async (t) => {
    const bs = t.blockSize;
    const size = bs * 32;
    const lun = await t.createLun("alloc", size);
    const fresh = flatten(await drain(t.array.getAllocatedBlocks({ lunId: lun.lunId })));
    must(fresh.every((e) => e.flag === "ZERO"), `a fresh LUN reports allocated data: ${fmtList(fresh)}`);
    const c = await t.open({ lunId: lun.lunId });
    const written: Extent[] = [
      { offset: bs * 3, length: bs * 2 },
      { offset: bs * 10 + 512, length: 1024 },
      { offset: bs * 31, length: bs },
    ];
    for (const w of written) await c.write(w.offset, pattern(`alloc/${w.offset}`, w.length));
    await c.flush();
    const s = await t.snapshotOne(lun.lunId);
    const msgs = await drain(t.array.getAllocatedBlocks({ snapshotId: s.snapshotId }));
    const flat = flatten(msgs);
    must(msgs[0]?.volumeCapacityBytes === size, `volume_capacity_bytes ${msgs[0]?.volumeCapacityBytes ?? "missing"}, expected ${size}`);
    let prevEnd = 0;
    for (const e of flat) {
      must(e.offset >= prevEnd, `extent ${fmt(e)} is not ascending/non-overlapping`);
      prevEnd = e.offset + e.length;
    }
    const u = union(flat.filter((e) => e.flag !== "ZERO"));
    for (const w of written) must(uncovered(u, w.offset, w.length).length === 0, `written range ${fmt(w)} is not reported as allocated: ${fmtList(flat)}`);
    const snap = await t.open({ snapshotId: s.snapshotId });
    for (const gap of uncovered(u, 0, size)) must(isZero(await snap.read(gap.offset, gap.length)), `range ${fmt(gap)} is reported unallocated but holds data`);
    const live = flatten(await drain(t.array.getAllocatedBlocks({ lunId: lun.lunId })));
    must(uncovered(union(live), bs * 3, bs * 2).length === 0, "the live LUN does not report its written range as allocated");
  });

  area.it("allocated.starting-offset", "GetAllocatedBlocks honours starting_offset (extents ending at or before it are left out) and max_results; an unknown snapshot is NOT_FOUND", async (t) => {
    const bs = t.blockSize;
    const lun = await t.createLun("alloc-so", bs * 16);
    const c = await t.open({ lunId: lun.lunId });
    for (const b of [1, 5, 9]) await c.write(bs * b, pattern(`so/${b}`, bs));
    await c.flush();
    const s = await t.snapshotOne(lun.lunId);
    const full = flatten(await drain(t.array.getAllocatedBlocks({ snapshotId: s.snapshotId })));
    const S = bs * 5;
    const msgs = await drain(t.array.getAllocatedBlocks({ snapshotId: s.snapshotId, startingOffset: S, maxResults: 1 }));
    for (const m of msgs) must(m.blockMetadata.length <= 1, `a message has ${m.blockMetadata.length} extents with max_results 1`);
    const got = flatten(msgs);
    must(got.every((e) => e.offset + e.length > S), `starting_offset ${S}: got ${fmtList(got)}, which includes extents ending before it`);
    const want = full.filter((e) => e.offset + e.length > S);
    must(got.length === want.length, `starting_offset ${S}: got ${fmtList(got)}, expected ${fmtList(want)}`);
    await expectCode(() => drain(t.array.getAllocatedBlocks({ snapshotId: t.name("no-such-snap") })), "NOT_FOUND", "GetAllocatedBlocks(unknown snapshot)");
  });
});
