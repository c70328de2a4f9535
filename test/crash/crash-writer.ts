/**
 * Child process for test/crash/store-crash.test.ts: hammers one LUN with writes,
 * trims, FUA writes, flushes, snapshots and snapshot deletes, and reports on stdout
 * exactly what has become durable, so the parent can kill -9 it at any moment and
 * then check that nothing acknowledged was lost.
 *
 * Usage: node crash-writer.js DIR RUN REGION_OFFSET REGION_BYTES SEED
 * Lines: READY | ISSUE w seq sector count kind | ACK w seq | SNAP id sha256 | DELETING id
 * Worker w owns sectors [REGION_OFFSET/512 + w*per, +per); its ops are sequential.
 * A sector's 512 bytes are a pure function of (run, seq, sector), or zeros (trim).
 */
import { createHash } from "node:crypto";
import { ArrayStore } from "../../simulator/array/array-store.js";
import { LUN_B, LUN_BLOCK, LUN_NAME, LUN_SIZE, SECTOR, WORKERS, sectorContent } from "./crash-protocol.js";

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

async function main(): Promise<void> {
  const [dir, runS, offS, lenS, seedS] = process.argv.slice(2);
  if (!dir || !runS || !offS || !lenS || !seedS) throw new Error("usage: crash-writer DIR RUN REGION_OFFSET REGION_BYTES SEED");
  const run = Number(runS);
  const regionSector = Number(offS) / SECTOR;
  const per = Math.floor(Number(lenS) / SECTOR / WORKERS);
  const rand = rng(Number(seedS));
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const store = await ArrayStore.open(dir);
  await store.createLun({ name: LUN_NAME, size: LUN_SIZE, blockSize: LUN_BLOCK });
  await store.createLun({ name: LUN_B, size: LUN_SIZE, blockSize: LUN_BLOCK });
  const vol = store.openVolume({ lun: LUN_NAME });
  // Keep the snapshot count bounded across runs: drop all but the newest few.
  const old = store.listSnapshots({ lun: LUN_NAME }).filter((s) => s.groupId === null);
  for (const s of old.slice(0, Math.max(0, old.length - 4))) {
    out(`DELETING ${s.id}`);
    await store.deleteSnapshot(s.id);
  }
  const groups = store.listGroupSnapshots();
  for (const g of groups.slice(0, Math.max(0, groups.length - 2))) {
    for (const m of g.members) out(`DELETING ${m.id}`);
    await store.deleteGroupSnapshot(g.id);
  }
  out("READY");
  let seq = 0;
  const worker = async (w: number): Promise<void> => {
    const base = regionSector + w * per;
    let unacked: number[] = [];
    for (;;) {
      const s = ++seq;
      const count = 1 + Math.floor(rand() * Math.min(24, per));
      const first = base + Math.floor(rand() * (per - count + 1));
      const r = rand();
      const kind = r < 0.15 ? "trim" : r < 0.5 ? "fua" : "write";
      out(`ISSUE ${w} ${s} ${first} ${count} ${kind}`);
      if (kind === "trim") {
        await vol.trim(first * SECTOR, count * SECTOR);
      } else {
        const data = Buffer.concat(Array.from({ length: count }, (_, i) => sectorContent(run, s, first + i)));
        await vol.write(first * SECTOR, data, { fua: kind === "fua" });
      }
      if (kind === "fua") out(`ACK ${w} ${s}`);
      else unacked.push(s);
      if (rand() < 0.3) {
        const done = unacked;
        unacked = [];
        await vol.flush();
        for (const d of done) out(`ACK ${w} ${d}`);
      }
    }
  };
  const snapper = async (): Promise<void> => {
    let n = 0;
    const mine: string[] = [];
    const b = store.openVolume({ lun: LUN_B });
    for (;;) {
      await new Promise((r) => setTimeout(r, 10 + rand() * 40));
      if (rand() < 0.3) {
        // Group snapshot of both LUNs: a kill between its intent and its cut must leave no trace.
        await b.write(Math.floor(rand() * (LUN_SIZE / SECTOR)) * SECTOR, sectorContent(run, ++seq, 0), { fua: true });
        const g = await store.createGroupSnapshot({ name: `r${run}-g${n++}`, luns: [LUN_NAME, LUN_B] });
        for (const m of g.members) {
          const data = await store.openVolume({ snapshot: m.id }).read(0, m.size);
          out(`SNAP ${m.id} ${createHash("sha256").update(data).digest("hex")}`);
        }
        continue;
      }
      const snap = await store.createSnapshot({ lun: LUN_NAME, name: `r${run}-s${n++}` });
      const data = await store.openVolume({ snapshot: snap.id }).read(0, snap.size);
      out(`SNAP ${snap.id} ${createHash("sha256").update(data).digest("hex")}`);
      mine.push(snap.id);
      if (mine.length > 2 && rand() < 0.6) {
        const victim = mine.splice(Math.floor(rand() * (mine.length - 1)), 1)[0] as string;
        out(`DELETING ${victim}`);
        await store.deleteSnapshot(victim);
      }
    }
  };
  await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), snapper()]);
}

main().catch((e: unknown) => {
  process.stderr.write(`crash-writer: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
