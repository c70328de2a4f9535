/**
 * TEST-ONLY failpoints: deliberate contract violations, so the conformance
 * suite can prove it catches them (issue 7, docs/conformance.md "Failpoints").
 * All are OFF unless named in the environment variable SANBOX_FAILPOINTS
 * (comma-separated) when the array daemon starts; the daemon then logs a
 * warning. Never enable them on an array that holds data you care about.
 *
 *   cbt-drop-zero               GetChangedBlocks omits ZERO extents (a TRIM/WRITE_ZEROES is lost)
 *   cbt-off-by-one              GetChangedBlocks reports its first extent one block too far
 *   cbt-ignore-starting-offset  GetChangedBlocks always streams from offset 0
 *   group-skew                  a group snapshot cuts its members one by one, 200 ms apart
 *   snapshot-leak               a snapshot export reads its first block from the live LUN
 *   wrong-status                GetLun/GetSnapshot answer INTERNAL instead of NOT_FOUND
 */
import { InvalidArgumentError } from "../../../src/errors.js";

export const FAILPOINT_NAMES = ["cbt-drop-zero", "cbt-off-by-one", "cbt-ignore-starting-offset", "group-skew", "snapshot-leak", "wrong-status"] as const;
export type FailpointName = (typeof FAILPOINT_NAMES)[number];

export const FAILPOINTS_ENV = "SANBOX_FAILPOINTS";

/** Delay between member cuts under `group-skew`. */
export const GROUP_SKEW_MS = 200;

function isName(s: string): s is FailpointName {
  return (FAILPOINT_NAMES as readonly string[]).includes(s);
}

export function parseFailpoints(text: string | undefined): ReadonlySet<FailpointName> {
  const out = new Set<FailpointName>();
  for (const raw of (text ?? "").split(",")) {
    const n = raw.trim();
    if (n === "") continue;
    if (!isName(n)) throw new InvalidArgumentError(`${FAILPOINTS_ENV}: unknown failpoint "${n}" (known: ${FAILPOINT_NAMES.join(", ")})`);
    out.add(n);
  }
  return out;
}

let active: ReadonlySet<FailpointName> | undefined;

/** The failpoints of this process, read from the environment once (at daemon start). */
export function activeFailpoints(): ReadonlySet<FailpointName> {
  active ??= parseFailpoints(process.env[FAILPOINTS_ENV]);
  return active;
}

export function failpoint(name: FailpointName): boolean {
  return activeFailpoints().has(name);
}
