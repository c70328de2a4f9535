/**
 * Zero-allocation reads for accepted server sockets.
 *
 * By default every socket read allocates a fresh 64 KiB ArrayBuffer; at GB/s
 * that external-memory churn makes V8 collect constantly (a quarter of the CPU
 * in a write-heavy profile). Client sockets can avoid it with the documented
 * `onread: { buffer, callback }` option, but `net.Server` offers no such option
 * for the sockets it accepts. This module applies the same mechanism to an
 * accepted socket: it discovers the two private symbols `onread` sets (by
 * constructing a throwaway socket with a sentinel buffer and callback) and
 * attaches a reusable buffer to the socket's handle, exactly as `net.Socket`'s
 * constructor would. Feature-detected: if this Node does not look as expected,
 * `attachUserBuffer` returns false and the caller keeps ordinary 'data' events.
 *
 * The callback sees a view into the shared buffer, valid only during the call.
 */
import { Socket, type SocketConstructorOpts } from "node:net";

interface Symbols {
  buffer: symbol;
  callback: symbol;
}

let cached: Symbols | null | undefined;

function discover(): Symbols | null {
  if (cached !== undefined) return cached;
  const sentinelBuf = Buffer.alloc(1);
  const sentinelCb = (): boolean => true;
  // `onread` is a documented connect() option that the constructor also reads; its type omits it.
  const probeOptions: SocketConstructorOpts & { onread: { buffer: Buffer; callback: () => boolean } } = {
    onread: { buffer: sentinelBuf, callback: sentinelCb },
  };
  const probe = new Socket(probeOptions);
  const rec = probe as unknown as Record<symbol, unknown>;
  let buffer: symbol | undefined;
  let callback: symbol | undefined;
  for (const s of Object.getOwnPropertySymbols(probe)) {
    if (rec[s] === sentinelBuf) buffer = s;
    if (rec[s] === sentinelCb) callback = s;
  }
  probe.destroy();
  cached = buffer !== undefined && callback !== undefined ? { buffer, callback } : null;
  return cached;
}

interface HandleWithUserBuffer {
  useUserBuffer(buf: Uint8Array): void;
}

function hasUseUserBuffer(h: unknown): h is HandleWithUserBuffer {
  return typeof h === "object" && h !== null && typeof (h as { useUserBuffer?: unknown }).useUserBuffer === "function";
}

/**
 * Route reads of a not-yet-reading socket (accepted with `pauseOnConnect`) into
 * `buffer`, calling `onRead(view)` per read. Returns false if unsupported.
 */
export function attachUserBuffer(socket: Socket, buffer: Buffer, onRead: (view: Buffer) => void): boolean {
  const syms = discover();
  const handle = (socket as unknown as { _handle?: unknown })._handle;
  if (syms === null || !hasUseUserBuffer(handle)) return false;
  const rec = socket as unknown as Record<symbol, unknown>;
  rec[syms.buffer] = buffer;
  rec[syms.callback] = (nread: number, buf: Buffer): boolean => {
    onRead(buf.subarray(0, nread));
    return true;
  };
  handle.useUserBuffer(buffer);
  return true;
}
