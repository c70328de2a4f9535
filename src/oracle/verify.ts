/**
 * The dependent-write oracle: is a set of disk images time-consistent?
 *
 * The images carry everything needed: each stamp names its disk and holds the
 * workload descriptor, so the oracle regenerates the operation chain (workload.ts)
 * and replays it, keeping a running count of blocks whose image content differs
 * from what the chain says after n operations. The answer is the largest n with
 * no difference: the images hold exactly the writes (and trims) up to n, a prefix.
 *
 * When no prefix fits, the report names the best-fitting n (fewest differing
 * blocks, latest on ties) and every block that breaks it, by disk and offset:
 * a stamp from after n, a write up to n that is missing, a trimmed block still
 * holding data, a torn block, or a block from another disk or chain.
 */
import type { BlockDevice } from "../block-device.js";
import { crc32c } from "../datastore/crc32c.js";
import { InvalidArgumentError } from "../errors.js";
import { STAMP_SIZE, classifyBlock, decodeDescriptor, type Stamp, type WorkloadSpec } from "./stamp.js";
import { Workload } from "./workload.js";

/** The read side of a block device (src/block-device.ts): a raw file, a memory disk, an NBD export, a datastore file. */
export type ImageSource = Pick<BlockDevice, "size" | "read">;

export interface NamedImage {
  name: string;
  source: ImageSource;
}

export type Found = { kind: "zero" } | { kind: "stamp"; seq: number } | { kind: "torn"; reason: string } | { kind: "foreign"; reason: string };

export interface ScannedImage {
  name: string;
  size: number;
  /** Non-zero blocks by offset. */
  blocks: Map<number, { content: "stamp"; stamp: Stamp } | { content: "torn"; reason: string }>;
}

export interface Violation {
  disk: string;
  /** The image holding the disk ("" when no image was given for it). */
  image: string;
  offset: number;
  /** What the chain says the block holds at the reported prefix: a sequence number, or 0 for zeros. */
  expectedSeq: number;
  found: Found;
}

export interface ConsistencyReport {
  consistent: boolean;
  /** Consistent: the largest n the images match exactly. Otherwise: the best-fitting n. */
  prefix: number;
  /** Highest sequence number found in any stamp. */
  maxSeq: number;
  vm: string | undefined;
  seed: number | undefined;
  disks: { id: string; kind: string; image: string; stamps: number }[];
  violations: Violation[];
  /** The chain was replayed up to this sequence number. */
  horizon: number;
  /**
   * Set when the images hold the prefix plus part of the next operation (a multi-block
   * trim that was in flight when a crash-consistent snapshot was cut): still consistent.
   */
  inFlight?: number;
}

export interface VerifyOptions {
  /** Use this spec instead of the one found in the stamps (required to judge all-empty images against a chain). */
  spec?: WorkloadSpec;
  /** Replay the chain this far (default: highest stamp + tail). Pass the journal length when known. */
  horizon?: number;
  /** Operations replayed past the highest stamp seen (trims and growth leave no stamps); default 4096. */
  tail?: number;
  /** Bytes read per request while scanning (default 4 MiB). */
  chunkSize?: number;
}

/** Reads an image and classifies every STAMP_SIZE block (zero blocks are not kept). */
export async function scanImage(name: string, src: ImageSource, chunkSize = 4 * 1024 * 1024): Promise<ScannedImage> {
  const blocks: ScannedImage["blocks"] = new Map();
  const chunk = Math.max(STAMP_SIZE, chunkSize - (chunkSize % STAMP_SIZE));
  const usable = src.size - (src.size % STAMP_SIZE);
  for (let at = 0; at < usable; at += chunk) {
    const len = Math.min(chunk, usable - at);
    const buf = await src.read(at, len);
    for (let o = 0; o < len; o += STAMP_SIZE) {
      const c = classifyBlock(buf.subarray(o, o + STAMP_SIZE));
      if (c.kind === "stamp") blocks.set(at + o, { content: "stamp", stamp: c.stamp });
      else if (c.kind === "torn") blocks.set(at + o, { content: "torn", reason: c.reason });
    }
  }
  return { name, size: src.size, blocks };
}

