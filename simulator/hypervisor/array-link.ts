/**
 * The hypervisor's view of the array: the ArrayService client (gRPC) for LUN
 * lookup and exports, and our NBD client for the data. Nothing else: the
 * hypervisor never touches the array's store, as a real ESXi host would not.
 *
 * A LUN is opened by asking the array to present it (CreateExport, idempotent)
 * and connecting to the URI the array answers with. `--host`/TLS-PSK masking is
 * not used here: the hypervisor is the array's local host on its Unix socket.
 */
import { NotFoundError } from "../../src/errors.js";
import { NbdClient } from "../../src/nbd/client.js";
import { lunByRef, type ArrayClient } from "../../src/rpc/array-client.js";
import { allPages } from "../../src/rpc/paging.js";
import type { v1 } from "../../src/rpc/proto.js";
import type { Decoded } from "../../src/rpc/service.js";

export type LunInfo = Decoded<v1.ILun>;

export class ArrayLink {
  constructor(readonly array: ArrayClient) {}

  /** A LUN by name, else by id. */
  lun(ref: string): Promise<LunInfo> {
    return lunByRef(this.array, ref);
  }

  luns(): Promise<LunInfo[]> {
    return allPages("ListLuns", (startingToken) => this.array.listLuns({ startingToken }).then((r) => ({ items: r.luns, next: r.nextToken })));
  }

  /** The LUN an RDM mapping file names, by NAA id (case-insensitive). */
  async lunByNaa(naa: string): Promise<LunInfo> {
    const want = naa.toLowerCase();
    const hit = (await this.luns()).find((l) => l.naa.toLowerCase() === want);
    if (hit === undefined) throw new NotFoundError(`no array LUN has NAA id ${naa}`);
    return hit;
  }

  /** The NBD URI of a LUN's read-write export. */
  async lunUri(lunId: string): Promise<string> {
    return (await this.array.createExport({ lunId })).uri;
  }

  /** Opens a LUN's read-write export with our NBD client. */
  async openLun(lunId: string): Promise<NbdClient> {
    return NbdClient.connect(await this.lunUri(lunId));
  }

  close(): void {
    this.array.close();
  }
}
