/**
 * Group write-order consistency under load: a multi-LUN CreateSnapshot cut in
 * the middle of a dependent-write chain across its members holds exactly a
 * prefix of the chain (../write-order.ts has the chain and the rule).
 */
import { describeArea } from "../registry.js";
import { MEMBERS, checkWriteOrder, memberBytes } from "../write-order.js";
import type { NbdClient } from "../../../src/nbd/client.js";
import type { Lun } from "../context.js";

describeArea("group", (area) => {
  area.it(
    "group.write-order",
    "a group snapshot is write-order consistent: the dependent writes it holds across its members form a prefix of the chain, including every write acknowledged before the call",
    async (t) => {
      const luns: Lun[] = [];
      for (let i = 0; i < MEMBERS; i++) luns.push(await t.createLun(`wo${i}`, memberBytes(t.blockSize)));
      const clients: NbdClient[] = [];
      for (const l of luns) clients.push(await t.open({ lunId: l.lunId }));
      const line = await checkWriteOrder({
        clients,
        callName: "CreateSnapshot",
        cut: async () =>
          (
            await t.snapshot(
              luns.map((l) => l.lunId),
              "wo",
            )
          ).snapshots.map((s) => s.snapshotId),
        openSnapshot: (snapshotId) => t.open({ snapshotId }),
      });
      t.log(line);
    },
    { requires: ["groupSnapshots"] },
  );
});
