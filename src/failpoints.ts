/**
 * TEST-ONLY failure injection: one environment variable, one registry.
 *
 *   SANBOX_FAILPOINTS=name[,name…]
 *
 * Two kinds of failpoint share the registry below:
 *  - a *fault* makes an array break one rule of its contract on purpose, so
 *    the conformance suite can prove it catches that break (docs/conformance.md
 *    "Failpoints"). Faults are applied as wrappers around the real objects when
 *    the daemon starts (simulator/array/faults/), never as branches inside them.
 *  - a *stop* halts a process at one step of its work: the process reaching
 *    `stopAt(name)` prints "failpoint NAME" on stderr and waits there to be
 *    killed, so crash tests kill -9 at an exact point (bbolt's pattern); a
 *    SIGINT/SIGTERM stops it as it stops the work around it.
 *
 * The variable is read once per process; an unknown name is an error naming
 * the known ones, never a silent no-op. Without the variable `stopAt` is one
 * set lookup.
 */
import { InvalidArgumentError, quote } from "./errors.js";

export const FAILPOINTS_ENV = "SANBOX_FAILPOINTS";

export const FAILPOINTS = {
  "cbt-drop-zero": { kind: "fault", what: "GetChangedBlocks omits ZERO extents (a TRIM/WRITE_ZEROES is lost)" },
  "cbt-off-by-one": { kind: "fault", what: "GetChangedBlocks reports its first extent one block too far" },
  "cbt-ignore-starting-offset": { kind: "fault", what: "GetChangedBlocks always streams from offset 0" },
  "group-skew": { kind: "fault", what: "a group snapshot cuts its members one by one, 200 ms apart" },
  "snapshot-leak": { kind: "fault", what: "a snapshot export reads its first block from the live LUN" },
  "wrong-status": { kind: "fault", what: "GetLun/GetSnapshot answer INTERNAL instead of NOT_FOUND" },
  "csi-delta-overlap": { kind: "fault", what: "GetMetadataDelta: a message's first tuple overlaps the previous message's last" },
  "csi-delta-before-start": { kind: "fault", what: "GetMetadataDelta: the first tuple ends at or before starting_offset" },
  "csi-capacity-changes": { kind: "fault", what: "GetMetadataDelta: the last message reports another volume_capacity_bytes" },
  "csi-max-results-exceeded": { kind: "fault", what: "GetMetadataDelta: max_results + 1 tuples per message" },
  "csi-negative-offset-code": { kind: "fault", what: "SnapshotMetadata: a negative starting_offset is INVALID_ARGUMENT, not OUT_OF_RANGE" },
  "csi-group-not-idempotent": { kind: "fault", what: "CreateVolumeGroupSnapshot makes a new group for an existing name" },
  "csi-group-delete-not-found": { kind: "fault", what: "DeleteVolumeGroupSnapshot of a gone group answers NOT_FOUND, not OK" },
  "csi-delta-drop-extent": { kind: "fault", what: "GetMetadataDelta leaves out one changed extent" },
  "csi-fixed-unequal": { kind: "fault", what: "GetMetadataDelta in FIXED_LENGTH mode: one tuple has another size" },
  "after-s1": { kind: "stop", what: "backup: after the T1 group snapshot, before the RDM copy" },
  "in-quiesce": { kind: "stop", what: "backup: while the VM is quiesced, before the T2 snapshot" },
  "after-s2": { kind: "stop", what: "backup: after the T2 snapshot and resume" },
  "before-commit": { kind: "stop", what: "backup: all data written, before the point is committed" },
  "before-rename": { kind: "stop", what: "repository: the point file written, before its atomic rename" },
} as const satisfies Record<string, { kind: "fault" | "stop"; what: string }>;

export type FailpointName = keyof typeof FAILPOINTS;
export type FaultName = { [K in FailpointName]: (typeof FAILPOINTS)[K]["kind"] extends "fault" ? K : never }[FailpointName];
export type StopName = Exclude<FailpointName, FaultName>;

export const FAILPOINT_NAMES = Object.keys(FAILPOINTS) as FailpointName[];

function isName(s: string): s is FailpointName {
  return Object.hasOwn(FAILPOINTS, s);
}

export function parseFailpoints(text: string | undefined): ReadonlySet<FailpointName> {
  const out = new Set<FailpointName>();
  for (const raw of (text ?? "").split(",")) {
    const name = raw.trim();
    if (name === "") continue;
    if (!isName(name)) throw new InvalidArgumentError(`${FAILPOINTS_ENV}: unknown failpoint ${quote(name)} (known: ${FAILPOINT_NAMES.join(", ")})`);
    out.add(name);
  }
  return out;
}

let active: ReadonlySet<FailpointName> | undefined;

/** The failpoints of this process, read from the environment once. */
export function activeFailpoints(): ReadonlySet<FailpointName> {
  active ??= parseFailpoints(process.env[FAILPOINTS_ENV]);
  return active;
}

/** The active faults, for a daemon to wrap its objects with at start-up. */
export function activeFaults(): ReadonlySet<FaultName> {
  return new Set([...activeFailpoints()].filter((n): n is FaultName => FAILPOINTS[n].kind === "fault"));
}

/**
 * Halt here if the stop `name` is active: announce it on stderr and wait to be
 * killed. A halted process is still a process a person can stop: when
 * `signal` aborts (the CLI's first SIGINT/SIGTERM), the wait rejects with its
 * reason, so the caller cleans up and the command exits 130 / 143 as it would
 * anywhere else; without a signal it waits for the kill.
 */
export async function stopAt(name: StopName, signal?: AbortSignal): Promise<void> {
  if (!activeFailpoints().has(name)) return;
  process.stderr.write(`failpoint ${name}\n`);
  // A pending promise alone keeps no process alive: Node would exit 13 (an unsettled top-level await) with nothing to wait for.
  const alive = setInterval(() => undefined, 2 ** 30);
  try {
    await new Promise<never>((_, reject) => {
      if (signal === undefined) return;
      if (signal.aborted) reject(signal.reason as Error);
      signal.addEventListener("abort", () => reject(signal.reason as Error), { once: true });
    });
  } finally {
    clearInterval(alive);
  }
}
