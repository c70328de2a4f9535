/**
 * The data the backup bench puts on a VM's disks, and how it gets there.
 *
 * Layout: a disk's data is N pieces of 1 MiB spread evenly over the disk
 * (piece i at i * stride), so a thin disk holds data and holes as a guest
 * leaves them; a disk as large as its data is filled solid. Even pieces are
 * random bytes (incompressible), odd pieces text-like log lines (compress
 * several-fold). No two pieces are equal, nor share long runs: the text carries
 * per-line counters and seeded randomness, so neither our fixed-size chunks
 * nor restic's content-defined chunks find duplicates the data does not have.
 *
 * Writes go over NBD as a guest's would reach the array:
 *  - an RDM (a whole LUN) straight to the LUN's export, with our NBD client;
 *  - a VMDK through the datastore file system (src/datastore) on the datastore
 *    LUN's export. Its writes allocate file blocks and commit metadata, so the
 *    hypervisor, which keeps the same datastore mounted, must be stopped
 *    meanwhile; the caller does that.
 * The "rewrite" is distinct 4 KiB blocks chosen at random inside the pieces
 * already written (rewritten data, not new allocations): in place on the
 * datastore, so its metadata does not change.
 */
import { randomFillSync } from "node:crypto";
import { NbdDevice } from "../src/nbd/nbd-device.js";
import { Datastore } from "../src/datastore/datastore.js";
import { NbdClient } from "../src/nbd/client.js";

export const PIECE = 1024 * 1024;
export const REWRITE = 4096;
/** NBD writes in flight while filling a LUN. */
const IN_FLIGHT = 8;

export interface Layout {
  diskSize: number;
  pieces: number;
  stride: number;
}

/** `data` bytes (rounded up to whole pieces) spread over a disk of `diskSize`. */
export function spread(diskSize: number, data: number): Layout {
  const pieces = Math.ceil(data / PIECE);
  if (pieces * PIECE > diskSize) throw new Error(`${data} bytes of data do not fit a ${diskSize}-byte disk`);
  const stride = pieces === 0 ? PIECE : Math.floor(diskSize / pieces / PIECE) * PIECE;
  return { diskSize, pieces, stride };
}

/** mulberry32: a small seeded PRNG, so a run's text and rewrite offsets are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VERBS = ["GET", "PUT", "POST", "DELETE", "HEAD"];
const PATHS = ["/api/v1/volumes/", "/api/v1/snapshots/", "/api/v1/hosts/", "/api/v1/exports/", "/healthz/", "/metrics/", "/api/v1/groups/"];
const STATUS = ["200", "200", "200", "201", "204", "404", "409", "500"];
const WORDS = ["ok", "retry", "cache miss", "cache hit", "slow request", "lock wait", "flushed", "committed", "queued"];
function pick<T>(xs: readonly T[], r: () => number): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

const bytesOf = (xs: string[]): Buffer[] => xs.map((x) => Buffer.from(x, "latin1"));
const [VERB_B, PATH_B, STATUS_B, WORD_B] = [bytesOf(VERBS), bytesOf(PATHS), bytesOf(STATUS), bytesOf(WORDS)];

/**
 * One 1 MiB piece of log-like text, unique to (seed, index): lines such as
 * `2026-11-25T00:01:00.039Z host-1 sanboxd[4001]: HEAD /api/v1/exports/205761003 204 40170 30.604 queued seq=1.00001`
 * (gzip -6 makes about a fifth of it). Written byte by byte rather than
 * formatted as strings: a default run makes a GiB of it, and template
 * strings cost 60 ms per MiB against 15 ms this way.
 */
