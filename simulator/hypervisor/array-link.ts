/**
 * The hypervisor's view of the array: the ArrayService client (gRPC) for LUN
 * lookup and exports, and our NBD client for the data. Nothing else: the
 * hypervisor never touches the array's store, as a real ESXi host would not.
 *
 * A LUN is opened by asking the array to present it (CreateExport, idempotent)
 * and connecting to the URI the array answers with. `--host`/TLS-PSK masking is
 * not used here: the hypervisor is the array's local host on its Unix socket.
 */
import { NotFoundError, SanboxError } from "../../src/errors.js";
import { NbdClient } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import type { Decoded } from "../../src/rpc/methods.js";
import type { v1 } from "../../src/rpc/proto.js";

export type LunInfo = Decoded<v1.ILun>;

export class ArrayLink {
  constructor(readonly array: ArrayClient) {}

  /** A LUN by name, else by id. */
  async lun(ref: string): Promise<LunInfo> {
    try {
      return await this.array.getLun({ name: ref });
    } catch (e: unknown) {
      if (!(e instanceof SanboxError) || (e.code !== "NOT_FOUND" && e.code !== "INVALID_ARGUMENT")) throw e;
    }
    return this.array.getLun({ lunId: ref });
  }

  async luns(): Promise<LunInfo[]> {
    const out: LunInfo[] = [];
    let token = "";
    do {
      const r = await this.array.listLuns({ startingToken: token });
      out.push(...r.luns);
      token = r.nextToken;
    } while (token !== "");
    return out;
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
