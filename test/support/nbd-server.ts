/**
 * Start our NBD server in-process on a Unix socket for a test, with a given backend.
 */
import { join } from "node:path";
import { silentLogger } from "../../src/log.js";
import type { NbdBackend } from "../../src/nbd/backend.js";
import { MemoryBackend } from "../../src/nbd/backends/memory-backend.js";
import { NbdServer, type NbdServerOptions } from "../../src/nbd/server.js";
import { SingleExportProvider } from "../../src/nbd/single-export.js";
import { tempDir } from "./tools.js";

export interface RunningServer {
  uri: string;
  socket: string;
  server: NbdServer;
  backend: NbdBackend;
  stop(): Promise<void>;
}

export async function startServer(
  opts: { backend?: NbdBackend; size?: number; exportName?: string } & Partial<Omit<NbdServerOptions, "provider">> = {},
): Promise<RunningServer> {
  const { dir, cleanup } = tempDir("sanbox-nbd-");
  const socket = join(dir, "nbd.sock");
  const backend = opts.backend ?? new MemoryBackend(opts.size ?? 64 * 1024 * 1024);
  const exportName = opts.exportName ?? "";
  const server = new NbdServer({
    log: silentLogger,
    ...opts,
    provider: new SingleExportProvider(backend, exportName),
  });
  await server.listen({ unix: socket });
  const uri = `nbd+unix:///${encodeURIComponent(exportName)}?socket=${socket}`;
  return {
    uri,
    socket,
    server,
    backend,
    stop: async () => {
      await server.close();
      cleanup();
    },
  };
}
