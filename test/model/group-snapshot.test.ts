/**
 * Dependent-write oracle for atomic group snapshots (DESIGN: "a group snapshot is
 * write-order consistent or fails"). Writers make dependent writes across two LUNs:
 * write record i to A, wait for the ack, then write record i to B. Group snapshots
 * are cut continuously meanwhile. In every group snapshot, every record present in B
 * must be present in A. The control shows the oracle can fail: two separate
 * single-LUN snapshots (A first, then B) do break it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArrayStore } from "../../simulator/array/index.js";

const REC = 512;
const WRITERS = 4;
const PER_WRITER = 300;
let dir: string;
let store: ArrayStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sanbox-group-"));
  store = await ArrayStore.open(dir);
  await store.createLun({ name: "A", size: 4 * 1024 * 1024, blockSize: 4096 });
  await store.createLun({ name: "B", size: 4 * 1024 * 1024, blockSize: 4096 });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function record(w: number, i: number): Buffer {
  const b = Buffer.alloc(REC, 0);
  b.writeUInt32LE(w + 1, 0);
  b.writeUInt32LE(i + 1, 4);
  return b;
}
function offsetOf(w: number, i: number): number {
  return (w * PER_WRITER + i) * REC;
}

/** Records present in a volume image, as "w:i" keys. */
function present(img: Buffer): Set<string> {
  const out = new Set<string>();
  for (let w = 0; w < WRITERS; w++) {
    for (let i = 0; i < PER_WRITER; i++) {
      const o = offsetOf(w, i);
      if (img.readUInt32LE(o) === w + 1 && img.readUInt32LE(o + 4) === i + 1) out.add(`${w}:${i}`);
    }
  }
  return out;
}

async function workload(): Promise<void> {
  const a = store.openVolume({ lun: "A" });
  const b = store.openVolume({ lun: "B" });
  await Promise.all(
    Array.from({ length: WRITERS }, async (_, w) => {
      for (let i = 0; i < PER_WRITER; i++) {
        await a.write(offsetOf(w, i), record(w, i));
        await b.write(offsetOf(w, i), record(w, i));
      }
    }),
  );
}

function violations(aImg: Buffer, bImg: Buffer): number {
  const inA = present(aImg);
  let bad = 0;
  for (const k of present(bImg)) if (!inA.has(k)) bad++;
  return bad;
}

describe("group snapshot is write-order consistent", () => {
  it("never holds B's write without A's", async () => {
    let done = false;
    const groups: string[] = [];
    const cutter = (async () => {
      let n = 0;
      while (!done) {
        groups.push((await store.createGroupSnapshot({ name: `g${n++}`, luns: ["A", "B"] })).id);
        await new Promise((r) => setImmediate(r));
      }
    })();
    await workload();
    done = true;
    await cutter;
    expect(groups.length).toBeGreaterThan(5);
    let nonTrivial = 0;
    for (const id of groups) {
      const g = store.getGroupSnapshot(id);
      const [sa, sb] = g.members;
      expect(sa?.lunId).toBe(store.getLun("A").id);
      const aImg = await store.openVolume({ snapshot: sa?.id ?? "" }).read(0, 4 * 1024 * 1024);
      const bImg = await store.openVolume({ snapshot: sb?.id ?? "" }).read(0, 4 * 1024 * 1024);
      expect(violations(aImg, bImg), `group ${g.name}`).toBe(0);
      const pb = present(bImg).size;
      if (pb > 0 && pb < WRITERS * PER_WRITER) nonTrivial++;
    }
    expect(nonTrivial).toBeGreaterThan(0);
    expect((await store.check({ deep: true })).errors).toEqual([]);
  }, 120_000);

  it("control: two separate snapshots (A, then B) can break the oracle", async () => {
    let done = false;
    let broken = 0;
    const cutter = (async () => {
      let n = 0;
      while (!done) {
        const sa = await store.createSnapshot({ lun: "A", name: `a${n}` });
        await new Promise((r) => setTimeout(r, 2));
        const sb = await store.createSnapshot({ lun: "B", name: `b${n++}` });
        const aImg = await store.openVolume({ snapshot: sa.id }).read(0, 4 * 1024 * 1024);
        const bImg = await store.openVolume({ snapshot: sb.id }).read(0, 4 * 1024 * 1024);
        if (violations(aImg, bImg) > 0) broken++;
      }
    })();
    await workload();
    done = true;
    await cutter;
    expect(broken).toBeGreaterThan(0);
  }, 120_000);
});
