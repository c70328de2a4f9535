/** Shared constants of the crash test's child writer and its parent (see crash-writer.ts). */
export const SECTOR = 512;
export const LUN_NAME = "crash";
/** Second LUN, only so that group snapshots (and their crash recovery) are exercised. */
export const LUN_B = "crash-b";
export const LUN_SIZE = 8 * 1024 * 1024;
export const LUN_BLOCK = 16 * 1024;
export const WORKERS = 4;

export function sectorContent(run: number, seq: number, sector: number): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.writeUInt32LE(run, 0);
  b.writeUInt32LE(seq, 4);
  b.writeUInt32LE(sector, 8);
  for (let i = 12; i < SECTOR; i++) b[i] = (run * 131 + seq * 31 + sector * 7 + i) % 251 + 1;
  return b;
}

