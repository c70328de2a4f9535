/**
 * The TEST-ONLY fault wrappers (simulator/array/faults/) over a real in-process
 * array: each alters exactly what it claims and passes everything else through.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SessionInfo } from "../../../src/nbd/backend.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { v1 } from "../../../src/rpc/proto.js";
import { ArrayStore } from "../../../simulator/array/array-store.js";
import { ArrayExportProvider } from "../../../simulator/array/exports/array-export-provider.js";
import { lunExportName, snapshotExportName } from "../../../simulator/array/exports/export-names.js";
import { cbtDropZero, cbtIgnoreStartingOffset, cbtOffByOne } from "../../../simulator/array/faults/cbt.js";
import type { CallContextOf } from "../../../simulator/array/faults/filter.js";
import { groupSkew } from "../../../simulator/array/faults/group-skew.js";
import { createCsiServices } from "../../../simulator/array/csi/index.js";
import { wrapWithFaults } from "../../../simulator/array/faults/index.js";
import { snapshotLeak } from "../../../simulator/array/faults/snapshot-leak.js";
import { wrongStatus } from "../../../simulator/array/faults/wrong-status.js";
import { SanboxArrayService } from "../../../simulator/array/service/array-service.js";
import { ControlState } from "../../../simulator/array/service/control-state.js";

const KiB = 1024;
const BLOCK = 64 * KiB;
const ctx: CallContextOf = { peer: "test", signal: new AbortController().signal };
const local: SessionInfo = { tlsIdentity: undefined, peer: "unix" };

let dir: string;
let store: ArrayStore;
let real: SanboxArrayService;
let provider: ArrayExportProvider;
let lunId: string;
let base: string;
let target: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sanbox-faults-"));
  store = await ArrayStore.open(dir, { strict: true });
  const control = await ControlState.open(dir);
  real = new SanboxArrayService({ store, control, psk: new Map(), nbdUri: (name) => name });
  provider = new ArrayExportProvider(store, (session) => real.access(session), undefined);
  const lun = await real.createLun(v1.CreateLunRequest.create({ name: "disk", sizeBytes: 16 * BLOCK }));
  lunId = lun.lunId ?? "";
  const volume = store.openVolume({ lun: lunId });
  await volume.write(0, Buffer.alloc(16 * BLOCK, 1));
  base = await snap("base");
  await volume.write(2 * BLOCK, Buffer.alloc(BLOCK, 2));
  await volume.trim(5 * BLOCK, 2 * BLOCK);
  await volume.write(9 * BLOCK, Buffer.alloc(3 * BLOCK, 3));
  target = await snap("target");
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function snap(name: string, lunIds = [lunId]): Promise<string> {
  const r = await real.createSnapshot(v1.CreateSnapshotRequest.create({ name, lunIds }));
  return r.snapshots?.[0]?.snapshotId ?? "";
}

function changedRequest(startingOffset = 0, maxResults = 0): v1.GetChangedBlocksRequest {
  return v1.GetChangedBlocksRequest.create({ baseSnapshotId: base, targetSnapshotId: target, startingOffset, maxResults });
}

async function collect<T>(messages: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of messages) out.push(m);
  return out;
}

function stream(service: ArrayServiceImpl, req: v1.GetChangedBlocksRequest): Promise<v1.IBlockMetadataResponse[]> {
  return collect(service.getChangedBlocks(req, ctx));
}

function extents(messages: readonly v1.IBlockMetadataResponse[]): v1.IBlockMetadata[] {
  return messages.flatMap((m) => m.blockMetadata ?? []);
}

async function failure(call: Promise<unknown> | AsyncIterable<unknown>): Promise<string | undefined> {
  try {
    if (Symbol.asyncIterator in call) for await (const _ of call);
    else await call;
  } catch (e: unknown) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

/** Calls that no CBT or status fault touches answer exactly as the real service does. */
async function expectUntouched(faulty: ArrayServiceImpl): Promise<void> {
  const allocated = v1.GetAllocatedBlocksRequest.create({ snapshotId: target });
  expect(await collect(faulty.getAllocatedBlocks(allocated, ctx))).toEqual(await collect(real.getAllocatedBlocks(allocated)));
  expect(await faulty.listLuns(v1.ListLunsRequest.create(), ctx)).toEqual(await real.listLuns(v1.ListLunsRequest.create()));
  expect(await faulty.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: base }), ctx)).toEqual(await real.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: base })));
}

