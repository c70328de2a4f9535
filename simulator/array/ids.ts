/**
 * Identifiers: random ids for LUNs/snapshots/groups, NAA-6 (IEEE Registered
 * Extended) LUN identifiers, and the name rules.
 *
 * NAA-6 is 16 bytes = 32 hex digits after "naa.": the leading "6" is the NAA
 * type, then a 24-bit company id (we use 0x5a4e42, not an assigned OUI) and 100
 * random bits. The brief's "naa.6 + 29 more" would be 30 digits, which is not a
 * valid NAA-6 length, so we follow the standard.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, quote } from "../../src/errors.js";

export function newId(prefix: "lun" | "snap" | "grp"): string {
  return `${prefix}-${randomBytes(8).toString("hex")}`;
}

export function newNaa(): string {
  return `naa.65a4e42${randomBytes(13).toString("hex").slice(0, 25)}`;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(`invalid ${kind} name ${quote(name)}: use 1-128 characters from A-Z a-z 0-9 . _ - , starting with a letter or digit`);
  }
}
