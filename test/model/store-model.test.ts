/**
 * Model-based test of the array block store: random operation sequences run against
 * the store and against a plain reference model (a byte buffer per LUN and per
 * snapshot), checking after every step that
 *  - every LUN and snapshot reads back exactly as the model;
 *  - changedExtents(base, target) has no missed change and no extra block:
 *      must-report = blocks whose content differs between base and target,
 *      may-report  = blocks touched (written, zeroed, trimmed, shrunk away, reverted)
 *                    after the base in the target's history;
 *    a ZERO extent reads as zeros in the target; a block with data is flagged DATA;
 *    CbtUnavailable/InvalidArgument exactly when the model says the pair is unrelated;
 *  - allocatedExtents covers every non-zero block;
 *  - the invariant checker passes (strict mode runs it after every management op too).
 * Blocks are 4 KiB on LUNs of at most 96 KiB, so each run is cheap and runs are many.
 */
import fc from "fast-check";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../src/errors.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../src/nbd/constants.js";
import { ArrayStore } from "../../simulator/array/index.js";

const BS = 4096;

interface MLun {
  id: string;
  name: string;
  data: Buffer;
  events: { stamp: number; block: number }[];
  parent: { lun: MLun; stamp: number } | null;
  /** The snapshot this LUN was cloned from: while the LUN's line is in use, it pins that snapshot. */
  origin: MSnap | null;
  alive: boolean;
}
interface MSnap {
  id: string;
  name: string;
  lun: MLun;
  stamp: number;
  data: Buffer;
  group: string | null;
  ready: boolean;
}
interface MGroup {
  id: string;
  name: string;
  luns: MLun[];
  snaps: MSnap[];
}

type Op =
  | { t: "create"; blocks: number }
  | { t: "write"; l: number; o: number; n: number; seed: number; fua: boolean }
  | { t: "zero"; l: number; o: number; n: number; trim: boolean }
  | { t: "snap"; l: number; name: number }
  | { t: "group"; a: number; b: number; name: number }
  | { t: "delsnap"; s: number }
  | { t: "delgroup"; g: number }
  | { t: "revert"; l: number; s: number }
  | { t: "clone"; s: number }
  | { t: "resize"; l: number; blocks: number }
  | { t: "dellun"; l: number }
  | { t: "reopen" }
  | { t: "flush" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ t: fc.constant("create" as const), blocks: fc.integer({ min: 1, max: 16 }) }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant("write" as const), l: fc.nat(), o: fc.nat(), n: fc.integer({ min: 1, max: 3 * BS }), seed: fc.integer({ min: 1, max: 250 }), fua: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("zero" as const), l: fc.nat(), o: fc.nat(), n: fc.integer({ min: 1, max: 5 * BS }), trim: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("snap" as const), l: fc.nat(), name: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("group" as const), a: fc.nat(), b: fc.nat(), name: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("delsnap" as const), s: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("delgroup" as const), g: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("revert" as const), l: fc.nat(), s: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("clone" as const), s: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("resize" as const), l: fc.nat(), blocks: fc.integer({ min: 1, max: 24 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("dellun" as const), l: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("reopen" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("flush" as const) }) },
);

function pick<T>(xs: T[], i: number): T | undefined {
  return xs.length === 0 ? undefined : xs[i % xs.length];
}
function fill(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = ((i * 7 + seed) % 251) + 1; // never zero
  return b;
}
function blockOf(buf: Buffer, b: number): Buffer {
  const out = Buffer.alloc(BS);
  if (b * BS < buf.length) buf.copy(out, 0, b * BS, Math.min(buf.length, (b + 1) * BS));
  return out;
}
function isZero(b: Buffer): boolean {
  return b.every((x) => x === 0);
}
async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SanboxError && e.code === code) return;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

