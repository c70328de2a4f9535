// Crash consistency of the datastore's metadata. Heavy metadata churn runs on a device
// that logs every write; the device is then rebuilt at hundreds of cut points (a prefix
// of the log, sometimes with the last write torn). Every image must pass fsck, have the
// exact namespace and sizes of the generation it recovers, and every file byte must be
// that file's byte in the recovered generation or in the one being committed (an
// in-flight write) - never another file's, never stale.
import { describe, expect, it } from "vitest";
import { Datastore } from "../../src/datastore/datastore.js";
import { fsck } from "../../src/datastore/fsck.js";
import { RecordingDevice } from "../support/recording-device.js";

type State = Map<string, { kind: "dir" } | { kind: "file"; data: Buffer }>;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

async function snapshot(ds: Datastore): Promise<State> {
  const s: State = new Map();
  for (const e of await ds.walk()) s.set(e.path, e.kind === "dir" ? { kind: "dir" } : { kind: "file", data: await ds.readFile(e.path) });
  return s;
}

function shape(s: State): string[] {
  return [...s].map(([p, n]) => `${p}:${n.kind === "dir" ? "dir" : n.data.length}`).sort();
}

async function churn(seed: number, blockSize: number, ops: number): Promise<{ dev: RecordingDevice; formatWrites: number; states: Map<number, State[]>; durable: { logLength: number; generation: number }[] }> {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const dev = new RecordingDevice(96 * 1024);
  const ds = await Datastore.format(dev, { blockSize });
  const formatWrites = dev.log.length;
  const states = new Map<number, State[]>();
  const durable: { logLength: number; generation: number }[] = [];
  const record = async (): Promise<void> => {
    durable.push({ logLength: dev.log.length, generation: ds.generation });
    const list = states.get(ds.generation) ?? [];
    list.push(await snapshot(ds));
    states.set(ds.generation, list);
  };
  await record();
  const files = ["/f1", "/f2", "/d/f3", "/d/f4", "/e/f5"];
  let stamp = 1;
  for (let i = 0; i < ops; i++) {
    const p = pick(files);
    const kind = r();
    try {
      if (kind < 0.1) await ds.mkdir(pick(["/d", "/e"]));
      else if (kind < 0.2) await ds.create(p, { size: Math.floor(r() * 6000) });
      else if (kind < 0.55) {
        const len = 1 + Math.floor(r() * 3000);
        const data = Buffer.alloc(len);
        for (let k = 0; k < len; k += 4) data.writeUInt32LE((stamp * 7919 + k) >>> 0, Math.min(k, len - 4 < 0 ? 0 : len - 4));
        data.fill(stamp & 0xff, 0, Math.min(len, 3));
        stamp++;
        await ds.write(p, Math.floor(r() * 8000), data);
      } else if (kind < 0.7) await ds.truncate(p, Math.floor(r() * 9000));
      else if (kind < 0.78) await ds.trim(p, Math.floor(r() * 6000), Math.floor(r() * 4000));
      else if (kind < 0.88) await ds.delete(p);
      else await ds.rename(p, pick(files), { replace: r() < 0.5 });
    } catch (e: unknown) {
      if ((e as { code?: string }).code === "NO_SPACE") await ds.delete(p).catch(() => undefined);
      else if (!(e instanceof Error) || !("code" in e)) throw e;
    }
    await record();
  }
  expect((await fsck(dev)).ok).toBe(true);
  return { dev, formatWrites, states, durable };
}

function byteOk(candidates: State[], path: string, i: number, v: number): boolean {
  for (const s of candidates) {
    const n = s.get(path);
    if (n?.kind === "file" && i < n.data.length && n.data[i] === v) return true;
  }
  return false;
}

describe("datastore crash consistency", () => {
  for (const [seed, blockSize] of [
    [11, 512],
    [23, 1024],
    [37, 4096],
  ] as const) {
    it(`every cut of the write log parses and holds a committed state (seed ${seed}, ${blockSize}-byte blocks)`, async () => {
      const { dev, formatWrites, states, durable } = await churn(seed, blockSize, 800);
      expect(Math.max(...states.keys())).toBeGreaterThan(200);
      const r = rng(seed * 31);
      // Every prefix of the log, then 300 random cuts with the last write torn at a random byte.
      const cuts: { count: number; tear: number | undefined }[] = [];
      for (let count = formatWrites; count <= dev.log.length; count++) cuts.push({ count, tear: undefined });
      for (let c = 0; c < 300; c++) {
        const count = formatWrites + 1 + Math.floor(r() * (dev.log.length - formatWrites));
        cuts.push({ count, tear: Math.floor(r() * (dev.log[count - 1]?.data.length ?? 1)) });
      }
      for (const { count, tear } of cuts) {
        const img = dev.replay(count, tear);
        const report = await fsck(img);
        expect(report.errors, `cut ${count} torn ${tear}`).toEqual([]);
        // A valid superblock never points at an unwritten blob (the blob is flushed first).
        expect(report.notes.filter((n) => n.startsWith("generation ")), `cut ${count}`).toEqual([]);
        const ds = await Datastore.open(img, { readOnly: true });
        const g = ds.generation;
        // Never older than what was acknowledged before the cut (whole writes only).
        const whole = tear === undefined ? count : count - 1;
        const acked = durable.filter((d) => d.logLength <= whole).pop()?.generation ?? 1;
        expect(g, `cut ${count}: recovered generation ${g} < acknowledged ${acked}`).toBeGreaterThanOrEqual(acked);
        const here = states.get(g);
        expect(here, `generation ${g} was never acknowledged`).toBeDefined();
        const candidates = [...(here ?? []), ...(states.get(g + 1) ?? [])];
        const got = await snapshot(ds);
        const empty: State = new Map();
        expect(shape(got)).toEqual(shape((here ?? [])[0] ?? empty));
        for (const [p, n] of got) {
          if (n.kind !== "file") continue;
          if (candidates.some((s) => { const m = s.get(p); return m?.kind === "file" && m.data.equals(n.data); })) continue;
          for (let i = 0; i < n.data.length; i++) {
            if (!byteOk(candidates, p, i, n.data[i] as number)) throw new Error(`cut ${count}${tear !== undefined ? ` torn at ${tear}` : ""}: ${p} byte ${i} = ${n.data[i]} is in no state of generation ${g} or ${g + 1}`);
          }
        }
      }
      expect(cuts.length).toBeGreaterThan(1000); // every prefix plus 300 torn cuts
    });
  }
});
