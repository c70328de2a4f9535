/**
 * The hypervisor's view of the array: the ArrayService client (gRPC) for LUN
 * lookup and exports, and our NBD client for the data. Nothing else: the
 * hypervisor never touches the array's store, as a real ESXi host would not.
 *
 * A LUN is opened by asking the array to present it (CreateExport, idempotent)
 * and connecting to the URI the array answers with. `--host`/TLS-PSK masking is
 * not used here: the hypervisor is the array's local host on its Unix socket.
 *
 * Every call has a deadline (`ioTimeoutMs`, --io-timeout): a frozen array makes
 * a call fail with TIMEOUT rather than wait. The gRPC channel reconnects by
 * itself after an array restart; its backoff is capped at 1 s (ARRAY_CHANNEL
 * in daemon.ts) so a returned array is reached within about a second, and a
 * lookup that meets the channel between attempts waits for it that long.
 * `openPath` opens a LunPath (lun-path.ts), which re-asks for the export on
 * every reconnection.
 */
import { NotFoundError, SanboxError, TimeoutError } from "../../src/errors.js";
import { NbdClient } from "../../src/nbd/client.js";
import { lunByRef, type ArrayClient } from "../../src/rpc/array-client.js";
import { allPages } from "../../src/rpc/paging.js";
import type { v1 } from "../../src/rpc/proto.js";
import type { CallOptions, Decoded } from "../../src/rpc/service.js";
import type { Logger } from "../../src/log.js";
import { LunPath } from "./lun-path.js";
import type { ReconnectPolicy } from "./reconnect-policy.js";

export type LunInfo = Decoded<v1.ILun>;

/** How long one connection attempt waits for the gRPC channel (its reconnect backoff is capped at 1 s). */
const ATTEMPT_PATIENCE_MS = 2_000;

export interface LinkOptions {
  /** Deadline of every array call and NBD request. */
  ioTimeoutMs: number;
  reconnect: ReconnectPolicy;
  log: Logger;
}

export class ArrayLink {
  constructor(
    readonly array: ArrayClient,
    readonly opts: LinkOptions,
  ) {}

  /**
   * One lookup under the deadline, with a deadline that expired said in the
   * hypervisor's words (which call, which limit, which flag). A call made
   * while the channel is between reconnect attempts (the array just came back)
   * fails at once with UNAVAILABLE; it is tried once more, waiting for the
   * channel at most ATTEMPT_PATIENCE_MS, and if the array is still not there
   * the first error (it names the endpoint) is what the caller gets.
   */
  private async call<T>(what: string, f: (opts: CallOptions) => Promise<T>): Promise<T> {
    const said = (e: unknown): unknown => (e instanceof SanboxError && e.code === "TIMEOUT" ? new TimeoutError(`the array did not answer ${what} within ${this.opts.ioTimeoutMs} ms (--io-timeout)`) : e);
    try {
      return await f({ timeoutMs: this.opts.ioTimeoutMs });
    } catch (e: unknown) {
      if (!(e instanceof SanboxError && e.code === "UNAVAILABLE")) throw said(e);
      try {
        return await f({ timeoutMs: Math.min(this.opts.ioTimeoutMs, ATTEMPT_PATIENCE_MS), waitForReady: true });
      } catch (again: unknown) {
        throw again instanceof SanboxError && (again.code === "UNAVAILABLE" || again.code === "TIMEOUT") ? e : said(again);
      }
    }
  }

  /** A LUN by name, else by id. */
  lun(ref: string): Promise<LunInfo> {
    return this.call("GetLun", (o) => lunByRef(this.array, ref, o));
  }

  luns(): Promise<LunInfo[]> {
    return this.call("ListLuns", (o) => allPages("ListLuns", (startingToken) => this.array.listLuns({ startingToken }, o).then((r) => ({ items: r.luns, next: r.nextToken }))));
  }

  /** The LUN an RDM mapping file names, by NAA id (case-insensitive). */
  async lunByNaa(naa: string): Promise<LunInfo> {
    const want = naa.toLowerCase();
    const hit = (await this.luns()).find((l) => l.naa.toLowerCase() === want);
    if (hit === undefined) throw new NotFoundError(`no array LUN has NAA id ${naa}`);
    return hit;
  }

  /**
   * Asks the array for a LUN's read-write export and connects to it, within
   * `timeoutMs`. The export call waits for a reconnecting channel, but at most
   * ATTEMPT_PATIENCE_MS: an array that just came back is reached within the
   * channel's 1 s backoff, and a dead one costs a connection attempt no more.
   */
  async openLun(lunId: string, timeoutMs = this.opts.ioTimeoutMs): Promise<NbdClient> {
    const { uri } = await this.array.createExport({ lunId }, { timeoutMs: Math.min(timeoutMs, ATTEMPT_PATIENCE_MS), waitForReady: true });
    return NbdClient.connect(uri, { connectTimeoutMs: timeoutMs });
  }

  /** A path to a LUN's export that reconnects after an array restart. `name` is how messages call it. */
  openPath(lunId: string, name: string): Promise<LunPath> {
    return LunPath.open({ name, open: (ms) => this.openLun(lunId, ms), policy: this.opts.reconnect, ioTimeoutMs: this.opts.ioTimeoutMs, log: this.opts.log });
  }

  close(): void {
    this.array.close();
  }
}