describe("CBT faults", () => {
  it("the real answer has DATA and ZERO extents, framed by max_results", async () => {
    const all = extents(await stream(real, changedRequest()));
    expect(all.map((e) => [e.byteOffset, e.sizeBytes, e.type])).toEqual([
      [2 * BLOCK, BLOCK, v1.ExtentType.DATA],
      [5 * BLOCK, 2 * BLOCK, v1.ExtentType.ZERO],
      [9 * BLOCK, 3 * BLOCK, v1.ExtentType.DATA],
    ]);
  });

  it("cbt-drop-zero drops the ZERO extents and nothing else", async () => {
    const faulty = cbtDropZero(real);
    for (const [start, max] of [[0, 0], [0, 1], [6 * BLOCK, 1], [16 * BLOCK, 2]] as const) {
      const want = extents(await stream(real, changedRequest(start, max))).filter((e) => e.type !== v1.ExtentType.ZERO);
      const got = await stream(faulty, changedRequest(start, max));
      expect(extents(got)).toEqual(want);
      expect(got.every((m) => (m.blockMetadata?.length ?? 0) <= (max || 1024) && m.volumeCapacityBytes === 16 * BLOCK)).toBe(true);
    }
    expect(await failure(faulty.getChangedBlocks(changedRequest(17 * BLOCK), ctx))).toBe("OUT_OF_RANGE");
    await expectUntouched(faulty);
  });

  it("cbt-off-by-one moves the first extent one block on and nothing else", async () => {
    const faulty = cbtOffByOne(real);
    const [first, ...rest] = extents(await stream(real, changedRequest()));
    expect(extents(await stream(faulty, changedRequest(0, 1)))).toEqual([{ ...first, byteOffset: 3 * BLOCK }, ...rest]);
    await expectUntouched(faulty);
  });

  it("cbt-ignore-starting-offset streams from 0 but still range-checks the offset", async () => {
    const faulty = cbtIgnoreStartingOffset(real);
    const whole = await stream(real, changedRequest(0, 2));
    expect(await stream(faulty, changedRequest(10 * BLOCK, 2))).toEqual(whole);
    expect(await failure(faulty.getChangedBlocks(changedRequest(-1), ctx))).toBe("OUT_OF_RANGE");
    expect(await failure(faulty.getChangedBlocks(v1.GetChangedBlocksRequest.create({ baseSnapshotId: "snap-nope", targetSnapshotId: target }), ctx))).toBe("NOT_FOUND");
    await expectUntouched(faulty);
  });
});

describe("wrong-status", () => {
  it("turns NOT_FOUND of GetLun/GetSnapshot into IO_ERROR and leaves the rest alone", async () => {
    const faulty = wrongStatus(real);
    expect(await failure(faulty.getLun(v1.GetLunRequest.create({ lunId: "lun-nope" }), ctx))).toBe("IO_ERROR");
    expect(await failure(faulty.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: "snap-nope" }), ctx))).toBe("IO_ERROR");
    expect(await failure(faulty.getLun(v1.GetLunRequest.create(), ctx))).toBe("INVALID_ARGUMENT");
    expect(await failure(faulty.resizeLun(v1.ResizeLunRequest.create({ lunId: "lun-nope", sizeBytes: BLOCK }), ctx))).toBe("NOT_FOUND");
    expect(await faulty.getLun(v1.GetLunRequest.create({ lunId }), ctx)).toEqual(await real.getLun(v1.GetLunRequest.create({ lunId })));
    await expectUntouched(faulty);
  });
});

