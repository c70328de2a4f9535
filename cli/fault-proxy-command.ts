/**
 * `sanbox fault-proxy URI`: a fault-injection front for any NBD export. It
 * starts nbdkit's `nbd` plugin in front of URI with the `error`, `delay` and
 * `rate` filters (src/nbdkit/fault-front.ts), prints the new URI on stdout,
 * and runs until SIGINT/SIGTERM.
 *
 * nbdkit dying on its own is reported apart from our own failures: the message
 * starts with "nbdkit aborted (…)" and carries nbdkit's stderr tail, and the
 * exit code is 4 (ours are 1 and 2). Known upstream defect: nbdkit 1.32 with the
 * error filter can abort with `raw_send_socket: Assertion 'sock >= 0' failed`
 * after a client whose command failed disconnects.
 *
 * nbdkit's nbd plugin does not pass the `qemu:dirty-bitmap:*` meta contexts
 * through (only base:allocation); sanbox's backup reads CBT over gRPC, so a
 * backup through the proxy still works.
 */
import type { Command } from "commander";
import { InvalidArgumentError as CommanderArgError } from "commander";
import { InvalidArgumentError, ToolFailedError, errorMessage, quote } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { toNbdUri } from "../src/nbd/uri.js";
import { startFaultFront, type FaultFrontOptions, type FaultOp } from "../src/nbdkit/fault-front.js";
import { Nbdkit, type NbdkitExit } from "../src/nbdkit/nbdkit.js";
import { parseSize } from "../src/size.js";

/** Exit code when nbdkit died by itself (not a failure of sanbox's code). */
export const EXIT_NBDKIT_DIED = 4;

interface FaultProxyOptions {
  errorRate?: string;
  errorOps?: string;
  errno?: string;
  delayRead?: number;
  delayWrite?: number;
  rate?: string;
  unix?: string;
  allExports?: boolean;
  readOnly?: boolean;
  json?: boolean;
}

const OPS: Readonly<Record<string, FaultOp>> = {
  read: "pread",
  pread: "pread",
  write: "pwrite",
  pwrite: "pwrite",
  trim: "trim",
  zero: "zero",
  flush: "flush",
  extents: "extents",
  "block-status": "extents",
  cache: "cache",
};

const ERRNOS = ["EIO", "EPERM", "ENOMEM", "EINVAL", "ENOSPC", "ESHUTDOWN"] as const;
type ProxyErrno = (typeof ERRNOS)[number];

/** "10%", "0.1" or "1/100" → nbdkit's form; refuses anything outside [0, 1]. */
export function parseErrorRate(text: string): string {
  const t = text.trim();
  let p: number;
  if (t.endsWith("%")) p = Number(t.slice(0, -1)) / 100;
  else if (t.includes("/")) {
    const [a, b] = t.split("/");
    p = Number(a) / Number(b);
  } else p = Number(t);
  if (!Number.isFinite(p) || p < 0 || p > 1) throw new InvalidArgumentError(`--error-rate ${quote(text)}: expected a probability such as 0.01, 1% or 1/100`);
  return `${(p * 100).toString()}%`;
}

export function parseErrorOps(text: string): FaultOp[] {
  const out: FaultOp[] = [];
  for (const raw of text.split(",")) {
    const name = raw.trim();
    if (name === "") continue;
    const op = OPS[name];
    if (op === undefined) throw new InvalidArgumentError(`--error-ops: unknown operation ${quote(name)} (use ${Object.keys(OPS).join(", ")})`);
    if (!out.includes(op)) out.push(op);
  }
  if (out.length === 0) throw new InvalidArgumentError("--error-ops: no operation given");
  return out;
}

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CommanderArgError("expected a whole number of milliseconds");
  return n;
}

/** The fault front described by the command line (pure; tested without nbdkit). */
export function faultProxyOptions(upstream: string, options: FaultProxyOptions): FaultFrontOptions {
  toNbdUri(upstream); // validates the URI
  const errno = options.errno ?? "EIO";
  if (!(ERRNOS as readonly string[]).includes(errno)) throw new InvalidArgumentError(`--errno ${quote(errno)}: use one of ${ERRNOS.join(", ")}`);
  if (options.errorOps !== undefined && options.errorRate === undefined) throw new InvalidArgumentError("--error-ops needs --error-rate");
  const delay: NonNullable<FaultFrontOptions["delay"]> = {};
  if (options.delayRead !== undefined && options.delayRead > 0) delay.read = `${options.delayRead}ms`;
  if (options.delayWrite !== undefined && options.delayWrite > 0) {
    delay.write = `${options.delayWrite}ms`;
    delay.zero = `${options.delayWrite}ms`;
    delay.trim = `${options.delayWrite}ms`;
  }
  let rateBits: string | undefined;
  if (options.rate !== undefined) {
    const bytes = parseSize(options.rate);
    if (bytes <= 0) throw new InvalidArgumentError("--rate must be positive");
    rateBits = String(bytes * 8);
  }
  return {
    upstream,
    ...(options.errorRate !== undefined
      ? { error: { errno: errno as ProxyErrno, rate: parseErrorRate(options.errorRate), ...(options.errorOps !== undefined ? { ops: parseErrorOps(options.errorOps) } : {}) } }
      : {}),
    ...(Object.keys(delay).length > 0 ? { delay } : {}),
    ...(rateBits !== undefined ? { rate: rateBits } : {}),
    ...(options.readOnly === true ? { readOnly: true } : {}),
    ...(options.allExports === true ? { allExports: true } : {}),
    ...(options.unix !== undefined ? { unixSocket: options.unix } : {}),
  };
}

