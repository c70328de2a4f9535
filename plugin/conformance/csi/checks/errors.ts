/**
 * Error codes with bad arguments, one check per row of the CSI spec's error
 * tables ("GetMetadataAllocated Errors", "GetMetadataDelta Errors",
 * "GetVolumeGroupSnapshot Errors") and the general rule that a missing
 * REQUIRED field is INVALID_ARGUMENT ("Error Scheme"). A negative
 * starting_offset and one past the volume are OUT_OF_RANGE: the tables list
 * "negative or exceeds the volume size" under OUT_OF_RANGE.
 */
import { history } from "../history.js";
import { csiCheck } from "../registry.js";
import { Status, drainStream, expectStatus } from "../expect-status.js";
import type { CsiContext } from "../context.js";

const UNKNOWN_ID = "csi-conformance-no-such-id";

interface Case {
  name: string;
  rule: string;
  code: Status;
  call: (t: CsiContext, h: { s1: string; s2: string; capacity: number }) => Promise<unknown>;
}

const allocated = (t: CsiContext, snapshotId: string, startingOffset = 0, maxResults = 0): Promise<number> =>
  drainStream(t.csi.snapshotMetadata.getMetadataAllocated({ snapshotId, startingOffset, maxResults, secrets: t.secrets }));
const delta = (t: CsiContext, baseSnapshotId: string, targetSnapshotId: string, startingOffset = 0, maxResults = 0): Promise<number> =>
  drainStream(t.csi.snapshotMetadata.getMetadataDelta({ baseSnapshotId, targetSnapshotId, startingOffset, maxResults, secrets: t.secrets }));

const CASES: Record<string, Case[]> = {
  "get-metadata-allocated": [
    { name: "missing-snapshot-id", rule: "an empty snapshot_id is INVALID_ARGUMENT (GetMetadataAllocated Errors: missing argument)", code: Status.INVALID_ARGUMENT, call: (t) => allocated(t, "") },
    { name: "unknown-snapshot", rule: "an unknown snapshot_id is NOT_FOUND (GetMetadataAllocated Errors: invalid snapshot_id)", code: Status.NOT_FOUND, call: (t) => allocated(t, UNKNOWN_ID) },
    { name: "negative-offset", rule: "a negative starting_offset is OUT_OF_RANGE (GetMetadataAllocated Errors: invalid starting_offset)", code: Status.OUT_OF_RANGE, call: (t, h) => allocated(t, h.s1, -4096) },
    { name: "offset-past-end", rule: "a starting_offset beyond the volume size is OUT_OF_RANGE (GetMetadataAllocated Errors: invalid starting_offset)", code: Status.OUT_OF_RANGE, call: (t, h) => allocated(t, h.s1, 2 * h.capacity) },
    { name: "negative-max-results", rule: "a negative max_results is INVALID_ARGUMENT (GetMetadataAllocated Errors: otherwise invalid argument)", code: Status.INVALID_ARGUMENT, call: (t, h) => allocated(t, h.s1, 0, -1) },
  ],
  "get-metadata-delta": [
    { name: "missing-base", rule: "an empty base_snapshot_id is INVALID_ARGUMENT (GetMetadataDelta Errors: missing argument)", code: Status.INVALID_ARGUMENT, call: (t, h) => delta(t, "", h.s2) },
    { name: "missing-target", rule: "an empty target_snapshot_id is INVALID_ARGUMENT (GetMetadataDelta Errors: missing argument)", code: Status.INVALID_ARGUMENT, call: (t, h) => delta(t, h.s1, "") },
    { name: "unknown-base", rule: "an unknown base_snapshot_id is NOT_FOUND (GetMetadataDelta Errors: invalid base_snapshot_id)", code: Status.NOT_FOUND, call: (t, h) => delta(t, UNKNOWN_ID, h.s2) },
    { name: "unknown-target", rule: "an unknown target_snapshot_id is NOT_FOUND (GetMetadataDelta Errors: invalid target_snapshot_id)", code: Status.NOT_FOUND, call: (t, h) => delta(t, h.s1, UNKNOWN_ID) },
    { name: "negative-offset", rule: "a negative starting_offset is OUT_OF_RANGE (GetMetadataDelta Errors: invalid starting_offset)", code: Status.OUT_OF_RANGE, call: (t, h) => delta(t, h.s1, h.s2, -4096) },
    { name: "offset-past-end", rule: "a starting_offset beyond the volume size is OUT_OF_RANGE (GetMetadataDelta Errors: invalid starting_offset)", code: Status.OUT_OF_RANGE, call: (t, h) => delta(t, h.s1, h.s2, 2 * h.capacity) },
    { name: "negative-max-results", rule: "a negative max_results is INVALID_ARGUMENT (GetMetadataDelta Errors: otherwise invalid argument)", code: Status.INVALID_ARGUMENT, call: (t, h) => delta(t, h.s1, h.s2, 0, -1) },
  ],
  "create-volume-group-snapshot": [
    {
      name: "missing-name",
      rule: "CreateVolumeGroupSnapshot without a name is INVALID_ARGUMENT (name is REQUIRED; Error Scheme)",
      code: Status.INVALID_ARGUMENT,
      call: async (t) => {
        const v = await t.createVolume("err", 4 * 1024 * 1024);
        return t.csi.groupController.createVolumeGroupSnapshot({ name: "", sourceVolumeIds: [v.volumeId], secrets: t.secrets });
      },
    },
    {
      name: "no-source-volumes",
      rule: "CreateVolumeGroupSnapshot without source_volume_ids is INVALID_ARGUMENT (source_volume_ids is REQUIRED; Error Scheme)",
      code: Status.INVALID_ARGUMENT,
      call: (t) => t.csi.groupController.createVolumeGroupSnapshot({ name: t.name("nosrc"), sourceVolumeIds: [], secrets: t.secrets }),
    },
  ],
  "get-volume-group-snapshot": [
    {
      name: "unknown-group",
      rule: "GetVolumeGroupSnapshot of an unknown group_snapshot_id is NOT_FOUND (GetVolumeGroupSnapshot Errors: volume group snapshot does not exist)",
      code: Status.NOT_FOUND,
      call: (t) => t.csi.groupController.getVolumeGroupSnapshot({ groupSnapshotId: UNKNOWN_ID, snapshotIds: [], secrets: t.secrets }),
    },
  ],
};

for (const [rpc, cases] of Object.entries(CASES)) {
  for (const c of cases) {
    csiCheck(`csi.errors.${rpc}.${c.name}`, c.rule, async (t) => {
      const h = rpc.startsWith("get-metadata") ? await history(t) : { s1: "", s2: "", capacity: 0 };
      await expectStatus(() => c.call(t, h), c.code, `${rpc} (${c.name})`);
    });
  }
}
