/**
 * The datastore's single-writer lease: a 512-byte record at LUN byte 2048, in
 * the reserved area between the two superblock slots, that names the one host
 * allowed to write the datastore (docs/datastore-format.md "The writer lease").
 * It is a delta lease in the manner of sanlock and VMFS heartbeats on a disk
 * without compare-and-swap (NBD has no SCSI COMPARE AND WRITE):
 *
 *   - The holder rewrites the record (FUA) every heartbeat, with its wall-clock
 *     time and a count. A record whose heartbeat is older than the timeout it
 *     states is **stale** and may be taken over.
 *   - Acquiring is read → judge → write our record (FUA) → wait `settleMs` →
 *     read again: a rival who wrote meanwhile is seen, and of two writers only
 *     the last one finds its own record there. (Exact as long as no rival's
 *     read-to-write gap exceeds the settle delay; a real array would use ATS.)
 *   - The holder counts its lease valid for half the timeout after its last
 *     heartbeat; a taker waits the whole timeout. The other half covers clock
 *     skew between hosts and writes in flight. Past validity the holder must
 *     stop writing (the hypervisor fences its datastore) until it retakes the
 *     lease, which is a full acquire: a rival may have taken it meanwhile.
 *   - The record names the LUN it was taken on (`resource`, the array's LUN
 *     id). A clone of a snapshot carries the parent's bytes, lease included;
 *     a record naming another LUN is free, so a clone is never held by its
 *     parent's lease. A read-only open (a snapshot) never looks at the lease.
 *   - The same holder (same id: the hypervisor's id is kept in its data
 *     directory, which one daemon locks) retakes its own record at once, live
 *     or stale, e.g. after a restart of the hypervisor or of the array.
 *   - A damaged record (not all zeros, but bad magic, CRC or version) has no
 *     usable heartbeat: a taker watches it for a whole timeout (its own: so the
 *     hosts' timeouts must be within a factor of two of each other) and takes
 *     it over only if it did not change. A holder that finds its own record
 *     damaged (a torn heartbeat) rewrites it.
 *
 * The encoders and `judgeLease` are pure; `DatastoreLease` does the I/O on a
 * BlockDevice with an injected clock, so tests drive it on simulated time.
 */
import type { BlockDevice } from "../block-device.js";
import { FailedPreconditionError, InvalidArgumentError, quote } from "../errors.js";
import { ByteReader, ByteWriter } from "./byte-codec.js";
import { crc32c } from "./crc32c.js";

export const LEASE_OFFSET = 2048;
export const LEASE_SIZE = 512;
export const LEASE_MAGIC = Buffer.from("SBXLEASE", "latin1");
export const LEASE_VERSION = 1;
export const MAX_RESOURCE_BYTES = 128;
export const MAX_HOLDER_NAME_BYTES = 256;
const RESOURCE_AT = 56;
const NAME_AT = RESOURCE_AT + MAX_RESOURCE_BYTES;
const CRC_AT = LEASE_SIZE - 4;
const STATE_CODE = { held: 1, released: 2 } as const;

export interface LeaseHolder {
  /** 32 lowercase hex digits, stable for the host (the hypervisor keeps it in hypervisor.json). */
  id: string;
  /** How messages name the holder (hostname and data directory); cut to 256 UTF-8 bytes. */
  name: string;
  pid: number;
}

export interface LeaseRecord {
  state: "held" | "released";
  /** The holder's timeout: the record is stale this long after `heartbeatAt`. */
  timeoutMs: number;
  holder: LeaseHolder;
  /** The holder's wall clock at its last heartbeat, ms since the Unix epoch. */
  heartbeatAt: number;
  /** 1 when taken, +1 per heartbeat. */
  count: number;
  /** The LUN the lease was taken on (the array's LUN id); cut to 128 UTF-8 bytes. */
  resource: string;
}

export type DecodedLease = { kind: "zero" } | { kind: "damaged"; reason: string } | { kind: "record"; record: LeaseRecord };