describe("group-skew", () => {
  it("fakes a group from single-LUN cuts, answers Get/DeleteGroupSnapshot for it, passes the rest through", async () => {
    const other = (await real.createLun(v1.CreateLunRequest.create({ name: "log", sizeBytes: 4 * BLOCK }))).lunId ?? "";
    const faulty = groupSkew(real, 0);
    const req = v1.CreateSnapshotRequest.create({ name: "g1", lunIds: [lunId, other] });
    const made = await faulty.createSnapshot(req, ctx);
    const id = made.groupSnapshotId ?? "";
    expect(id).toMatch(/^grp-skew-/);
    expect(made.snapshots?.map((s) => [s.lunId, s.groupSnapshotId])).toEqual([
      [lunId, id],
      [other, id],
    ]);
    // The members are plain snapshots of the real array.
    for (const s of made.snapshots ?? []) expect((await real.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: s.snapshotId ?? "" }))).groupSnapshotId).toBe("");
    expect((await faulty.createSnapshot(req, ctx)).snapshots).toEqual(made.snapshots);
    expect(await failure(faulty.createSnapshot(v1.CreateSnapshotRequest.create({ name: "g1", lunIds: [other, base] }), ctx))).toBe("NOT_FOUND");
    expect(await failure(faulty.createSnapshot(v1.CreateSnapshotRequest.create({ name: "g1", lunIds: [lunId, lunId] }), ctx))).toBe("INVALID_ARGUMENT");
    const got = await faulty.getGroupSnapshot(v1.GetGroupSnapshotRequest.create({ groupSnapshotId: id }), ctx);
    expect(got.snapshots).toEqual(made.snapshots);
    expect(await failure(faulty.getGroupSnapshot(v1.GetGroupSnapshotRequest.create({ groupSnapshotId: "grp-nope" }), ctx))).toBe("NOT_FOUND");
    await faulty.deleteGroupSnapshot(v1.DeleteGroupSnapshotRequest.create({ groupSnapshotId: id }), ctx);
    for (const s of made.snapshots ?? []) expect(await failure(real.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: s.snapshotId ?? "" })))).toBe("NOT_FOUND");
    expect(await failure(faulty.getGroupSnapshot(v1.GetGroupSnapshotRequest.create({ groupSnapshotId: id }), ctx))).toBe("NOT_FOUND");
    // A single LUN is the real call.
    const single = await faulty.createSnapshot(v1.CreateSnapshotRequest.create({ name: "one", lunIds: [other] }), ctx);
    expect(single.groupSnapshotId).toBe("");
  });
});

describe("snapshot-leak", () => {
  it("reads the first block of a snapshot export from the live LUN, the rest from the snapshot", async () => {
    const faulty = snapshotLeak(provider, store);
    const name = snapshotExportName(target, "disk");
    const snapshot = await faulty.open(name, local);
    await store.openVolume({ lun: lunId }).write(0, Buffer.alloc(2 * BLOCK, 9));
    const data = await snapshot.read(0, 2 * BLOCK);
    expect(data.subarray(0, BLOCK).every((b) => b === 9)).toBe(true);
    expect(data.subarray(BLOCK).every((b) => b === 1)).toBe(true);
    const sparse = (await snapshot.readSparse?.(0, BLOCK)) ?? [];
    expect(sparse.length).toBe(1);
    // Everything else is the real provider's.
    expect(snapshot.readOnly).toBe(true);
    expect(snapshot.metaContexts()).toEqual((await provider.open(name, local)).metaContexts());
    expect(await faulty.list(local)).toEqual(await provider.list(local));
    const lun = await faulty.open(lunExportName("disk"), local);
    expect((await lun.read(0, BLOCK)).every((b) => b === 9)).toBe(true);
    expect((await (await provider.open(name, local)).read(0, BLOCK)).every((b) => b === 1)).toBe(true);
  });
});

describe("wrapWithFaults", () => {
  it("returns the real objects when no fault is active", () => {
    const fronts = { service: real, provider };
    const over: unknown[] = [];
    const out = wrapWithFaults(fronts, store, new Set(), (service) => {
      over.push(service);
      return createCsiServices(service, { blockMetadata: "variable" });
    });
    expect(out.service).toBe(real);
    expect(out.provider).toBe(provider);
    expect(over).toEqual([real]);
  });
});
