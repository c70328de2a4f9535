/**
 * Several connections to one export, used as one (nbdcopy's multi-conn).
 *
 * The spec allows a client to spread I/O over connections only when the server
 * advertises NBD_FLAG_CAN_MULTI_CONN: then a FLUSH on any connection covers writes
 * completed on all of them. Without it, the pool keeps a single connection and says
 * so in `note`. Each request goes to the least loaded connection.
 */
import { InvalidArgumentError } from "../errors.js";
import { NbdClient, type StatusExtent, type BlockSize, type ClientOptions } from "./client.js";
import type { NbdUri } from "./uri.js";

export class NbdClientPool {
  /** Why fewer connections than asked for were opened, if so. */
  readonly note: string | undefined;

  private constructor(
    readonly clients: readonly NbdClient[],
    note: string | undefined,
  ) {
    this.note = note;
  }

  static async connect(uri: string | NbdUri, connections: number, opts: ClientOptions = {}): Promise<NbdClientPool> {
    if (!Number.isInteger(connections) || connections < 1) throw new InvalidArgumentError(`connections must be a positive integer, got ${connections}`);
    const first = await NbdClient.connect(uri, opts);
    if (connections === 1) return new NbdClientPool([first], undefined);
    if (!first.canMultiConn) {
      return new NbdClientPool([first], `server does not advertise NBD_FLAG_CAN_MULTI_CONN: using 1 connection instead of ${connections}`);
    }
    const rest = await Promise.allSettled(Array.from({ length: connections - 1 }, () => NbdClient.connect(uri, opts)));
    const clients = [first];
    let failure: Error | undefined;
    for (const r of rest) {
      if (r.status === "fulfilled") clients.push(r.value);
      else failure ??= r.reason instanceof Error ? r.reason : new Error(String(r.reason));
    }
    if (failure !== undefined) {
      await Promise.allSettled(clients.map((c) => c.close()));
      throw failure;
    }
    return new NbdClientPool(clients, undefined);
  }

  private get head(): NbdClient {
    const c = this.clients[0];
    if (c === undefined) throw new Error("NbdClientPool without connections");
    return c;
  }

  get connections(): number {
    return this.clients.length;
  }
  get size(): number {
    return this.head.size;
  }
  get exportName(): string {
    return this.head.exportName;
  }
  get readOnly(): boolean {
    return this.head.readOnly;
  }
  get canMultiConn(): boolean {
    return this.head.canMultiConn;
  }
  get blockSize(): BlockSize | undefined {
    return this.head.blockSize;
  }
  get metaContexts(): ReadonlyMap<string, number> {
    return this.head.metaContexts;
  }

  /** The least loaded open connection. */
  private pick(): NbdClient {
    let best = this.head;
    for (const c of this.clients) {
      if (!best.isOpen || (c.isOpen && c.inFlight < best.inFlight)) best = c;
    }
    return best;
  }

  read(offset: number, length: number, opts?: { signal?: AbortSignal; df?: boolean }): Promise<Buffer> {
    return this.pick().read(offset, length, opts);
  }
  write(offset: number, data: Buffer, opts?: { fua?: boolean; signal?: AbortSignal }): Promise<void> {
    return this.pick().write(offset, data, opts);
  }
  flush(): Promise<void> {
    return this.pick().flush();
  }
  trim(offset: number, length: number, opts?: { fua?: boolean }): Promise<void> {
    return this.pick().trim(offset, length, opts);
  }
  zero(offset: number, length: number, opts?: { fua?: boolean; noHole?: boolean; fastZero?: boolean }): Promise<void> {
    return this.pick().zero(offset, length, opts);
  }
  cache(offset: number, length: number): Promise<void> {
    return this.pick().cache(offset, length);
  }
  blockStatus(offset: number, length: number, opts?: { reqOne?: boolean; signal?: AbortSignal }): Promise<Map<string, StatusExtent[]>> {
    return this.pick().blockStatus(offset, length, opts);
  }
  extents(context: string, offset?: number, length?: number): AsyncIterable<StatusExtent> {
    return this.pick().extents(context, offset, length);
  }
  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
