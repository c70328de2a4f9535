/**
 * The dependent-write workload, as a pure generator: given a spec (seed, VM, disks)
 * it yields one causal chain of operations across every VMDK and RDM of the VM.
 * The executor (the simulated hypervisor) performs operation n only after operation
 * n-1 was acknowledged, and records each acknowledgement in a Journal.
 *
 * Mix per operation (profile 1, part of the stamp contract with prng.ts):
 *   ~12% trim of 1-8 stamp blocks; ~6% growth of a VMDK that is below its max size
 *   (by 1-16 × 64 KiB, capped); otherwise a one-block stamped write, 35% of them
 *   overwriting a block written before on that disk.
 * Every write is exactly one STAMP_SIZE block at a STAMP_SIZE-aligned offset, so an
 * acknowledged write is all-or-nothing on any device with 4 KiB-or-larger blocks.
 */
import { InvalidArgumentError, quote } from "../errors.js";
import { Prng } from "./prng.js";
import { STAMP_SIZE, encodeDescriptor, encodeStamp, type WorkloadDisk, type WorkloadSpec } from "./stamp.js";

export type WorkloadOp =
  | { seq: number; kind: "write"; disk: number; diskId: string; offset: number; length: number }
  | { seq: number; kind: "trim"; disk: number; diskId: string; offset: number; length: number }
  | { seq: number; kind: "grow"; disk: number; diskId: string; size: number };

const GROW_UNIT = 64 * 1024;

export class Workload {
  readonly spec: WorkloadSpec;
  readonly descriptor: Buffer;
  private readonly rng: Prng;
  private readonly sizes: number[];
  private readonly written: number[][];
  private seq = 0;

  constructor(spec: WorkloadSpec) {
    this.descriptor = encodeDescriptor(spec);
    this.spec = { seed: spec.seed >>> 0, vm: spec.vm, disks: spec.disks.map((d) => ({ ...d, maxSize: d.maxSize ?? d.size })) };
    this.rng = new Prng(this.spec.seed);
    this.sizes = this.spec.disks.map((d) => d.size);
    this.written = this.spec.disks.map(() => []);
  }

  /** The sequence number of the last operation generated. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Current (generated) size of each disk. */
  diskSize(disk: number): number {
    const s = this.sizes[disk];
    if (s === undefined) throw new InvalidArgumentError(`no disk ${disk}`);
    return s;
  }

  next(): WorkloadOp {
    const seq = ++this.seq;
    const r = this.rng;
    const disk = r.int(this.spec.disks.length);
    const d = this.spec.disks[disk] as Required<WorkloadDisk>;
    const size = this.sizes[disk] as number;
    const blocks = size / STAMP_SIZE;
    const roll = r.float();
    if (roll < 0.12) {
      const n = 1 + r.int(8);
      const first = r.int(blocks);
      const count = Math.min(n, blocks - first);
      return { seq, kind: "trim", disk, diskId: d.id, offset: first * STAMP_SIZE, length: count * STAMP_SIZE };
    }
    if (roll < 0.18 && d.kind === "vmdk" && size < d.maxSize) {
      const grown = Math.min(d.maxSize, size + (1 + r.int(16)) * GROW_UNIT);
      this.sizes[disk] = grown;
      return { seq, kind: "grow", disk, diskId: d.id, size: grown };
    }
    const hist = this.written[disk] as number[];
    let offset: number;
    if (hist.length > 0 && r.chance(0.35)) offset = hist[r.int(hist.length)] as number;
    else {
      offset = r.int(blocks) * STAMP_SIZE;
      hist.push(offset);
    }
    return { seq, kind: "write", disk, diskId: d.id, offset, length: STAMP_SIZE };
  }

  /** The next `n` operations. */
  take(n: number): WorkloadOp[] {
    const out: WorkloadOp[] = [];
    for (let i = 0; i < n; i++) out.push(this.next());
    return out;
  }

  /** The block a write operation puts on its disk. */
  stampFor(op: WorkloadOp): Buffer {
    if (op.kind !== "write") throw new InvalidArgumentError(`operation ${op.seq} is a ${op.kind}, not a write`);
    return encodeStamp(this.descriptor, op.disk, op.seq, op.offset);
  }
}

/** Expected content of every disk after the first `n` operations: size and block offset -> seq. */
export interface ExpectedDisk {
  id: string;
  size: number;
  blocks: Map<number, number>;
}

export function expectedAt(spec: WorkloadSpec, ops: readonly WorkloadOp[], n: number): ExpectedDisk[] {
  const disks: ExpectedDisk[] = spec.disks.map((d) => ({ id: d.id, size: d.size, blocks: new Map() }));
  for (const op of ops) {
    if (op.seq > n) break;
    const d = disks[op.disk];
    if (d === undefined) throw new InvalidArgumentError(`operation ${op.seq} names disk ${op.disk}`);
    if (op.kind === "write") d.blocks.set(op.offset, op.seq);
    else if (op.kind === "trim") for (let o = op.offset; o < op.offset + op.length; o += STAMP_SIZE) d.blocks.delete(o);
    else d.size = op.size;
  }
  return disks;
}

/**
 * The acknowledged prefix of a chain. The executor calls `ack(op)` once the
 * operation completed; tests ask what each disk held at sequence n.
 */
export class Journal {
  private readonly acked: WorkloadOp[] = [];
  constructor(readonly workload: Workload) {}

  ack(op: WorkloadOp): void {
    if (op.seq !== this.acked.length + 1) throw new InvalidArgumentError(`acknowledgement out of order: ${op.seq} after ${this.acked.length}`);
    this.acked.push(op);
  }

  get lastSeq(): number {
    return this.acked.length;
  }

  get ops(): readonly WorkloadOp[] {
    return this.acked;
  }

  expectedAt(n: number): ExpectedDisk[] {
    if (n > this.acked.length) throw new InvalidArgumentError(`sequence ${n} was not acknowledged (last is ${this.acked.length})`);
    return expectedAt(this.workload.spec, this.acked, n);
  }

  /** The raw image of disk `diskId` as of sequence n (stamps where written, zeros elsewhere). */
  imageAt(n: number, diskId: string): Buffer {
    const disk = this.workload.spec.disks.findIndex((d) => d.id === diskId);
    const d = this.expectedAt(n)[disk];
    if (d === undefined) throw new InvalidArgumentError(`no disk ${quote(diskId)}`);
    const img = Buffer.alloc(d.size);
    for (const [offset, seq] of d.blocks) encodeStamp(this.workload.descriptor, disk, seq, offset).copy(img, offset);
    return img;
  }
}
