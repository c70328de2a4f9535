/**
 * TLS-PSK for NBD STARTTLS, with nbdkit's psk file format: one `identity:hexkey`
 * per line (the GnuTLS psktool format). Node supports PSK only with TLS 1.2 PSK
 * cipher suites, so both ends pin TLS 1.2 and a PSK cipher list GnuTLS also offers.
 */
import { readFile } from "node:fs/promises";
import type { ConnectionOptions, TlsOptions } from "node:tls";
import { InvalidArgumentError, quote } from "../errors.js";

export const PSK_CIPHERS = "PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305:DHE-PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256";

export type PskTable = ReadonlyMap<string, Buffer>;

export function parsePskFile(text: string, source = "psk file"): PskTable {
  const table = new Map<string, Buffer>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.lastIndexOf(":");
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (colon <= 0 || !/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0) {
      throw new InvalidArgumentError(`${source}:${i + 1}: expected "identity:hexkey"`);
    }
    table.set(identity, Buffer.from(hex, "hex"));
  });
  if (table.size === 0) throw new InvalidArgumentError(`${source}: no "identity:hexkey" lines`);
  return table;
}

export async function loadPskFile(path: string): Promise<PskTable> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e: unknown) {
    throw new InvalidArgumentError(`cannot read psk file ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parsePskFile(text, path);
}

/** Server side: the identity the client proved becomes the session's host identity. */
export function serverTlsOptions(table: PskTable): TlsOptions {
  return {
    ciphers: PSK_CIPHERS,
    minVersion: "TLSv1.2",
    maxVersion: "TLSv1.2",
    pskCallback: (_socket, identity) => table.get(identity) ?? null,
  };
}

/** Client side: use `identity` (or the file's first entry) from the table. */
export function clientTlsOptions(table: PskTable, identity?: string): ConnectionOptions {
  const chosen = identity ?? table.keys().next().value;
  if (chosen === undefined) throw new InvalidArgumentError("psk table is empty");
  const psk = table.get(chosen);
  if (psk === undefined) throw new InvalidArgumentError(`psk identity ${quote(chosen)} is not in the psk file`);
  return {
    ciphers: PSK_CIPHERS,
    minVersion: "TLSv1.2",
    maxVersion: "TLSv1.2",
    checkServerIdentity: () => undefined,
    pskCallback: () => ({ psk, identity: chosen }),
  };
}
