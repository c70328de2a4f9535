/**
 * `sanbox nbd serve`: serve a memory disk or a raw file over NBD. Prints the NBD
 * URI on stdout (one line, so scripts can `uri=$(sanbox nbd serve … &)`), logs on
 * stderr, and drains on SIGINT/SIGTERM.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, Option } from "commander";
import { InvalidArgumentError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import type { NbdBackend } from "../src/nbd/backend.js";
import { FileBackend } from "../src/nbd/backends/file-backend.js";
import { MemoryBackend } from "../src/nbd/backends/memory-backend.js";
import { NbdServer } from "../src/nbd/server.js";
import type { TlsMode } from "../src/nbd/server-options.js";
import { SingleExportProvider } from "../src/nbd/single-export.js";
import { loadPskFile, type PskTable } from "../src/nbd/tls-psk.js";
import { formatNbdUri } from "../src/nbd/uri.js";
import { waitForStopSignal } from "./run.js";
import { sizeArg, type SizeArg } from "./size-arg.js";

interface ServeOptions {
  memory?: SizeArg;
  size?: SizeArg;
  unix?: string;
  port?: string;
  host: string;
  export: string;
  readonly?: boolean;
  json?: boolean;
  tlsPsk?: string;
  tls: TlsMode;
}

export function registerNbd(program: Command): void {
  const nbd = program.command("nbd").description("standalone NBD server tools");
  nbd
    .command("serve")
    .description("serve a sparse memory disk or a raw file over NBD until SIGINT/SIGTERM; prints the NBD URI on stdout")
    .argument("[file]", "raw image file to serve (created sparse with --size if missing)")
    .option("--memory <size>", "serve a sparse memory disk of this size (e.g. 1G; a bare number is bytes)", sizeArg)
    .option("--size <size>", "with FILE: create or extend the file to this size", sizeArg)
    .option("--unix <path>", "listen on this Unix socket (default: a socket under the temp directory)")
    .option("--port <n>", "listen on this TCP port instead (0 picks a free one)")
    .option("--host <addr>", "TCP address to bind", "127.0.0.1")
    .option("--export <name>", "export name", "")
    .option("--readonly", "refuse writes")
    .option("--json", "print the URI as one JSON line ({uri})")
    .option("--tls-psk <file>", "psk file (identity:hexkey lines, as nbdkit --tls-psk)")
    .addOption(new Option("--tls <mode>", "TLS policy, as nbdkit --tls").choices(["off", "on", "require"]).default("off"))
    .action(async (file: string | undefined, opts: ServeOptions) => serve(file, opts));
}

async function serve(file: string | undefined, opts: ServeOptions): Promise<void> {
  const log = createLogger("nbd-serve");
  if ((file === undefined) === (opts.memory === undefined)) throw new InvalidArgumentError("give exactly one of FILE or --memory SIZE");
  if (opts.unix !== undefined && opts.port !== undefined) throw new InvalidArgumentError("give at most one of --unix and --port");
  const tls: TlsMode = opts.tlsPsk !== undefined && opts.tls === "off" ? "on" : opts.tls;
  if (tls !== "off" && opts.tlsPsk === undefined) throw new InvalidArgumentError(`--tls ${tls} needs --tls-psk FILE`);
  const psk = opts.tlsPsk !== undefined ? await loadPskFile(opts.tlsPsk) : undefined;

  let backend: NbdBackend;
  if (opts.memory !== undefined) {
    backend = new MemoryBackend(opts.memory.bytes, { readOnly: opts.readonly ?? false });
  } else {
    const readOnly = opts.readonly ?? false;
    backend = await FileBackend.open(file ?? "", opts.size !== undefined ? { readOnly, create: true, size: opts.size.bytes } : { readOnly });
  }

  const server = new NbdServer({ provider: new SingleExportProvider(backend, opts.export), tls, ...(psk ? { psk } : {}), log });
  let uri: string;
  if (opts.port !== undefined) {
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`invalid --port ${opts.port}`);
    const a = await server.listen({ host: opts.host, port });
    if (!("port" in a)) throw new Error("unreachable");
    uri = formatNbdUri({ tls: tls === "require", transport: { kind: "tcp", host: a.host, port: a.port }, exportName: opts.export, ...pskParam(opts, tls, psk) });
  } else {
    const path = opts.unix ?? join(tmpdir(), `sanbox-nbd-${process.pid}.sock`);
    await server.listen({ unix: path });
    uri = formatNbdUri({ tls: tls === "require", transport: { kind: "unix", path }, exportName: opts.export, ...pskParam(opts, tls, psk) });
  }
  // Listen before announcing: whoever reads the endpoint line may signal at once.
  const stopped = waitForStopSignal(log);
  process.stdout.write(opts.json === true ? `${JSON.stringify({ uri })}\n` : `${uri}\n`);
  log.info(`serving ${backend.description ?? "disk"} (${backend.size} bytes${backend.readOnly ? ", read-only" : ""}) at ${uri}`);

  await stopped.received;
  await stopped.shutdown(async () => {
    log.info(`draining ${server.connectionCount} connection(s)`);
    await server.close();
    await backend.flush();
    await backend.close?.();
  });
  log.info("stopped");
}

/** libnbd takes the PSK identity from the URI's user part; name the file's first identity. */
function pskParam(opts: ServeOptions, tls: TlsMode, psk: PskTable | undefined): { tlsPskFile?: string; tlsUsername?: string } {
  if (tls !== "require" || opts.tlsPsk === undefined) return {};
  const first = psk?.keys().next().value;
  return first !== undefined ? { tlsPskFile: opts.tlsPsk, tlsUsername: first } : { tlsPskFile: opts.tlsPsk };
}