/** `s` cut to at most `max` UTF-8 bytes, never inside a character. */
function fitUtf8(s: string, max: number): Buffer {
  const b = Buffer.from(s, "utf8");
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--; // back off continuation bytes
  return b.subarray(0, end);
}

function checkHolderId(id: string): void {
  if (!/^[0-9a-f]{32}$/.test(id)) throw new InvalidArgumentError(`lease holder id must be 32 hex digits, got ${quote(id)}`);
}

export function encodeLease(r: LeaseRecord): Buffer {
  checkHolderId(r.holder.id);
  const resource = fitUtf8(r.resource, MAX_RESOURCE_BYTES);
  const name = fitUtf8(r.holder.name, MAX_HOLDER_NAME_BYTES);
  const w = new ByteWriter();
  w.bytes(LEASE_MAGIC).u16(LEASE_VERSION).u16(STATE_CODE[r.state]).u32(r.timeoutMs);
  w.bytes(Buffer.from(r.holder.id, "hex")).u64(r.heartbeatAt).u64(r.count).u32(r.holder.pid).u16(resource.length).u16(name.length);
  w.bytes(resource).zeros(MAX_RESOURCE_BYTES - resource.length).bytes(name).zeros(MAX_HOLDER_NAME_BYTES - name.length);
  w.zeros(LEASE_SIZE - w.length);
  const out = w.finish();
  out.writeUInt32LE(crc32c(out.subarray(0, CRC_AT)), CRC_AT);
  return out;
}

export function decodeLease(buf: Buffer): DecodedLease {
  if (buf.length !== LEASE_SIZE) return { kind: "damaged", reason: `record is ${buf.length} bytes, not ${LEASE_SIZE}` };
  if (buf.every((x) => x === 0)) return { kind: "zero" };
  if (!buf.subarray(0, 8).equals(LEASE_MAGIC)) return { kind: "damaged", reason: "bad magic" };
  if (buf.readUInt32LE(CRC_AT) !== crc32c(buf.subarray(0, CRC_AT))) return { kind: "damaged", reason: "checksum mismatch" };
  const r = new ByteReader(buf, "lease");
  r.skip(8);
  const version = r.u16();
  if (version !== LEASE_VERSION) return { kind: "damaged", reason: `unknown version ${version}` };
  const code = r.u16();
  const state = code === STATE_CODE.held ? "held" : code === STATE_CODE.released ? "released" : undefined;
  if (state === undefined) return { kind: "damaged", reason: `unknown state ${code}` };
  const timeoutMs = r.u32();
  const id = r.bytes(16).toString("hex");
  const heartbeatAt = r.u64();
  const count = r.u64();
  const pid = r.u32();
  const resourceLen = r.u16();
  const nameLen = r.u16();
  if (resourceLen > MAX_RESOURCE_BYTES || nameLen > MAX_HOLDER_NAME_BYTES) return { kind: "damaged", reason: "field length out of range" };
  const resource = buf.subarray(RESOURCE_AT, RESOURCE_AT + resourceLen).toString("utf8");
  const name = buf.subarray(NAME_AT, NAME_AT + nameLen).toString("utf8");
  return { kind: "record", record: { state, timeoutMs, holder: { id, name, pid }, heartbeatAt, count, resource } };
}

export type LeaseVerdict =
  | { kind: "free"; why: "zero" | "released" | "another LUN" }
  | { kind: "mine"; record: LeaseRecord }
  | { kind: "stale"; record: LeaseRecord }
  | { kind: "held"; record: LeaseRecord }
  | { kind: "damaged"; reason: string };

/** What a record means to host `me` opening LUN `resource` at wall-clock time `now`. */
export function judgeLease(d: DecodedLease, me: { holderId: string; resource: string }, now: number): LeaseVerdict {
  if (d.kind === "zero") return { kind: "free", why: "zero" };
  if (d.kind === "damaged") return d;
  const r = d.record;
  if (r.resource !== fitUtf8(me.resource, MAX_RESOURCE_BYTES).toString("utf8")) return { kind: "free", why: "another LUN" };
  if (r.state === "released") return { kind: "free", why: "released" };
  if (r.holder.id === me.holderId) return { kind: "mine", record: r };
  if (now > r.heartbeatAt + r.timeoutMs) return { kind: "stale", record: r };
  return { kind: "held", record: r };
}

