/**
 * Datastore crash consistency on the real array: one client churns the
 * datastore's metadata (create, write, grow, shrink, trim, delete, rename; every
 * operation auto-commits) on a LUN export, while array snapshots of the LUN are
 * cut at random moments, hundreds of times. Each snapshot, read through its
 * `snap/<id>/<lun>` export:
 *  - passes fsck and mounts read-only;
 *  - holds the file tree (paths and sizes) the churn had after some operation
 *    between the snapshot request and its reply: a prefix of the operation log;
 *  - every block of every file is zeros or a whole block that this file wrote
 *    at that offset: never torn, never another file's block.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { fsck } from "../../src/datastore/fsck.js";
import { NbdClient } from "../../src/nbd/client.js";
import { Prng } from "../../src/oracle/prng.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayFixture, type ArrayDaemon, type ArrayFixture } from "../support/array-daemon.js";

const BLOCK = 4096;
const MAX_FILE = 256 * 1024;
const MAX_FILES = 16;
const BUDGET_MS = 35_000;
const TARGET_SNAPSHOTS = 400;
const MAGIC = 0x4b4c4243; // "CBLK"

/** A block of file `tag` at `offset`, version `v`: a header and a fill derived from it. */
function block(tag: number, offset: number, v: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(tag, 4);
  b.writeUInt32LE(offset / BLOCK, 8);
  b.writeUInt32LE(v, 12);
  for (let i = 16; i < BLOCK; i++) b[i] = (tag * 31 + (offset / BLOCK) * 7 + v * 13 + i) & 0xff;
  return b;
}

/** Why a file's content is wrong, or undefined. */
function checkContent(path: string, data: Buffer): string | undefined {
  let tag: number | undefined;
  for (let off = 0; off < data.length; off += BLOCK) {
    const b = data.subarray(off, off + BLOCK);
    if (b.every((x) => x === 0)) continue;
    if (b.length !== BLOCK || b.readUInt32LE(0) !== MAGIC) return `${path} offset ${off}: not a block of ours`;
    const t = b.readUInt32LE(4);
    if (b.readUInt32LE(8) !== off / BLOCK) return `${path} offset ${off}: block written for offset ${b.readUInt32LE(8) * BLOCK}`;
    if (!b.equals(block(t, off, b.readUInt32LE(12)))) return `${path} offset ${off}: torn block`;
    if (tag !== undefined && t !== tag) return `${path} offset ${off}: block of file ${t} in file ${tag}`;
    tag = t;
  }
  return undefined;
}

interface FileModel {
  tag: number;
  size: number;
}

function treeOf(files: ReadonlyMap<string, FileModel>): string {
  return [...files].map(([p, f]) => `${p}:${f.size}`).sort().join(",");
}

/** What `got` has that `want` lacks (+) and the reverse (-). */
function treeDiff(want: string, got: string): string {
  const w = new Set(want.split(",").filter((x) => x !== ""));
  const g = new Set(got.split(",").filter((x) => x !== ""));
  return [...[...g].filter((x) => !w.has(x)).map((x) => `+${x}`), ...[...w].filter((x) => !g.has(x)).map((x) => `-${x}`)].join(" ");
}