class Harness {
  dir: string;
  store: ArrayStore;
  luns: MLun[] = [];
  snaps: MSnap[] = [];
  groups: MGroup[] = [];
  stamp = 0;
  nextName = 0;
  constructor(dir: string, store: ArrayStore) {
    this.dir = dir;
    this.store = store;
  }
  live(): MLun[] {
    return this.luns.filter((l) => l.alive);
  }
  ready(): MSnap[] {
    return this.snaps.filter((s) => s.ready);
  }
  touch(l: MLun, b0: number, b1: number): void {
    const s = ++this.stamp;
    for (let b = b0; b < b1; b++) l.events.push({ stamp: s, block: b });
  }

  async apply(op: Op): Promise<void> {
    const st = this.store;
    switch (op.t) {
      case "create": {
        if (this.live().length >= 4) return;
        const name = `l${this.nextName++}`;
        const info = await st.createLun({ name, size: op.blocks * BS, blockSize: BS });
        this.luns.push({ id: info.id, name, data: Buffer.alloc(op.blocks * BS), events: [], parent: null, origin: null, alive: true });
        return;
      }
      case "write": {
        const l = pick(this.live(), op.l);
        if (!l) return;
        const o = op.o % l.data.length;
        const n = Math.min(op.n, l.data.length - o);
        const d = fill(n, op.seed);
        await st.openVolume({ lun: l.id }).write(o, d, { fua: op.fua });
        d.copy(l.data, o);
        this.touch(l, Math.floor(o / BS), Math.ceil((o + n) / BS));
        return;
      }
      case "zero": {
        const l = pick(this.live(), op.l);
        if (!l) return;
        const o = op.o % l.data.length;
        const n = Math.min(op.n, l.data.length - o);
        const v = st.openVolume({ lun: l.id });
        await (op.trim ? v.trim(o, n) : v.zero(o, n));
        l.data.fill(0, o, o + n);
        this.touch(l, Math.floor(o / BS), Math.ceil((o + n) / BS));
        return;
      }
      case "snap": {
        const l = pick(this.live(), op.l);
        if (!l) return;
        const name = `s${op.name}`;
        const existing = this.ready().find((s) => s.name === name);
        if (existing && (existing.lun !== l || existing.group)) return expectCode(st.createSnapshot({ lun: l.id, name }), "ALREADY_EXISTS");
        const info = await st.createSnapshot({ lun: l.id, name });
        if (existing) {
          expect(info.id).toBe(existing.id);
          return;
        }
        this.snaps.push({ id: info.id, name, lun: l, stamp: ++this.stamp, data: Buffer.from(l.data), group: null, ready: true });
        return;
      }
      case "group": {
        const a = pick(this.live(), op.a);
        const b = pick(this.live(), op.b);
        if (!a || !b) return;
        const members = a === b ? [a] : [a, b];
        const name = `g${op.name}`;
        const existing = this.groups.find((g) => g.name === name);
        if (existing) {
          const same = existing.luns.length === members.length && members.every((m) => existing.luns.includes(m));
          if (!same) return expectCode(st.createGroupSnapshot({ name, luns: members.map((m) => m.id) }), "ALREADY_EXISTS");
          expect((await st.createGroupSnapshot({ name, luns: members.map((m) => m.id) })).id).toBe(existing.id);
          return;
        }
        const info = await st.createGroupSnapshot({ name, luns: members.map((m) => m.id) });
        const cutStamp = ++this.stamp;
        const snaps = info.members.map((mi, i) => {
          const m = members[i] as MLun;
          expect(mi.lunId).toBe(m.id);
          return { id: mi.id, name: mi.name, lun: m, stamp: cutStamp, data: Buffer.from(m.data), group: info.id, ready: true };
        });
        this.snaps.push(...snaps);
        this.groups.push({ id: info.id, name, luns: members, snaps });
        return;
      }
      case "delsnap": {
        const s = pick(this.ready(), op.s);
        if (!s) return;
        if (s.group) return expectCode(st.deleteSnapshot(s.id), "FAILED_PRECONDITION");
        await st.deleteSnapshot(s.id);
        s.ready = false;
        return;
      }
      case "delgroup": {
        const g = pick(this.groups, op.g);
        if (!g) return;
        await st.deleteGroupSnapshot(g.id);
        for (const s of g.snaps) s.ready = false;
        this.groups = this.groups.filter((x) => x !== g);
        return;
      }
      case "revert": {
        const l = pick(this.live(), op.l);
        const s = pick(this.ready(), op.s);
        if (!l || !s) return;
        if (s.lun !== l) return expectCode(st.revertLun(l.id, s.id), "INVALID_ARGUMENT");
        await st.revertLun(l.id, s.id);
        const since = new Set(l.events.filter((e) => e.stamp > s.stamp).map((e) => e.block));
        const stamp = ++this.stamp;
        for (const b of since) l.events.push({ stamp, block: b });
        l.data = Buffer.from(s.data);
        return;
      }
      case "clone": {
        const s = pick(this.ready(), op.s);
        if (!s || this.live().length >= 4) return;
        const name = `l${this.nextName++}`;
        const info = await st.cloneSnapshot({ snapshot: s.id, name });
        this.luns.push({ id: info.id, name, data: Buffer.from(s.data), events: [], parent: { lun: s.lun, stamp: s.stamp }, origin: s, alive: true });
        return;
      }
      case "resize": {
        const l = pick(this.live(), op.l);
        if (!l) return;
        const size = op.blocks * BS;
        await st.resizeLun(l.id, size);
        if (size < l.data.length) this.touch(l, op.blocks, l.data.length / BS);
        const d = Buffer.alloc(size);
        l.data.copy(d, 0, 0, Math.min(size, l.data.length));
        l.data = d;
        return;
      }
      case "dellun": {
        const l = pick(this.live(), op.l);
        if (!l) return;
        if (this.ready().some((s) => s.lun === l)) return expectCode(st.deleteLun(l.id), "FAILED_PRECONDITION");
        await st.deleteLun(l.id);
        l.alive = false;
        return;
      }
      case "reopen":
        await st.close();
        this.store = await ArrayStore.open(this.dir, { strict: true });
        return;
      case "flush":
        await st.flush();
        return;
    }
  }