export async function verifyConsistency(images: readonly NamedImage[], opts: VerifyOptions = {}): Promise<ConsistencyReport> {
  const scans: ScannedImage[] = [];
  for (const im of images) scans.push(await scanImage(im.name, im.source, opts.chunkSize));
  return verifyScans(scans, opts);
}

const key = (disk: number, offset: number): string => `${disk}:${offset}`;

/** The oracle over already-scanned images (pure). */
export function verifyScans(scans: readonly ScannedImage[], opts: VerifyOptions = {}): ConsistencyReport {
  // 1. The chain: the spec given, else the descriptor most stamps carry.
  let spec = opts.spec;
  if (spec === undefined) {
    const votes = new Map<number, { n: number; d: Buffer }>();
    for (const s of scans) for (const b of s.blocks.values()) if (b.content === "stamp") {
      const v = votes.get(b.stamp.chainId) ?? { n: 0, d: b.stamp.descriptor };
      v.n++;
      votes.set(b.stamp.chainId, v);
    }
    const best = [...votes.values()].sort((a, b) => b.n - a.n)[0];
    if (best !== undefined) spec = decodeDescriptor(best.d);
  }
  const workload = spec !== undefined ? new Workload(spec) : undefined;
  const chainId = workload !== undefined ? chainIdOf(workload.descriptor) : undefined;
  const disks = workload?.spec.disks ?? [];

  // 2. Which image is which disk: the disk index most of its stamps name.
  const imageOf = new Map<number, ScannedImage>();
  const unassigned: ScannedImage[] = [];
  for (const s of scans) {
    const counts = new Map<number, number>();
    for (const b of s.blocks.values()) if (b.content === "stamp" && b.stamp.chainId === chainId) counts.set(b.stamp.diskIndex, (counts.get(b.stamp.diskIndex) ?? 0) + 1);
    const top = [...counts].sort((a, b) => b[1] - a[1])[0];
    if (top === undefined) {
      unassigned.push(s);
      continue;
    }
    const other = imageOf.get(top[0]);
    if (other !== undefined) throw new InvalidArgumentError(`images ${other.name} and ${s.name} both hold disk ${disks[top[0]]?.id ?? top[0]}`);
    imageOf.set(top[0], s);
  }
  for (let d = 0; d < disks.length && unassigned.length > 0; d++) if (!imageOf.has(d)) imageOf.set(d, unassigned.shift() as ScannedImage);

  // 3. What each block actually holds, keyed by (disk, offset); only non-zero blocks.
  const actual = new Map<string, { disk: number; offset: number; image: string; found: Found }>();
  const extra: Violation[] = [];
  let maxSeq = 0;
  const stampCounts = new Map<number, number>();
  for (const [d, s] of imageOf) {
    for (const [offset, b] of s.blocks) {
      let found: Found;
      if (b.content === "torn") found = { kind: "torn", reason: b.reason };
      else if (b.stamp.chainId !== chainId) found = { kind: "foreign", reason: `stamp of another workload (chain ${b.stamp.chainId.toString(16)})` };
      else if (b.stamp.diskIndex !== d) found = { kind: "foreign", reason: `stamp ${b.stamp.seq} of disk ${disks[b.stamp.diskIndex]?.id ?? b.stamp.diskIndex}` };
      else if (b.stamp.offset !== offset) found = { kind: "foreign", reason: `stamp ${b.stamp.seq} written for offset ${b.stamp.offset}` };
      else {
        found = { kind: "stamp", seq: b.stamp.seq };
        maxSeq = Math.max(maxSeq, b.stamp.seq);
        stampCounts.set(d, (stampCounts.get(d) ?? 0) + 1);
      }
      actual.set(key(d, offset), { disk: d, offset, image: s.name, found });
    }
  }
  // Images that fit no disk of the chain: anything non-zero in them is a violation.
  for (const s of unassigned) {
    for (const [offset, b] of s.blocks) {
      extra.push({ disk: "?", image: s.name, offset, expectedSeq: 0, found: b.content === "torn" ? { kind: "torn", reason: b.reason } : { kind: "foreign", reason: "stamp of another workload" } });
    }
  }

  // 4. Replay the chain, counting blocks whose actual content differs from the expected.
  const horizon = opts.horizon ?? (workload === undefined ? 0 : maxSeq + (opts.tail ?? 4096));
  const ops = workload?.take(horizon) ?? [];
  const expected = new Map<string, number>();
  const sameAs = (k: string, exp: number): boolean => {
    const a = actual.get(k);
    if (a === undefined) return exp === 0;
    return a.found.kind === "stamp" && a.found.seq === exp;
  };
  let diff = 0;
  for (const a of actual.values()) if (a.found.kind !== "zero") diff++;
  let consistentAt = diff === 0 ? 0 : -1;
  let inFlight: number | undefined;
  let best = { n: 0, diff };
  const setExpected = (k: string, v: number): void => {
    const before = sameAs(k, expected.get(k) ?? 0);
    if (v === 0) expected.delete(k);
    else expected.set(k, v);
    const after = sameAs(k, v);
    diff += (after ? 0 : 1) - (before ? 0 : 1);
  };
  for (const op of ops) {
    const touched: [string, number][] = [];
    if (op.kind === "write") touched.push([key(op.disk, op.offset), op.seq]);
    else if (op.kind === "trim") for (let o = op.offset; o < op.offset + op.length; o += STAMP_SIZE) touched.push([key(op.disk, o), 0]);
    // State seq-1 with this operation partly applied (it was in flight at the cut): every
    // differing block is one this operation touched, and it already holds the new content.
    if (diff > 0) {
      let explained = 0;
      for (const [k, v] of touched) if (!sameAs(k, expected.get(k) ?? 0) && sameAs(k, v)) explained++;
      if (explained === diff) {
        consistentAt = op.seq - 1;
        inFlight = op.seq;
      }
    }
    for (const [k, v] of touched) setExpected(k, v);
    if (diff === 0) {
      consistentAt = op.seq;
      inFlight = undefined;
    }
    if (diff <= best.diff) best = { n: op.seq, diff };
  }
  const prefix = consistentAt >= 0 ? consistentAt : best.n;

  // 5. The violations at the reported prefix.
  const violations: Violation[] = [...extra];
  if (consistentAt < 0 || extra.length > 0) {
    const exp = new Map<string, { disk: number; offset: number; seq: number }>();
    for (const op of ops) {
      if (op.seq > prefix) break;
      if (op.kind === "write") exp.set(key(op.disk, op.offset), { disk: op.disk, offset: op.offset, seq: op.seq });
      else if (op.kind === "trim") for (let o = op.offset; o < op.offset + op.length; o += STAMP_SIZE) exp.delete(key(op.disk, o));
    }
    const keys = new Set([...exp.keys(), ...actual.keys()]);
    for (const k of keys) {
      const e = exp.get(k);
      const a = actual.get(k);
      const want = e?.seq ?? 0;
      if (sameAs(k, want)) continue;
      const disk = e?.disk ?? a?.disk ?? 0;
      violations.push({
        disk: disks[disk]?.id ?? String(disk),
        image: imageOf.get(disk)?.name ?? "",
        offset: e?.offset ?? a?.offset ?? 0,
        expectedSeq: want,
        found: a?.found ?? { kind: "zero" },
      });
    }
    violations.sort((x, y) => (x.disk < y.disk ? -1 : x.disk > y.disk ? 1 : x.offset - y.offset));
  }
  const report: ConsistencyReport = {
    consistent: violations.length === 0,
    prefix,
    maxSeq,
    vm: workload?.spec.vm,
    seed: workload?.spec.seed,
    disks: disks.map((d, i) => ({ id: d.id, kind: d.kind, image: imageOf.get(i)?.name ?? "", stamps: stampCounts.get(i) ?? 0 })),
    violations,
    horizon,
  };
  if (inFlight !== undefined && report.consistent) report.inFlight = inFlight;
  return report;
}

/** The stamp's chain id: CRC-32C of the descriptor. */
function chainIdOf(descriptor: Buffer): number {
  return crc32c(descriptor);
}

/** One line per violation, for humans. */
export function describeViolation(v: Violation): string {
  const want = v.expectedSeq === 0 ? "zeros" : `stamp ${v.expectedSeq}`;
  const got = v.found.kind === "stamp" ? `stamp ${v.found.seq}` : v.found.kind === "zero" ? "zeros" : `${v.found.kind} (${v.found.reason})`;
  return `disk ${v.disk}${v.image !== "" ? ` [${v.image}]` : ""} offset ${v.offset}: expected ${want}, found ${got}`;
}
