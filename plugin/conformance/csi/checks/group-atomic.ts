/**
 * csi.group.atomic, a data check (not applicable without data access, like
 * csi.delta.apply): a CreateVolumeGroupSnapshot cut in the middle of a
 * dependent-write chain across its volumes holds a prefix of the chain
 * (CreateVolumeGroupSnapshot: "write-order consistency guarantee or fail";
 * the chain and the rule are ../../write-order.ts, shared with the array
 * suite's group.write-order).
 */
import type { NbdClient } from "../../../../src/nbd/client.js";
import { MEMBERS, checkWriteOrder, memberBytes } from "../../write-order.js";
import { csiCheck } from "../registry.js";

csiCheck(
  "csi.group.atomic",
  "a volume group snapshot is write-order consistent: cut by CreateVolumeGroupSnapshot during a dependent-write chain across its volumes, it holds exactly a prefix of the chain, including every write acknowledged before the call (CreateVolumeGroupSnapshot)",
  async (t) => {
    void t.array;
    const vols = [];
    for (let i = 0; i < MEMBERS; i++) vols.push(await t.createVolume(`atom${i}`, memberBytes(4096)));
    const clients: NbdClient[] = [];
    for (const v of vols) clients.push(await t.open({ lunId: v.volumeId }));
    const ids = vols.map((v) => v.volumeId);
    const line = await checkWriteOrder({
      clients,
      callName: "CreateVolumeGroupSnapshot",
      cut: async () => {
        const g = await t.groupSnapshot(t.name("atom"), ids);
        // Members in volume order, whatever order the driver lists them in.
        return ids.map((id) => g.snapshots.find((s) => s.sourceVolumeId === id)?.snapshotId ?? "").filter((s) => s !== "");
      },
      openSnapshot: (snapshotId) => t.open({ snapshotId }),
    });
    t.log(line);
  },
);
