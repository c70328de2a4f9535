/**
 * Snapshot ids of the local block store carry their snapshot's place in history,
 * so a deleted snapshot needs no record to stay a CBT base (docs/store.md
 * "Deleted snapshots"):
 *
 *   snap-LLLLLLLLEEEEEEEEEEEETTTTTTTTTTTTTTTT
 *        line     epoch       tag              (8 + 12 + 16 lower-case hex digits)
 *
 * A CBT answer from a base depends only on the base's (line, epoch) (cbt.ts), and
 * (line, epoch) names exactly one cut ever made: every cut moves its line to the
 * next epoch and line numbers are never reused. The tag is the first 8 bytes of
 * HMAC-SHA256(the data directory's id key, "line:epoch"), so only ids this store
 * issued resolve; anything else (a typo, another array's id, a forged one) stays
 * NOT_FOUND, as the contract says for unknown ids. Ids stay opaque to callers
 * (docs/contract.md "Identifiers") and within `snap-[0-9a-f]+`, which export
 * names and URIs already carry.
 *
 * Ids issued before this format (`snap-` + 16 random hex digits) do not parse;
 * their deleted snapshots keep a tombstone record as before (reclaim.ts).
 */
import { createHmac, randomBytes } from "node:crypto";

const ID = /^snap-([0-9a-f]{8})([0-9a-f]{12})([0-9a-f]{16})$/;
const MAX_LINE = 0xffffffff;
const MAX_EPOCH = 2 ** 48 - 1;

export interface SnapshotPlace {
  line: number;
  epoch: number;
}

/** A fresh key for a new (or pre-format) data directory, stored in its counters record. */
export function newIdKey(): string {
  return randomBytes(32).toString("hex");
}

function tag(key: string, line: number, epoch: number): string {
  return createHmac("sha256", Buffer.from(key, "hex")).update(`${line}:${epoch}`).digest("hex").slice(0, 16);
}

export function snapshotId(key: string, place: SnapshotPlace): string {
  if (!Number.isSafeInteger(place.line) || place.line < 1 || place.line > MAX_LINE) throw new RangeError(`line ${place.line} does not fit a snapshot id`);
  if (!Number.isSafeInteger(place.epoch) || place.epoch < 1 || place.epoch > MAX_EPOCH) throw new RangeError(`epoch ${place.epoch} does not fit a snapshot id`);
  return `snap-${place.line.toString(16).padStart(8, "0")}${place.epoch.toString(16).padStart(12, "0")}${tag(key, place.line, place.epoch)}`;
}

/** The (line, epoch) of an id this store issued, or null for anything else. */
export function parseSnapshotId(key: string, id: string): SnapshotPlace | null {
  const m = ID.exec(id);
  if (!m) return null;
  const line = Number.parseInt(m[1] ?? "", 16);
  const epoch = Number.parseInt(m[2] ?? "", 16);
  if (line < 1 || epoch < 1 || tag(key, line, epoch) !== m[3]) return null;
  return { line, epoch };
}
