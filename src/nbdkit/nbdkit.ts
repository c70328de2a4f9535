/**
 * Start and stop a real nbdkit, through execa, with typed options.
 *
 * Lifecycle:
 *   start ──spawn──▶ starting ──socket accepts a connection──▶ ready ──stop()──▶ stopped
 *                       │                                        │
 *                       └──exits first: ToolFailedError──┘        └──exits by itself: `exited` says expected=false
 *
 * - nbdkit runs in the foreground (`-f`) with `--exit-with-parent`, so it cannot
 *   outlive us even if we are SIGKILLed.
 * - Readiness is observed, never slept for: we poll the endpoint until a connect
 *   succeeds (nbdkit binds only after the plugin and filters loaded and configured),
 *   racing the process's exit, which turns a bad plugin into a fast error carrying
 *   nbdkit's own message.
 * - `exited` always resolves (never rejects), with the exit code or signal and the
 *   tail of stderr; `expected` tells a stop() we asked for apart from nbdkit dying on
 *   its own (abort, crash, exitlast filter …).
 */
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { errorMessage, TimeoutError, ToolFailedError, ToolMissingError } from "../errors.js";
import { formatNbdUri, type NbdTransport } from "../nbd/uri.js";
import { buildNbdkitArgs, type NbdkitEndpoint, type NbdkitOptions } from "./args.js";

export type { NbdkitOptions } from "./args.js";

export interface NbdkitExit {
  code: number | null;
  signal: string | null;
  /** The last few KiB of nbdkit's stderr. */
  stderr: string;
  /** True when the exit followed our stop(); false when nbdkit died by itself. */
  expected: boolean;
}

const STDERR_KEEP = 16 * 1024;
const STOP_GRACE_MS = 5_000;
const EXEC_OPTIONS = { reject: false, buffer: false, stdin: "ignore", stdout: "ignore", stderr: "pipe", cleanup: true } as const;
type NbdkitProcess = ResultPromise<typeof EXEC_OPTIONS>;

/** Find an executable on PATH, with /usr/bin first (as the test helpers do). */
export function findExecutable(name: string): string | undefined {
  const dirs = ["/usr/bin", "/usr/sbin", ...(process.env.PATH ?? "").split(delimiter), "/usr/local/bin"];
  for (const d of dirs) {
    if (d === "") continue;
    const p = join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exit code ${code ?? "?"}`;
}

function tail(s: string, n = 2000): string {
  const t = s.trim();
  return t.length <= n ? t : `…${t.slice(-n)}`;
}

async function tryConnect(endpoint: NbdkitEndpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const s = endpoint.kind === "unix" ? connect({ path: endpoint.path }) : connect({ host: endpoint.host, port: endpoint.port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => {
      s.destroy();
      resolve(false);
    });
  });
}

export class Nbdkit {
  readonly uri: string;
  readonly pid: number;
  readonly exited: Promise<NbdkitExit>;
  readonly args: readonly string[];
  private stopping = false;
  private exitInfo: NbdkitExit | undefined;
  private stderrBuf = "";

  private constructor(
    private readonly proc: NbdkitProcess,
    args: string[],
    uri: string,
    private readonly tempDir: string | undefined,
  ) {
    this.args = args;
    this.uri = uri;
    if (proc.pid === undefined) throw new ToolFailedError("nbdkit did not start (no pid)");
    this.pid = proc.pid;
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (d: string) => {
      this.stderrBuf = (this.stderrBuf + d).slice(-STDERR_KEEP);
    });
    this.exited = proc.then(
      (r) => this.onExit(r.exitCode ?? null, r.signal ?? null),
      (e: unknown) => {
        // With reject:false execa only rejects on our own misuse; keep `exited` total.
        this.stderrBuf += `\n${errorMessage(e)}`;
        return this.onExit(null, null);
      },
    );
  }

  private onExit(code: number | null, signal: string | null): NbdkitExit {
    this.exitInfo = { code, signal, stderr: tail(this.stderrBuf, STDERR_KEEP), expected: this.stopping };
    if (this.tempDir !== undefined) rmSync(this.tempDir, { recursive: true, force: true });
    return this.exitInfo;
  }

  /** nbdkit's stderr so far (its last 16 KiB). */
  get stderr(): string {
    return this.stderrBuf;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  static async start(opts: NbdkitOptions): Promise<Nbdkit> {
    const bin = findExecutable("nbdkit");
    if (bin === undefined) throw new ToolMissingError("nbdkit", "nbdkit");
    let tempDir: string | undefined;
    let endpoint: NbdkitEndpoint;
    let transport: NbdTransport;
    if (opts.port !== undefined) {
      endpoint = { kind: "tcp", host: "127.0.0.1", port: opts.port };
      transport = { kind: "tcp", host: "127.0.0.1", port: opts.port };
    } else {
      let path = opts.unixSocket;
      if (path === undefined) {
        tempDir = mkdtempSync(join(tmpdir(), "nbdkit-"));
        path = join(tempDir, "nbd.sock");
      }
      endpoint = { kind: "unix", path };
      transport = { kind: "unix", path };
    }
    const args = buildNbdkitArgs(opts, endpoint);
    const tls = opts.tls === "require";
    const uri = formatNbdUri({
      tls,
      transport,
      exportName: opts.exportName ?? "",
      ...(tls && opts.tlsPskFile !== undefined ? { tlsPskFile: opts.tlsPskFile } : {}),
    });
    const proc = execa(bin, args, EXEC_OPTIONS);
    const kit = new Nbdkit(proc, args, uri, tempDir);
    try {
      await kit.waitReady(endpoint, opts.startTimeoutMs ?? 15_000);
    } catch (e: unknown) {
      await kit.stop();
      throw e;
    }
    return kit;
  }

  private async waitReady(endpoint: NbdkitEndpoint, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let pause = 5;
    for (;;) {
      const ex = this.exitInfo;
      if (ex !== undefined) {
        throw new ToolFailedError(`nbdkit ${this.args.join(" ")} failed to start (${describeExit(ex.code, ex.signal)}): ${tail(ex.stderr) || "no message"}`);
      }
      if (await tryConnect(endpoint)) return;
      if (Date.now() > deadline) {
        throw new TimeoutError(`nbdkit did not accept connections within ${timeoutMs} ms; stderr: ${tail(this.stderrBuf) || "(empty)"}`);
      }
      // Wake early if nbdkit exits while we wait.
      await Promise.race([new Promise((r) => setTimeout(r, pause)), this.exited]);
      pause = Math.min(pause * 2, 100);
    }
  }

  /** SIGTERM, then SIGKILL after a grace period. Idempotent; resolves once nbdkit is gone. */
  async stop(graceMs = STOP_GRACE_MS): Promise<NbdkitExit> {
    if (this.exitInfo !== undefined) return this.exitInfo;
    this.stopping = true;
    this.proc.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.proc.kill("SIGKILL");
        resolve();
      }, graceMs);
    });
    try {
      await Promise.race([this.exited, killed]);
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A ToolFailedError describing an exit we did not ask for, or undefined. */
  static unexpectedExitError(e: NbdkitExit): ToolFailedError | undefined {
    if (e.expected) return undefined;
    return new ToolFailedError(`nbdkit aborted (${describeExit(e.code, e.signal)}): ${tail(e.stderr) || "no message on stderr"}`);
  }
}
