/**
 * The one errno table (nbdkit's nbd_errno): symbolic errno ↔ NBD wire value.
 * Unknown wire values map to EINVAL, as the spec tells clients to treat them.
 */
import type { Errno } from "../errors.js";
import { NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW, NBD_EPERM, NBD_ESHUTDOWN } from "./constants.js";

const TO_WIRE: Record<Errno, number> = {
  EPERM: NBD_EPERM,
  EIO: NBD_EIO,
  ENOMEM: NBD_ENOMEM,
  EINVAL: NBD_EINVAL,
  ENOSPC: NBD_ENOSPC,
  EOVERFLOW: NBD_EOVERFLOW,
  ENOTSUP: NBD_ENOTSUP,
  ESHUTDOWN: NBD_ESHUTDOWN,
};

const FROM_WIRE = new Map<number, Errno>(Object.entries(TO_WIRE).map(([k, v]) => [v, k as Errno]));

export function errnoToWire(e: Errno): number {
  return TO_WIRE[e];
}

export function errnoFromWire(v: number): Errno {
  return FROM_WIRE.get(v) ?? "EINVAL";
}
