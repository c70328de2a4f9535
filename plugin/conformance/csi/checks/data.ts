/**
 * csi.delta.apply, a data check: it needs data access (sanbox's ArrayService
 * beside CSI: CreateExport of a snapshot id gives an NBD URI); without it the
 * check is reported as not applicable, with the reason. The apply-delta
 * oracle of Kubernetes' snapshot-metadata-verifier: base snapshot + the
 * ranges GetMetadataDelta reports, read from the target, equals the target
 * byte for byte.
 */
import { firstDifference, violation } from "../../assert.js";
import { delta, history } from "../history.js";
import { csiCheck } from "../registry.js";
import { applyDelta, ranges } from "../stream-rules.js";
import type { CsiContext } from "../context.js";

async function readSnapshot(t: CsiContext, snapshotId: string): Promise<Buffer> {
  const c = await t.open({ snapshotId });
  return c.read(0, c.size);
}

csiCheck(
  "csi.delta.apply",
  "base snapshot + the ranges GetMetadataDelta reports (read from the target) = the target, byte for byte: the delta omits no changed range (GetMetadataDelta: the data ranges that have changed between the base and target snapshots)",
  async (t) => {
    void t.array; // not applicable without data access
    const h = await history(t);
    const target = await readSnapshot(t, h.s2);
    for (const [name, base] of [
      ["S1", h.s1],
      ["S0", h.s0],
    ] as const) {
      const baseData = await readSnapshot(t, base);
      for (const maxResults of [0, 3]) {
        const d = await delta(t, base, h.s2, { startingOffset: 0, maxResults });
        const at = firstDifference(applyDelta(baseData, target, d), target);
        if (at >= 0) {
          const inDelta = ranges(d).some((r) => at >= r.offset && at < r.offset + r.length);
          violation(`${name} + GetMetadataDelta(base=${name}, target=S2, max_results=${maxResults}) differs from S2 at byte ${at}${inDelta ? "" : ", which no reported range covers (a changed range is missing)"}`);
        }
      }
    }
  },
);
