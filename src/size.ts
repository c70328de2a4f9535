/**
 * Human sizes: "65536", "4K", "64KiB", "10G", "16T" (binary multiples, as nbdkit and qemu-img read them).
 *
 * The rules a person typing a size can rely on:
 *  - a bare number is bytes, exactly (as qemu-img and nbdkit read it); a unit
 *    is K, M, G, T, P or E, with an optional "i" and "B" ("64KiB", "1MB");
 *  - a size is a positive whole number of bytes: "-5G" and "0" are usage
 *    errors ("size must be positive: -5G"), as is "1.3K" (not whole bytes);
 *  - where the consumer would round a size to its block size (an array LUN),
 *    `wholeBlocks` refuses a size that is not a multiple instead, naming the
 *    value and the block size and suggesting sizes that are: "100" would
 *    otherwise become a 64 KiB LUN without a word.
 *
 * Commander would read a leading "-" as an option; cli/run.ts turns such an
 * "unknown option" on a command with a <size> argument into the same
 * "size must be positive" usage error.
 */
import { InvalidArgumentError, quote } from "./errors.js";

const UNITS: Record<string, number> = { "": 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50, E: 2 ** 60 };

export function parseSize(text: string): number {
  const m = /^\s*(-?)(\d+(?:\.\d+)?)\s*([kmgtpeKMGTPE]?)(?:i?[bB])?\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid size ${quote(text)}: expected a number of bytes, or a number with a K, M, G, T or P suffix`);
  const mult = UNITS[(m[3] ?? "").toUpperCase()] ?? 1;
  const value = Number(m[2]) * mult;
  if (m[1] === "-" || value === 0) throw new InvalidArgumentError(`size must be positive: ${text.trim()}`);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`invalid size ${quote(text)}: not a whole number of bytes below 2^53`);
  return value;
}

/** True when `text` has no unit: a bare number, which parseSize reads as bytes. */
export function isBareNumber(text: string): boolean {
  return /^\s*-?\d+(?:\.\d+)?\s*$/.test(text);
}

/**
 * `bytes` (parsed from `text`) when it is a whole number of `blockSize`
 * blocks, else a usage error naming the value, the block size and sizes that
 * would do; `what` names the thing sized ("the LUN").
 */
export function wholeBlocks(text: string, bytes: number, blockSize: number, what: string): number {
  if (bytes % blockSize === 0) return bytes;
  const down = Math.floor(bytes / blockSize) * blockSize;
  const up = down + blockSize;
  const t = text.trim();
  const near = [down, up].filter((n) => n > 0).map(formatExact).join(" or ");
  const hint = isBareNumber(text) ? `a bare number is bytes: give a unit (${t}M, ${t}G) or a multiple, e.g. ${near}` : `give a multiple, e.g. ${near}`;
  throw new InvalidArgumentError(`size ${t} (${bytes} bytes) is not a multiple of ${what}'s block size ${formatExact(blockSize)} (${blockSize} bytes); ${hint}`);
}

/** The shortest exact spelling parseSize reads back: "64K", "1M", "1536K", "100" (bytes). */
export function formatExact(bytes: number): string {
  for (const u of ["E", "P", "T", "G", "M", "K"]) {
    const mult = UNITS[u] ?? 1;
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${u}`;
  }
  return String(bytes);
}

export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
