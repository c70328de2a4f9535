/**
 * One RBD image or snapshot served in user space by `qemu-nbd` over qemu's rbd
 * driver (`rbd:pool/image[@snap]:conf=…`), reached through our NBD client. There
 * is no kernel nbd module here, so rbd-nbd cannot map; qemu-nbd needs none.
 *
 * Invariants:
 *  - One qemu-nbd per open image/snapshot, on a Unix socket in the array's data
 *    directory, started with --persistent so our client may reconnect; its PID
 *    is ours alone and `stop()` kills exactly it.
 *  - The export size is fixed when qemu-nbd opens the image: a resize or a
 *    rollback restarts it (the caller fences I/O meanwhile).
 *  - FLUSH goes through qemu to rbd_flush, so a flushed write is in RADOS before
 *    a snapshot is cut; with multi-conn, one FLUSH covers every connection.
 *  - `stop()` is bounded: our client gets CLIENT_CLOSE_MS to finish what it has in
 *    flight (a request Ceph has paused never finishes), then qemu-nbd gets SIGTERM
 *    and, after TERM_GRACE_MS, SIGKILL; killing it fails whatever was still
 *    pending. If the daemon itself exits first (its watchdog, a crash in JS), an
 *    'exit' hook SIGKILLs the child, so no qemu-nbd outlives the array holding
 *    the image's exclusive lock.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { ToolMissingError, UnavailableError } from "../../../src/errors.js";
import { NbdClientPool } from "../../../src/nbd/client-pool.js";
import { NBD_META_BASE_ALLOCATION } from "../../../src/nbd/constants.js";
import { formatNbdUri } from "../../../src/nbd/uri.js";

/**
 * Connections per image. qemu-nbd advertises NBD_FLAG_CAN_MULTI_CONN, so a FLUSH on
 * one covers writes completed on all; nbdcopy drives our export with 4, and one
 * connection behind them measured 0.6–0.9 of qemu-nbd straight.
 */
const CONNECTIONS = 4;
const CLIENT_CLOSE_MS = 2_000;
const TERM_GRACE_MS = 3_000;

/** Every qemu-nbd this process started and has not stopped: one 'exit' hook kills them all. */
const running = new Set<ChildProcess>();
function track(child: ChildProcess): void {
  if (running.size === 0 && process.listeners("exit").every((l) => l !== killAll)) process.on("exit", killAll);
  running.add(child);
}
function killAll(): void {
  for (const c of running) c.kill("SIGKILL");
}

export class QemuNbdImage {
  private constructor(
    readonly socket: string,
    private readonly child: ChildProcess,
    readonly client: NbdClientPool,
  ) {
    track(child);
  }

  static async start(opts: { socket: string; conf: string; spec: string; readOnly: boolean; timeoutMs?: number }): Promise<QemuNbdImage> {
    if (!existsSync("/usr/bin/qemu-nbd")) throw new ToolMissingError("qemu-nbd", "qemu-utils qemu-block-extra");
    rmSync(opts.socket, { force: true });
    const args = ["--persistent", "--format=raw", `--socket=${opts.socket}`, "--shared=16", "--cache=writeback", "--aio=threads"];
    if (opts.readOnly) args.push("--read-only");
    else args.push("--discard=unmap");
    args.push(`rbd:${opts.spec}:conf=${opts.conf}`);
    const child = spawn("/usr/bin/qemu-nbd", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    const uri = formatNbdUri({ tls: false, transport: { kind: "unix", path: opts.socket }, exportName: "" });
    for (;;) {
      if (child.exitCode !== null) throw new UnavailableError(`qemu-nbd for ${opts.spec} exited ${child.exitCode}: ${stderr.trim()}`);
      if (existsSync(opts.socket)) {
        try {
          const client = await NbdClientPool.connect(uri, CONNECTIONS, { metaContexts: [NBD_META_BASE_ALLOCATION], connectTimeoutMs: 5_000 });
          return new QemuNbdImage(opts.socket, child, client);
        } catch {
          /* not listening yet */
        }
      }
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await exited;
        throw new UnavailableError(`qemu-nbd for ${opts.spec} did not serve within ${opts.timeoutMs ?? 30_000} ms: ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get size(): number {
    return this.client.size;
  }

  async stop(): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (t = setTimeout(r, CLIENT_CLOSE_MS)));
    await Promise.race([this.client.close().catch(() => undefined), late]);
    clearTimeout(t);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
      this.child.kill("SIGTERM");
      const k = setTimeout(() => this.child.kill("SIGKILL"), TERM_GRACE_MS);
      await gone;
      clearTimeout(k);
    }
    running.delete(this.child);
    rmSync(this.socket, { force: true });
  }
}
