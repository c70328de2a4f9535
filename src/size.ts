/**
 * Human sizes: "512", "4K", "64KiB", "10G", "16T" (binary multiples, as nbdkit and qemu-img read them).
 */
import { InvalidArgumentError } from "./errors.js";

const UNITS: Record<string, number> = { "": 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50, E: 2 ** 60 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtpeKMGTPE]?)(?:i?[bB])?\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid size "${text}": expected a number with an optional K, M, G, T or P suffix`);
  const mult = UNITS[(m[2] ?? "").toUpperCase()] ?? 1;
  const value = Number(m[1]) * mult;
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`invalid size "${text}": not a whole number of bytes below 2^53`);
  return value;
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
