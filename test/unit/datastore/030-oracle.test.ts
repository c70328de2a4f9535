// The dependent-write stamps, the workload generator and journal, and the consistency oracle.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileBackend } from "../../../src/nbd/backends/file-backend.js";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import { Prng } from "../../../src/oracle/prng.js";
import { STAMP_SIZE, classifyBlock, decodeDescriptor, encodeDescriptor, encodeStamp, type WorkloadSpec } from "../../../src/oracle/stamp.js";
import { verifyConsistency, describeViolation, type NamedImage } from "../../../src/oracle/verify.js";
import { Journal, Workload, type WorkloadOp } from "../../../src/oracle/workload.js";

const KiB = 1024;
const RDM = "naa.6" + "0123456789abcdef0123456789a".padEnd(29, "f");
const spec: WorkloadSpec = {
  seed: 42,
  vm: "vm1",
  disks: [
    { id: "scsi0:0", kind: "vmdk", size: 256 * KiB, maxSize: 1024 * KiB },
    { id: "scsi0:1", kind: "vmdk", size: 128 * KiB },
    { id: RDM, kind: "rdm", size: 256 * KiB },
  ],
};

function run(n: number, s: WorkloadSpec = spec): Journal {
  const j = new Journal(new Workload(s));
  for (let i = 0; i < n; i++) j.ack(j.workload.next());
  return j;
}

function images(j: Journal, at: (diskId: string) => number): NamedImage[] {
  return j.workload.spec.disks.map((d) => ({ name: `${d.id}.img`, source: MemoryBackend.fromBuffer(j.imageAt(at(d.id), d.id)) }));
}

describe("stamps", () => {
  it("the PRNG sequence is fixed forever (it is part of the stamp format)", () => {
    const p = new Prng(1);
    expect([p.u32(), p.u32(), p.u32()]).toEqual(GOLDEN);
  });

  it("round trip, zero blocks, torn blocks", () => {
    const d = encodeDescriptor(spec);
    expect(decodeDescriptor(d)).toEqual({ ...spec, disks: spec.disks.map((x) => ({ ...x, maxSize: x.maxSize ?? x.size })) });
    const s = encodeStamp(d, 2, 77, 8 * STAMP_SIZE);
    const c = classifyBlock(s);
    expect(c.kind === "stamp" && c.stamp).toMatchObject({ diskIndex: 2, seq: 77, offset: 8 * STAMP_SIZE });
    expect(classifyBlock(Buffer.alloc(STAMP_SIZE)).kind).toBe("zero");
    // A torn write: the first half of a newer stamp over an older one.
    const newer = encodeStamp(d, 2, 99, 8 * STAMP_SIZE);
    const torn = Buffer.concat([newer.subarray(0, 2048), s.subarray(2048)]);
    expect(classifyBlock(torn)).toMatchObject({ kind: "torn" });
    const flipped = Buffer.from(s);
    flipped[4000] = (flipped[4000] ?? 0) ^ 1;
    expect(classifyBlock(flipped)).toMatchObject({ kind: "torn" });
  });

  it("the workload is deterministic, covers every disk, and trims, overwrites and grows", () => {
    const a = new Workload(spec).take(2000);
    expect(new Workload(spec).take(2000)).toEqual(a);
    const kinds = new Set(a.map((o) => o.kind));
    expect(kinds).toEqual(new Set(["write", "trim", "grow"]));
    expect(new Set(a.map((o) => o.disk))).toEqual(new Set([0, 1, 2]));
    const writes = a.filter((o): o is Extract<WorkloadOp, { kind: "write" }> => o.kind === "write");
    expect(new Set(writes.map((w) => `${w.disk}:${w.offset}`)).size).toBeLessThan(writes.length);
    for (const o of a) if (o.kind === "grow") expect(o.disk).toBe(0);
  });
});