describe("datastore metadata churn under array snapshots", () => {
  let d: ArrayDaemon;
  let rpc: ArrayClient;

  let fx: ArrayFixture | undefined;
  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-510-");
    ({ d, rpc } = fx);
  });
  afterAll(async () => fx?.stop());

  it("every snapshot taken at a random moment passes fsck, mounts, and holds a prefix state", async () => {
    const lun = await rpc.createLun({ name: "churn", sizeBytes: 64 * 1024 * 1024 });
    const client = await NbdClient.connect(d.uri("lun/churn"));
    const ds = await Datastore.format(new NbdDevice(client), { label: "churn" });
    for (const dir of ["/a", "/b", "/a/c"]) await ds.mkdir(dir);
    const dirs = ["", "/a", "/b", "/a/c"];

    const rng = new Prng(510);
    const files = new Map<string, FileModel>();
    /** history[i]: the tree after operation i (0: after the mkdirs). */
    const history: string[] = [treeOf(files)];
    let nextTag = 1;
    let stop = false;
    let churnEnded = false;
    const pick = (): [string, FileModel] => {
      const all = [...files];
      const hit = all[rng.int(all.length)];
      if (hit === undefined) throw new Error("no files");
      return hit;
    };
    const counts = { create: 0, write: 0, truncate: 0, trim: 0, delete: 0, rename: 0 };
    const oplog: string[] = ["mkdirs"];

    const churn = (async () => {
      while (!stop) {
        const roll = rng.float();
        const v = history.length;
        if (files.size < 3 || (roll < 0.12 && files.size < MAX_FILES)) {
          const path = `${dirs[rng.int(dirs.length)] ?? ""}/f${nextTag}`;
          const size = rng.int(MAX_FILE / BLOCK + 1) * BLOCK;
          await ds.create(path, { size, exclusive: true });
          files.set(path, { tag: nextTag++, size });
          counts.create++;
          oplog.push(`create ${path} ${size}`);
        } else if (roll < 0.6) {
          const [path, f] = pick();
          const first = rng.int(MAX_FILE / BLOCK);
          const n = Math.min(1 + rng.int(8), MAX_FILE / BLOCK - first);
          const data = Buffer.concat(Array.from({ length: n }, (_, i) => block(f.tag, (first + i) * BLOCK, v)));
          await ds.write(path, first * BLOCK, data);
          f.size = Math.max(f.size, (first + n) * BLOCK);
          counts.write++;
          oplog.push(`write ${path} @${first * BLOCK}+${n * BLOCK}`);
        } else if (roll < 0.72) {
          const [path, f] = pick();
          f.size = rng.int(MAX_FILE / BLOCK + 1) * BLOCK;
          await ds.truncate(path, f.size);
          counts.truncate++;
          oplog.push(`truncate ${path} ${f.size}`);
        } else if (roll < 0.8) {
          const [path] = pick();
          await ds.trim(path, rng.int(MAX_FILE / BLOCK) * BLOCK, (1 + rng.int(16)) * BLOCK);
          counts.trim++;
          oplog.push(`trim ${path}`);
        } else if (roll < 0.88) {
          const [path] = pick();
          await ds.delete(path);
          files.delete(path);
          counts.delete++;
          oplog.push(`delete ${path}`);
        } else {
          const [path, f] = pick();
          const to = `${dirs[rng.int(dirs.length)] ?? ""}/r${nextTag++}`;
          await ds.rename(path, to);
          files.delete(path);
          files.set(to, f);
          counts.rename++;
          oplog.push(`rename ${path} ${to}`);
        }
        history.push(treeOf(files));
      }
    })().finally(() => (churnEnded = true));

    const started = Date.now();
    let snapshots = 0;
    /** Snapshots cut while an operation was in flight (the churn moved during CreateSnapshot). */
    let midOperation = 0;
    const failures: string[] = [];
    try {
      while (Date.now() - started < BUDGET_MS && snapshots < TARGET_SNAPSHOTS) {
        await sleep(rng.int(4));
        const from = history.length - 1;
        const snap = await rpc.createSnapshot({ name: `c${snapshots}`, lunIds: [lun.lunId] });
        const to = history.length; // the operation in flight when the reply came may be in the cut too
        if (to > from + 1) midOperation++;
        const s = snap.snapshots[0];
        if (s === undefined) throw new Error("no snapshot in the reply");
        const c = await NbdClient.connect(d.uri(`snap/${s.snapshotId}/churn`));
        try {
          const dev = new NbdDevice(c, false);
          const report = await fsck(dev);
          if (!report.ok) failures.push(`snapshot ${snapshots}: fsck: ${report.errors.slice(0, 3).join("; ")}`);
          const ro = await Datastore.open(dev, { readOnly: true });
          const seen = new Map<string, FileModel>();
          for (const e of await ro.walk("/")) {
            if (e.kind !== "file") continue;
            seen.set(e.path, { tag: 0, size: e.size });
            const bad = checkContent(e.path, await ro.readFile(e.path));
            if (bad !== undefined) failures.push(`snapshot ${snapshots}: ${bad}`);
          }
          const tree = treeOf(seen);
          // The operation in flight at the reply may be in the cut but not yet acknowledged here.
          while (history.length <= to && !churnEnded) await sleep(1);
          if (!history.slice(from, to + 1).includes(tree)) {
            const at = history.lastIndexOf(tree);
            failures.push(`snapshot ${snapshots} (generation ${report.generation}): tree matches no state between operations ${from} and ${to}${at >= 0 ? ` (it is the state after operation ${at})` : " (nor any other)"}: ${treeDiff(history[from] ?? "", tree)}; ops ${oplog.slice(Math.max(0, from - 2), to + 2).join(" | ")}`);
          }
        } finally {
          await c.close();
        }
        await rpc.deleteSnapshot({ snapshotId: s.snapshotId });
        snapshots++;
        if (failures.length > 5) break;
      }
    } finally {
      stop = true;
      await churn;
    }
    const final = await fsck(new NbdDevice(client, false));
    await ds.close();
    await client.close();

    if (process.env.SANBOX_TEST_VERBOSE) console.error({ snapshots, midOperation, operations: history.length - 1, counts });
    expect(failures).toEqual([]);
    expect(final.ok).toBe(true);
    expect(snapshots).toBeGreaterThanOrEqual(50); // 400 in ~15 s on an idle 2-core machine
    expect(history.length).toBeGreaterThan(snapshots);
    expect(midOperation).toBeGreaterThan(snapshots / 10);
    expect(Object.values(counts).every((n) => n > 0)).toBe(true);
  }, 90_000);
});
