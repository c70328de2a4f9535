/**
 * `backup verify`: a point is good when every chunk it references reads back
 * (decompresses) and re-hashes to its name, and — when the oracle applies —
 * its disks, read back from the repository, pass the dependent-write oracle (a
 * prefix of the VM's write chain across all disks, i.e. time-consistent).
 *
 * The oracle applies when asked (`--oracle`) or when the point records that
 * the VM ran the dependent-write workload when it was taken; any other VM's
 * disks carry no write chain to check. A bad chunk found here is recorded as
 * damaged by the store, so the next backup of that content heals it.
 */
import { verifyConsistency, type ConsistencyReport, type NamedImage } from "../../src/oracle/verify.js";
import type { BackupPoint } from "./repository/catalog.js";
import type { Repository } from "./repository/repository.js";

export interface PointVerification {
  point: string;
  chunks: number;
  badChunks: string[];
  oracle: ConsistencyReport | undefined;
  ok: boolean;
}

/** Whether the consistency oracle runs on `point`: forced by `oracle`, else when it was taken under the dependent workload. */
export function oracleApplies(point: BackupPoint, oracle: boolean | undefined): boolean {
  return oracle ?? point.workload === "dependent";
}

export async function verifyPoint(repo: Repository, point: BackupPoint, opts: { oracle?: boolean } = {}): Promise<PointVerification> {
  const hashes = new Set<string>();
  const images: NamedImage[] = [];
  const where = new Map<string, string>();
  for (const d of point.disks) {
    const reader = await repo.openImage(point, d.name);
    const m = reader.map;
    for (let k = 0; k < m.count; k++) {
      const h = m.hexAt(k);
      if (!hashes.has(h)) where.set(h, `point ${point.id} disk ${d.name} bytes [${m.numberAt(k) * m.chunkSize}, ${Math.min((m.numberAt(k) + 1) * m.chunkSize, m.size)})`);
      hashes.add(h);
    }
    images.push({ name: d.name, source: reader });
  }
  const badChunks: string[] = [];
  for (const h of hashes) {
    try {
      await repo.chunks.get(h, where.get(h) ?? `point ${point.id}`);
    } catch (e: unknown) {
      badChunks.push(e instanceof Error ? e.message : String(e));
    }
  }
  const oracle = !oracleApplies(point, opts.oracle) || badChunks.length > 0 ? undefined : await verifyConsistency(images);
  return { point: point.id, chunks: hashes.size, badChunks, oracle, ok: badChunks.length === 0 && (oracle === undefined || oracle.consistent) };
}