describe("verifyConsistency", () => {
  it("images built from the journal at sequence N pass, with N", async () => {
    const j = run(600);
    for (const n of [1, 5, 37, 250, 600]) {
      const r = await verifyConsistency(images(j, () => n));
      expect(r.violations.map(describeViolation)).toEqual([]);
      expect(r.consistent).toBe(true);
      expect(r.prefix).toBeGreaterThanOrEqual(n);
      // Any larger prefix reported must describe the same disk contents.
      const same = run(Math.max(r.prefix, n));
      for (const d of spec.disks) expect(same.imageAt(r.prefix, d.id).subarray(0, j.imageAt(n, d.id).length).equals(j.imageAt(n, d.id))).toBe(true);
      expect(r.vm).toBe("vm1");
      expect(r.disks.map((d) => d.image)).toEqual(spec.disks.map((d) => `${d.id}.img`));
    }
  });

  it("a VMDK image taken later than the RDM image (no revert) fails, naming the offsets", async () => {
    const j = run(400);
    const t1 = 200;
    const t2 = 400;
    const r = await verifyConsistency(images(j, (id) => (id === RDM ? t1 : t2)));
    expect(r.consistent).toBe(false);
    expect(r.violations.length).toBeGreaterThan(0);
    const touched = new Set(j.ops.filter((o) => o.seq > t1 && o.seq <= t2 && o.kind !== "grow").flatMap((o) => (o.kind === "grow" ? [] : Array.from({ length: o.length / STAMP_SIZE }, (_, k) => `${o.diskId}@${o.offset + k * STAMP_SIZE}`))));
    for (const v of r.violations) expect(touched.has(`${v.disk}@${v.offset}`), describeViolation(v)).toBe(true);
    // With the revert (VMDKs brought back to T1) the set is consistent again.
    expect((await verifyConsistency(images(j, () => t1))).consistent).toBe(true);
  });

  it("empty disks: all-empty images, and a disk the workload has not reached yet", async () => {
    const blank = spec.disks.map((d) => ({ name: d.id, source: new MemoryBackend(d.size) }));
    const r = await verifyConsistency(blank);
    expect(r).toMatchObject({ consistent: true, prefix: 0, maxSeq: 0 });
    const withSpec = await verifyConsistency(blank, { spec });
    expect(withSpec.consistent).toBe(true);
    // The first write that lands on disk 1 or 2: before it, those disks are empty.
    const j = run(50);
    const n = (j.ops.find((o) => o.kind === "write" && o.disk !== 0)?.seq ?? 2) - 1;
    const r2 = await verifyConsistency(images(j, () => n));
    expect(r2.consistent).toBe(true);
    expect(r2.prefix).toBeGreaterThanOrEqual(n);
  });

  it("a trimmed stamp reads as zeros; a trim that did not happen is a violation", async () => {
    const j = run(600);
    // A trim that erased a block holding a stamp.
    let found: { op: Extract<WorkloadOp, { kind: "trim" }>; offset: number } | undefined;
    for (const o of j.ops) {
      if (o.kind !== "trim") continue;
      const before = j.expectedAt(o.seq - 1)[o.disk]!;
      const hit = [...before.blocks.keys()].find((off) => off >= o.offset && off < o.offset + o.length);
      const next = j.ops[o.seq];
      // The next operation is a write elsewhere, so "trim lost" matches no prefix.
      if (hit !== undefined && next?.kind === "write" && !(next.disk === o.disk && next.offset === hit)) {
        found = { op: o, offset: hit };
        break;
      }
    }
    expect(found).toBeDefined();
    const { op, offset } = found!;
    const ok = await verifyConsistency(images(j, () => op.seq));
    expect(ok.consistent).toBe(true);
    const imgs = images(j, () => op.seq + 1);
    const target = imgs[op.disk]!.source as MemoryBackend;
    await target.write(offset, j.imageAt(op.seq - 1, op.diskId).subarray(offset, offset + STAMP_SIZE));
    const bad = await verifyConsistency(imgs);
    expect(bad.consistent).toBe(false);
    expect(bad.violations).toContainEqual(expect.objectContaining({ disk: op.diskId, offset, expectedSeq: 0 }));
  });

  it("a multi-block trim in flight at the cut (partly applied) is still consistent", async () => {
    const j = run(600);
    const t = j.ops.find((o) => o.kind === "trim" && [...j.expectedAt(o.seq - 1)[o.disk]!.blocks.keys()].filter((off) => off >= o.offset && off < o.offset + o.length).length >= 2);
    expect(t).toBeDefined();
    if (t === undefined || t.kind !== "trim") return;
    const hit = [...j.expectedAt(t.seq - 1)[t.disk]!.blocks.keys()].filter((off) => off >= t.offset && off < t.offset + t.length);
    const imgs = images(j, () => t.seq - 1);
    const h = hit[0] ?? 0;
    await (imgs[t.disk]!.source as MemoryBackend).write(h, Buffer.alloc(STAMP_SIZE));
    const r = await verifyConsistency(imgs);
    expect(r).toMatchObject({ consistent: true, prefix: t.seq - 1, inFlight: t.seq });
  });

  it("a torn stamp inside a block, and a block moved to the wrong offset", async () => {
    const j = run(300);
    const imgs = images(j, () => 300);
    const disk0 = imgs[0]!.source as MemoryBackend;
    const exp = j.expectedAt(300)[0]!;
    const [offset, seq] = [...exp.blocks][0]!;
    await disk0.write(offset + 1000, Buffer.alloc(100, 0xee));
    const r = await verifyConsistency(imgs);
    expect(r.consistent).toBe(false);
    expect(r.violations).toHaveLength(1);
    expect(r.violations[0]).toMatchObject({ disk: "scsi0:0", offset, expectedSeq: seq, found: { kind: "torn" } });
    expect(describeViolation(r.violations[0]!)).toMatch(/torn/);

    const imgs2 = images(j, () => 300);
    const d1 = imgs2[1]!.source as MemoryBackend;
    const exp1 = j.expectedAt(300)[1]!;
    const [from] = [...exp1.blocks][0]!;
    const free = Array.from({ length: d1.size / STAMP_SIZE }, (_, i) => i * STAMP_SIZE).find((o) => !exp1.blocks.has(o))!;
    await d1.write(free, await d1.read(from, STAMP_SIZE));
    const r2 = await verifyConsistency(imgs2);
    expect(r2.violations.some((v) => v.disk === "scsi0:1" && v.offset === free && v.found.kind === "foreign")).toBe(true);
  });

  it("reads raw image files", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sanbox-oracle-"));
    try {
      const j = run(120);
      const named: NamedImage[] = [];
      for (const d of spec.disks) {
        const p = join(dir, `${d.id}.raw`);
        await writeFile(p, j.imageAt(120, d.id));
        named.push({ name: p, source: await FileBackend.open(p, { readOnly: true }) });
      }
      const r = await verifyConsistency(named, { chunkSize: 64 * KiB });
      expect(r.consistent).toBe(true);
      expect(r.prefix).toBeGreaterThanOrEqual(120);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const GOLDEN = [1828152527, 3394835397, 2967886022];