/** `hypervisor "NAME" (pid P, id 0123abcd…), last heartbeat 1.2 s ago, stale 10 s after it`. */
export function describeHolder(r: LeaseRecord, now: number): string {
  const age = ((now - r.heartbeatAt) / 1000).toFixed(1);
  return `hypervisor ${quote(r.holder.name)} (pid ${r.holder.pid}, id ${r.holder.id.slice(0, 8)}…), last heartbeat ${age} s ago, stale ${r.timeoutMs / 1000} s after it`;
}

/**
 * For tools that write a datastore without taking its lease (`sanbox ds`, which
 * knows no LUN id): refuse while any host's lease on the device is live.
 */
export async function refuseLiveLease(dev: BlockDevice, what: string, now = Date.now()): Promise<void> {
  if (dev.size < LEASE_OFFSET + LEASE_SIZE) return;
  const d = decodeLease(await dev.read(LEASE_OFFSET, LEASE_SIZE));
  if (d.kind === "record" && d.record.state === "held" && now <= d.record.heartbeatAt + d.record.timeoutMs) {
    throw new FailedPreconditionError(`${what} is in use by ${describeHolder(d.record, now)}`);
  }
}

export interface LeaseClock {
  /** Wall-clock ms since the Unix epoch: heartbeats from different hosts are compared on it. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const SYSTEM_CLOCK: LeaseClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface LeaseOptions {
  device: BlockDevice;
  /** The LUN this lease is for (the array's LUN id). */
  resource: string;
  holder: LeaseHolder;
  timeoutMs: number;
  /** Wait between writing our record and checking that it is still there. */
  settleMs: number;
  /** How messages name the datastore, e.g. `datastore ds (lun/ds)`. */
  what: string;
  clock?: LeaseClock;
}

export class DatastoreLease {
  private readonly clock: LeaseClock;
  /** `heartbeatAt` of our last record that is known to be on the LUN; undefined when we do not hold the lease. */
  private stamp: number | undefined;
  private count = 0;

  constructor(private readonly o: LeaseOptions) {
    checkHolderId(o.holder.id);
    if (!Number.isSafeInteger(o.timeoutMs) || o.timeoutMs < 1 || o.timeoutMs > 0xffff_ffff) throw new InvalidArgumentError(`lease timeout ${o.timeoutMs} ms must be a positive 32-bit integer`);
    if (!Number.isSafeInteger(o.settleMs) || o.settleMs < 0) throw new InvalidArgumentError(`lease settle delay ${o.settleMs} ms must be >= 0`);
    this.clock = o.clock ?? SYSTEM_CLOCK;
  }

  get timeoutMs(): number {
    return this.o.timeoutMs;
  }
  /** Whether we hold the lease and may write: less than half the timeout since our last heartbeat. */
  get valid(): boolean {
    const until = this.validUntil;
    return until !== undefined && this.clock.now() < until;
  }
  /** Until when (wall clock) the lease is valid; undefined when not held. */
  get validUntil(): number | undefined {
    return this.stamp === undefined ? undefined : this.stamp + this.o.timeoutMs / 2;
  }
  /** Whether we think we hold it (valid or not yet renewed). */
  get held(): boolean {
    return this.stamp !== undefined;
  }