  /** Blocks touched after base in the history of (lun, upTo), or "unrelated"/"newer". */
  mayReport(base: MSnap, lun: MLun, upTo: number): Set<number> | "unrelated" | "newer" {
    const out = new Set<number>();
    let L: MLun = lun;
    let x = upTo;
    let first = true;
    for (;;) {
      if (L === base.lun) {
        if (base.stamp > x) return first ? "newer" : "unrelated";
        for (const e of L.events) if (e.stamp > base.stamp && e.stamp <= x) out.add(e.block);
        return out;
      }
      for (const e of L.events) if (e.stamp <= x) out.add(e.block);
      if (!L.parent) return "unrelated";
      x = L.parent.stamp;
      L = L.parent.lun;
      first = false;
    }
  }

  async verify(): Promise<void> {
    const st = this.store;
    for (const l of this.live()) {
      const v = st.openVolume({ lun: l.id });
      expect(v.size).toBe(l.data.length);
      expect((await v.read(0, l.data.length)).equals(l.data)).toBe(true);
      // base:allocation: a hole must read as zeros; every extent is flagged consistently.
      let pos = 0;
      for (const e of v.blockStatus(0, l.data.length)) {
        expect(e.offset).toBe(pos);
        expect([0, NBD_STATE_HOLE | NBD_STATE_ZERO]).toContain(e.flag); // HOLE and ZERO come together
        if (e.flag !== 0) expect(isZero(l.data.subarray(e.offset, e.offset + e.length))).toBe(true);
        pos = e.offset + e.length;
      }
      expect(pos).toBe(l.data.length);
      const alloc = st.allocatedExtents({ lun: l.id }).extents;
      for (let b = 0; b < l.data.length / BS; b++) {
        if (!isZero(blockOf(l.data, b))) expect(alloc.some((e) => e.offset <= b * BS && b * BS < e.offset + e.length)).toBe(true);
      }
    }
    for (const s of this.ready()) {
      expect((await st.openVolume({ snapshot: s.id }).read(0, s.data.length)).equals(s.data)).toBe(true);
    }
    // CBT for every (base, target) pair whose base is still tracked by the store.
    const bases = this.snaps.filter((s) => s.lun.alive);
    const targets: { what: { lun: string } | { snapshot: string }; lun: MLun; stamp: number; data: Buffer }[] = [
      ...this.live().map((l) => ({ what: { lun: l.id }, lun: l, stamp: this.stamp, data: l.data })),
      ...this.ready().map((s) => ({ what: { snapshot: s.id }, lun: s.lun, stamp: s.stamp, data: s.data })),
    ];
    for (const base of bases) {
      for (const t of targets) {
        const may = this.mayReport(base, t.lun, t.stamp);
        if (may === "unrelated") {
          expect(() => st.changedExtents(base.id, t.what)).toThrow(expect.objectContaining({ code: "CBT_UNAVAILABLE" }) as Error);
          continue;
        }
        if (may === "newer") {
          expect(() => st.changedExtents(base.id, t.what)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }) as Error);
          continue;
        }
        const got = st.changedExtents(base.id, t.what);
        const reported = new Map<number, string>();
        for (const e of got.extents) {
          expect(e.offset % BS).toBe(0);
          expect(e.length % BS).toBe(0);
          for (let o = e.offset; o < e.offset + e.length; o += BS) reported.set(o / BS, e.flag);
        }
        for (let b = 0; b < t.data.length / BS; b++) {
          const differs = !blockOf(base.data, b).equals(blockOf(t.data, b));
          const flag = reported.get(b);
          const ctx = `base ${base.name} target ${JSON.stringify(t.what)} block ${b}`;
          if (differs) expect(flag, `missed change: ${ctx}`).toBeDefined();
          if (flag !== undefined) {
            expect(may.has(b), `extra block never touched: ${ctx}`).toBe(true);
            if (flag === "ZERO") expect(isZero(blockOf(t.data, b)), `ZERO but data: ${ctx}`).toBe(true);
            if (!isZero(blockOf(t.data, b))) expect(flag, `data flagged ZERO: ${ctx}`).toBe("DATA");
          }
        }
        for (const b of reported.keys()) expect(b).toBeLessThan(t.data.length / BS);
      }
    }
    const r = await st.check({ deep: true });
    expect(r.errors).toEqual([]);
    // Records kept: ready snapshots and deleted ones a clone still pins; no tombstone outlives its pin.
    const pinned = this.snaps.filter((s) => !s.ready && this.pins(s));
    expect(r.stats.tombstones, `deleted snapshots still pinned by clones: ${pinned.length}`).toBe(pinned.length);
  }

  /** A deleted snapshot stays pinned while a clone of it is in use (alive, or itself pinning). */
  private pins(s: MSnap): boolean {
    return this.luns.some((l) => l.origin === s && (l.alive || this.snaps.some((x) => x.lun === l && (x.ready || this.pins(x)))));
  }
}