export function describeNbdkitExit(e: NbdkitExit): string {
  return Nbdkit.unexpectedExitError(e)?.message ?? "nbdkit stopped";
}

export function registerFaultProxy(program: Command): Command {
  return program
    .command("fault-proxy")
    .description("put an nbdkit fault-injection front (errors, delays, bandwidth limit) before an NBD export; prints the new URI and runs until SIGINT/SIGTERM")
    .argument("<uri>", "the NBD export to proxy (nbd://, nbd+unix://, …)")
    .option("--error-rate <p>", "fail this fraction of requests: 0.01, 1% or 1/100")
    .option("--error-ops <ops>", "only these operations fail: read,write,trim,zero,flush,extents,cache (default: all)")
    .option("--errno <errno>", `error returned by injected failures: ${ERRNOS.join(", ")}`, "EIO")
    .option("--delay-read <ms>", "delay every read by MS milliseconds", nonNegativeInt)
    .option("--delay-write <ms>", "delay every write, zero and trim by MS milliseconds", nonNegativeInt)
    .option("--rate <bytes-per-second>", "bandwidth limit in bytes per second (K, M, G suffixes), e.g. 10M; nbdkit lets an idle client burst 2 s worth first")
    .option("--unix <path>", "listen on this Unix socket (default: a new temporary one)")
    .option("--all-exports", "proxy every export of the upstream server (the client's export name is passed through), e.g. a whole array NBD endpoint")
    .option("--read-only", "refuse writes through the proxy")
    .option("--json", "print {uri, pid} as JSON instead of the bare URI")
    .addHelpText(
      "after",
      `
Exit codes: 0 stopped by a signal, 1 failed, 2 usage error, 3 nbdkit is missing, ${EXIT_NBDKIT_DIED} nbdkit died by itself
("nbdkit aborted (…)" on stderr, with nbdkit's last messages).
nbdkit 1.32 with --error-rate can abort ("raw_send_socket: Assertion 'sock >= 0'") after a failing client
disconnects; that is an upstream defect, reported as exit ${EXIT_NBDKIT_DIED}.
nbdkit's nbd plugin does not pass qemu:dirty-bitmap meta contexts through; read CBT over gRPC.

Example:
  sanbox fault-proxy 'nbd+unix:///lun/db?socket=/var/lib/sanbox/nbd.sock' --error-rate 1% --rate 50M`,
    )
    .action(async (uri: string, options: FaultProxyOptions) => {
      const log = createLogger("fault-proxy");
      const opts = faultProxyOptions(uri, options);
      const kit = await startFaultFront(opts);
      process.stdout.write(options.json === true ? `${JSON.stringify({ uri: kit.uri, pid: kit.pid, upstream: uri })}\n` : `${kit.uri}\n`);
      log.info(`proxying ${uri} at ${kit.uri} (nbdkit pid ${kit.pid}): ${kit.args.join(" ")}`);
      const outcome = await new Promise<{ signal: string } | { exit: NbdkitExit }>((resolve) => {
        const onSignal = (signal: string): void => resolve({ signal });
        process.once("SIGINT", () => onSignal("SIGINT"));
        process.once("SIGTERM", () => onSignal("SIGTERM"));
        void kit.exited.then((exit) => resolve({ exit }));
      });
      if ("signal" in outcome) {
        log.info(`${outcome.signal} received; stopping nbdkit`);
        const exit = await kit.stop();
        if (!exit.expected) {
          process.stderr.write(`sanbox: ${describeNbdkitExit(exit)}\n`);
          process.exitCode = EXIT_NBDKIT_DIED;
        }
        return;
      }
      const err = Nbdkit.unexpectedExitError(outcome.exit) ?? new ToolFailedError(`nbdkit exited: ${errorMessage(outcome.exit.stderr)}`);
      process.stderr.write(`sanbox: ${err.message}\n`);
      process.exitCode = EXIT_NBDKIT_DIED;
    });
}
