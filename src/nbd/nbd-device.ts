/**
 * An NBD export, through our client, as a block device: a LUN, or a read-only
 * snapshot. The adapter the other way round from the backends (which are block
 * devices served over NBD).
 *
 * What the server lacks is filled in rather than refused, so callers need not
 * probe capabilities: FUA falls back to write + flush, flush is a no-op when the
 * server offers none (or the export is read-only), and trim exists only when the
 * server can trim a writable export. Range and read-only checks are the
 * client's (src/nbd/client.ts). Trim is the server's TRIM: the array, memory
 * and file backends zero the range, as BlockDevice promises; a foreign server
 * need not (NBD makes TRIM advisory).
 */
import type { BlockDevice, WriteOptions } from "../block-device.js";
import type { NbdClient } from "./client.js";

export class NbdDevice implements BlockDevice {
  readonly trim?: (offset: number, length: number) => Promise<void>;
  /** `ownsClient`: close() closes the client too (false when the caller shares it). */
  constructor(
    readonly client: NbdClient,
    private readonly ownsClient = true,
  ) {
    if (client.canTrim && !client.readOnly) this.trim = (offset, length) => client.trim(offset, length);
  }
  get size(): number {
    return this.client.size;
  }
  get readOnly(): boolean {
    return this.client.readOnly;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.client.read(offset, length);
  }
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    const fua = opts.fua === true;
    if (fua && this.client.canFua) return this.client.write(offset, data, { fua: true });
    await this.client.write(offset, data);
    if (fua) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.client.canFlush && !this.client.readOnly) await this.client.flush();
  }
  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}
