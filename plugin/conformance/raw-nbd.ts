/**
 * A raw NBD connection for the checks that must see what the *server* does,
 * past the safety checks of our client (src/nbd/client.ts refuses a write to a
 * read-only export, or a read past the end, before sending it). It reuses the
 * client's handshake and transmission layers unchanged and submits commands as
 * given. Plain (non-TLS) URIs only.
 */
import { connect } from "node:net";
import { ConnectionClosedError } from "../../src/errors.js";
import { NbdConnection, type CommandOutcome } from "../../src/nbd/client-connection.js";
import { ClientHandshake, type NegotiatedExport } from "../../src/nbd/client-handshake.js";
import { toNbdUri } from "../../src/nbd/uri.js";

export interface RawNbd {
  readonly negotiated: Omit<NegotiatedExport, "socket" | "leftover">;
  submit(type: number, offset: number, length: number, payload?: Buffer, flags?: number): Promise<CommandOutcome>;
  close(): Promise<void>;
}

export async function rawConnect(uri: string): Promise<RawNbd> {
  const u = toNbdUri(uri);
  const t = u.transport;
  const socket = t.kind === "unix" ? connect({ path: t.path }) : connect({ host: t.host, port: t.port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", (e) => reject(new ConnectionClosedError(`cannot connect to ${uri}: ${e.message}`)));
  });
  const hs = new ClientHandshake(socket);
  const timer = setTimeout(() => hs.abort(new ConnectionClosedError("raw NBD handshake timed out")), 10_000);
  let neg: NegotiatedExport;
  try {
    neg = await hs.negotiate({ exportName: u.exportName, structuredReplies: true, metaContexts: [] });
  } finally {
    clearTimeout(timer);
  }
  const conn = new NbdConnection(neg.socket, { structuredReplies: neg.structuredReplies, contextIds: new Set(), maxInFlight: 16 }, neg.leftover);
  const { socket: _s, leftover: _l, ...negotiated } = neg;
  return {
    negotiated,
    submit: (type, offset, length, payload, flags = 0) => conn.submit({ type, flags, offset, length, ...(payload !== undefined ? { payload } : {}) }),
    close: () => conn.close(),
  };
}