  /**
   * Takes the lease, or fails with FAILED_PRECONDITION naming the holder
   * (held and live, or a rival won the race).
   */
  async acquire(): Promise<void> {
    this.stamp = undefined;
    let seen = await this.readRaw();
    let v = this.judge(seen);
    if (v.kind === "damaged") {
      // No heartbeat to judge: watch it for a whole timeout; a live holder would have rewritten it.
      await this.clock.sleep(this.o.timeoutMs);
      const again = await this.readRaw();
      if (!again.equals(seen)) {
        seen = again;
        v = this.judge(seen);
        if (v.kind === "damaged") throw new FailedPreconditionError(`${this.o.what}: the writer lease record at byte ${LEASE_OFFSET} is unreadable (${v.reason}) and changing; another host may be writing it`);
      }
    }
    if (v.kind === "held") throw new FailedPreconditionError(`${this.o.what} is in use by ${describeHolder(v.record, this.clock.now())}`);
    const count = v.kind === "mine" ? v.record.count + 1 : 1;
    const wrote = await this.write(count);
    await this.clock.sleep(this.o.settleMs);
    const after = decodeLease(await this.readRaw());
    if (after.kind !== "record" || !sameRecord(after.record, wrote)) {
      const who = after.kind === "record" ? describeHolder(after.record, this.clock.now()) : `a record that is ${after.kind === "zero" ? "all zeros" : after.kind}`;
      throw new FailedPreconditionError(`${this.o.what}: lost the race for the writer lease to ${who}`);
    }
    this.stamp = wrote.heartbeatAt;
    this.count = wrote.count;
  }

  /**
   * Renews the lease. Within validity: checks the record is still ours (else
   * FAILED_PRECONDITION: lost to whoever holds it now) and rewrites it. Past
   * validity, or when not held: a full acquire, since a rival may have taken it.
   */
  async heartbeat(): Promise<void> {
    if (!this.valid) return this.acquire();
    const d = decodeLease(await this.readRaw());
    const v = judgeLease(d, this.me, this.clock.now());
    // Our own torn heartbeat reads as damaged: rewrite it (a taker watching it then sees it change).
    if (v.kind === "damaged" || (v.kind === "mine" && v.record.count === this.count)) {
      const wrote = await this.write(this.count + 1);
      this.stamp = wrote.heartbeatAt;
      this.count = wrote.count;
      return;
    }
    this.stamp = undefined;
    const who = d.kind === "record" && v.kind !== "free" ? describeHolder(d.record, this.clock.now()) : `nobody (the record ${v.kind === "free" ? `is free: ${v.why}` : "changed"})`;
    throw new FailedPreconditionError(`${this.o.what}: the writer lease was lost; it is now held by ${who}`);
  }

  /** Gives the lease up (a released record is free at once) if the record is still ours. */
  async release(): Promise<void> {
    if (this.stamp === undefined) return;
    this.stamp = undefined;
    const d = decodeLease(await this.readRaw());
    if (d.kind !== "record" || d.record.holder.id !== this.o.holder.id || d.record.count !== this.count) return;
    await this.o.device.write(LEASE_OFFSET, encodeLease({ ...d.record, state: "released" }), { fua: true });
  }

  /** The record on the LUN, as host `me` would judge it now (for status and messages). */
  async inspect(): Promise<LeaseVerdict> {
    return this.judge(await this.readRaw());
  }

  private get me(): { holderId: string; resource: string } {
    return { holderId: this.o.holder.id, resource: this.o.resource };
  }

  private judge(raw: Buffer): LeaseVerdict {
    return judgeLease(decodeLease(raw), this.me, this.clock.now());
  }

  private readRaw(): Promise<Buffer> {
    return this.o.device.read(LEASE_OFFSET, LEASE_SIZE);
  }

  private async write(count: number): Promise<LeaseRecord> {
    const r: LeaseRecord = { state: "held", timeoutMs: this.o.timeoutMs, holder: this.o.holder, heartbeatAt: this.clock.now(), count, resource: this.o.resource };
    await this.o.device.write(LEASE_OFFSET, encodeLease(r), { fua: true });
    return decodeRecord(encodeLease(r));
  }
}

/** A record as it reads back from the LUN (names and resource cut to their field sizes). */
function decodeRecord(b: Buffer): LeaseRecord {
  const d = decodeLease(b);
  if (d.kind !== "record") throw new Error("lease: an encoded record does not decode");
  return d.record;
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return a.holder.id === b.holder.id && a.count === b.count && a.heartbeatAt === b.heartbeatAt && a.resource === b.resource && a.state === b.state;
}
