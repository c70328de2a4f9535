/**
 * `backup verify`: a point is good when every chunk it references re-hashes to
 * its name and its disks, read back from the repository, pass the
 * dependent-write oracle (a prefix of the VM's write chain across all disks,
 * i.e. time-consistent).
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

export async function verifyPoint(repo: Repository, point: BackupPoint, opts: { oracle?: boolean } = {}): Promise<PointVerification> {
  const hashes = new Set<string>();
  const images: NamedImage[] = [];
  for (const d of point.disks) {
    const reader = await repo.openImage(point, d.name);
    for (const h of reader.index.chunks) if (h !== null) hashes.add(h);
    images.push({ name: d.name, source: reader });
  }
  const badChunks: string[] = [];
  for (const h of hashes) {
    const why = await repo.chunks.check(h);
    if (why !== undefined) badChunks.push(why);
  }
  const oracle = opts.oracle === false || badChunks.length > 0 ? undefined : await verifyConsistency(images);
  return { point: point.id, chunks: hashes.size, badChunks, oracle, ok: badChunks.length === 0 && (oracle === undefined || oracle.consistent) };
}