export function textPiece(seed: number, index: number): Buffer {
  const b = Buffer.alloc(PIECE + 256);
  const r = prng(seed * 1_000_003 + index);
  const int = (n: number): number => Math.floor(r() * n);
  let p = 0;
  const put = (x: Buffer): void => {
    for (let i = 0; i < x.length; i++) b[p++] = x[i] as number;
  };
  const digits = (v: number, width: number): void => {
    for (let i = width - 1; i >= 0; i--, v = Math.floor(v / 10)) b[p + i] = 48 + (v % 10);
    p += width;
  };
  const head = Buffer.from(`Z host-${seed % 100} sanboxd[${4000 + (index % 97)}]: `, "latin1");
  const seq = Buffer.from(` seq=${index}.`, "latin1");
  let ms = Date.UTC(2026, 10, 25) + index * 60_000;
  let second = -1;
  let stamp = Buffer.alloc(0);
  for (let line = 0; p < PIECE; line++) {
    ms += 1 + int(40);
    if (Math.floor(ms / 1000) !== second) {
      second = Math.floor(ms / 1000);
      stamp = Buffer.from(new Date(second * 1000).toISOString().slice(0, 20), "latin1");
    }
    put(stamp);
    digits(ms % 1000, 3);
    put(head);
    put(pick(VERB_B, r));
    b[p++] = 32;
    put(pick(PATH_B, r));
    digits(int(1e9), 9);
    b[p++] = 32;
    put(pick(STATUS_B, r));
    b[p++] = 32;
    digits(int(65536), 5);
    b[p++] = 32;
    digits(int(50), 2);
    b[p++] = 46;
    digits(int(1000), 3);
    b[p++] = 32;
    put(pick(WORD_B, r));
    put(seq);
    digits(line, 5);
    b[p++] = 10;
  }
  return b.subarray(0, PIECE);
}

/** Piece `index` of the data set `seed`: even pieces random, odd pieces text. */
export function piece(seed: number, index: number): Buffer {
  return index % 2 === 0 ? randomFillSync(Buffer.allocUnsafe(PIECE)) : textPiece(seed, index);
}

export interface LunTarget {
  uri: string;
  layout: Layout;
}

/**
 * Writes the data set into whole LUNs: piece i goes to every target at its own
 * i * stride, so targets of different sizes hold the same bytes (the thin-disk
 * rows compare a 16 TiB LUN with a 1 GiB one).
 */
export async function fillLuns(targets: LunTarget[], seed: number): Promise<void> {
  const clients = await Promise.all(targets.map((t) => NbdClient.connect(t.uri)));
  try {
    const pieces = Math.max(0, ...targets.map((t) => t.layout.pieces));
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < pieces; i++) {
      const data = piece(seed, i);
      for (const [k, t] of targets.entries()) {
        if (i >= t.layout.pieces) continue;
        const w: Promise<void> = (clients[k] as NbdClient).write(i * t.layout.stride, data).finally(() => inFlight.delete(w));
        inFlight.add(w);
        if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      }
    }
    await Promise.all(inFlight);
    await Promise.all(clients.map((c) => c.flush()));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Writes the data set into a VMDK's flat file on the datastore behind `uri`. */
export async function fillVmdk(uri: string, flatPath: string, layout: Layout, seed: number): Promise<void> {
  await withDatastore(uri, async (ds) => {
    for (let i = 0; i < layout.pieces; i++) await ds.write(flatPath, i * layout.stride, piece(seed, i));
  });
}

/** `count` distinct 4 KiB-aligned offsets inside the written pieces of `layout`. */
export function scatteredOffsets(layout: Layout, count: number, seed: number): number[] {
  const perPiece = PIECE / REWRITE;
  const slots = layout.pieces * perPiece;
  if (count > slots) throw new Error(`cannot rewrite ${count} blocks of 4 KiB in ${slots}`);
  const r = prng(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(r() * slots));
  return [...chosen].sort((a, b) => a - b).map((s) => Math.floor(s / perPiece) * layout.stride + (s % perPiece) * REWRITE);
}

export async function rewriteLun(uri: string, offsets: number[]): Promise<void> {
  const c = await NbdClient.connect(uri);
  try {
    const inFlight = new Set<Promise<void>>();
    for (const off of offsets) {
      const w: Promise<void> = c.write(off, randomFillSync(Buffer.allocUnsafe(REWRITE))).finally(() => inFlight.delete(w));
      inFlight.add(w);
      if (inFlight.size >= 4 * IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await c.flush();
  } finally {
    await c.close();
  }
}

export async function rewriteVmdk(uri: string, flatPath: string, offsets: number[]): Promise<void> {
  await withDatastore(uri, async (ds) => {
    // The datastore runs its operations one at a time; queueing them all at
    // once only saves the round trips between them.
    await Promise.all(offsets.map((off) => ds.write(flatPath, off, randomFillSync(Buffer.allocUnsafe(REWRITE)))));
  });
}

async function withDatastore(uri: string, fn: (ds: Datastore) => Promise<void>): Promise<void> {
  const device = new NbdDevice(await NbdClient.connect(uri));
  try {
    // Manual commit: one metadata commit at the end, not one per allocating write.
    const ds = await Datastore.open(device, { commit: "manual" });
    await fn(ds);
    await ds.close();
    await device.flush();
  } finally {
    await device.close();
  }
}