async function runOps(ops: Op[]): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "sanbox-model-"));
  const h = new Harness(dir, await ArrayStore.open(dir, { strict: true }));
  try {
    await h.apply({ t: "create", blocks: 16 });
    for (const op of ops) {
      await h.apply(op);
      await h.verify();
    }
  } finally {
    await h.store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// 700 + 350 runs of up to 30-40 steps: ~50 s on 2 cores; raise SANBOX_MODEL_RUNS for soak runs.
const RUNS = Number(process.env.SANBOX_MODEL_RUNS ?? 700);

describe("block store vs reference model", () => {
  it("random operation sequences", async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), runOps), { numRuns: RUNS });
  }, 600_000);
  it("snapshot-heavy sequences with deletes and CBT from tombstones", async () => {
    const heavy = fc.oneof(
      { weight: 4, arbitrary: opArb.filter((o) => o.t === "write" || o.t === "zero") },
      { weight: 3, arbitrary: opArb.filter((o) => o.t === "snap" || o.t === "delsnap" || o.t === "clone" || o.t === "revert" || o.t === "resize") },
    );
    await fc.assert(fc.asyncProperty(fc.array(heavy, { minLength: 5, maxLength: 40 }), runOps), { numRuns: Math.ceil(RUNS / 2) });
  }, 600_000);
});
