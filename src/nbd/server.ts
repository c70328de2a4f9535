/**
 * The NBD server: listens on a Unix socket or TCP port and runs one
 * ServerConnection per client against an ExportProvider.
 *
 * `close()` is a graceful drain: stop accepting, let every connection finish the
 * requests it has in flight (then close it), and resolve when all are gone.
 */
import { mkdirSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import type { ExportProvider } from "./backend.js";
import { NBD_DEFAULT_PORT } from "./constants.js";
import { ServerConnection } from "./server-connection.js";
import type { TlsMode } from "./server-options.js";
import type { PskTable } from "./tls-psk.js";

export type ListenAddress = { unix: string } | { host?: string; port: number };

export interface NbdServerOptions {
  provider: ExportProvider;
  tls?: TlsMode;
  psk?: PskTable;
  maxInFlight?: number;
  maxInFlightBytes?: number;
  handshakeTimeoutMs?: number;
  log?: Logger;
}

export class NbdServer {
  private readonly server: Server;
  private readonly connections = new Set<ServerConnection>();
  private readonly log: Logger;
  private unixPath: string | undefined;

  constructor(private readonly opts: NbdServerOptions) {
    const tls = opts.tls ?? "off";
    if (tls !== "off" && opts.psk === undefined) throw new InvalidArgumentError(`--tls ${tls} needs a psk file`);
    this.log = opts.log ?? createLogger("nbd");
    this.server = createServer({ pauseOnConnect: true }, (s) => this.accept(s));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  async listen(addr: ListenAddress): Promise<{ unix: string } | { host: string; port: number }> {
    if ("unix" in addr) {
      mkdirSync(dirname(addr.unix), { recursive: true });
      rmSync(addr.unix, { force: true });
      this.unixPath = addr.unix;
      await new Promise<void>((resolve, reject) => {
        this.server.once("error", reject);
        this.server.listen(addr.unix, () => resolve());
      });
      return { unix: addr.unix };
    }
    const host = addr.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(addr.port ?? NBD_DEFAULT_PORT, host, () => resolve());
    });
    const a = this.server.address() as AddressInfo;
    return { host, port: a.port };
  }

  private accept(socket: Socket): void {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? 0}` : "unix";
    const conn = new ServerConnection(
      socket,
      {
        provider: this.opts.provider,
        tlsMode: this.opts.tls ?? "off",
        psk: this.opts.psk,
        maxInFlight: this.opts.maxInFlight ?? 64,
        maxInFlightBytes: this.opts.maxInFlightBytes ?? 128 * 1024 * 1024,
        handshakeTimeoutMs: this.opts.handshakeTimeoutMs ?? 30_000,
        log: this.log,
      },
      peer,
    );
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  async close(): Promise<void> {
    const stopped = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.connections) c.drain();
    await Promise.all([...this.connections].map((c) => c.closed));
    await stopped;
    if (this.unixPath) rmSync(this.unixPath, { force: true });
  }
}
