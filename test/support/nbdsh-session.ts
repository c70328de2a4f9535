/**
 * One long-running `nbdsh` (libnbd's Python shell) holding one connection, driven
 * by JSON lines on stdin: each command answers one JSON line on stdout. This lets
 * a test keep a real libnbd handle open across many steps (and across abuse of the
 * server by other connections), and drive two servers with the same client.
 *
 * Strict mode is off, so out-of-range or unadvertised requests reach the server
 * instead of being refused by libnbd itself.
 */
import { createInterface } from "node:readline";
import { execa, type ResultPromise } from "execa";
import { requireTool, TOOL_ENV } from "./tools.js";

export type NbdshCommand =
  | { op: "pread"; off: number; len: number; flags?: number }
  | { op: "pwrite"; off: number; hex: string; flags?: number }
  | { op: "trim"; off: number; len: number; flags?: number }
  | { op: "zero"; off: number; len: number; flags?: number }
  | { op: "cache"; off: number; len: number; flags?: number }
  | { op: "flush"; flags?: number }
  | { op: "block_status"; off: number; len: number; flags?: number }
  | { op: "info" };

export interface NbdshReply {
  ok: boolean;
  /** pread: the data, hex. */
  hex?: string;
  /** block_status: context → [length, flags, length, flags, …] from `off`. */
  extents?: Record<string, number[]>;
  /** info: size and capabilities. */
  info?: Record<string, number | boolean>;
  /** On failure: libnbd's errno name (EINVAL, ENOSPC, EPERM, …) and message. */
  errno?: string;
  message?: string;
}

const SCRIPT = String.raw`
import sys, json
h.set_strict_mode(0)
ctxs = json.loads(CTXS)
for c in ctxs:
    h.add_meta_context(c)
h.connect_uri(URI)
print(json.dumps({"ok": True, "ready": True}), flush=True)
for line in sys.stdin:
    c = json.loads(line)
    op = c["op"]
    fl = c.get("flags", 0)
    r = {"ok": True}
    try:
        if op == "pread":
            r["hex"] = h.pread(c["len"], c["off"], fl).hex()
        elif op == "pwrite":
            h.pwrite(bytes.fromhex(c["hex"]), c["off"], fl)
        elif op == "trim":
            h.trim(c["len"], c["off"], fl)
        elif op == "zero":
            h.zero(c["len"], c["off"], fl)
        elif op == "cache":
            h.cache(c["len"], c["off"], fl)
        elif op == "flush":
            h.flush(fl)
        elif op == "block_status":
            got = {}
            def cb(ctx, off, entries, err):
                got.setdefault(ctx, []).extend(entries)
                return 0
            h.block_status(c["len"], c["off"], cb, fl)
            r["extents"] = got
        elif op == "info":
            r["info"] = {"size": h.get_size(), "can_trim": h.can_trim(), "can_zero": h.can_zero(),
                         "can_fast_zero": h.can_fast_zero(), "can_fua": h.can_fua(), "can_flush": h.can_flush(),
                         "can_cache": h.can_cache(), "read_only": h.is_read_only(),
                         "can_meta_context": h.can_meta_context("base:allocation")}
        else:
            r = {"ok": False, "errno": "EINVAL", "message": "unknown op " + op}
    except nbd.Error as e:
        r = {"ok": False, "errno": str(e.errno), "message": e.string}
    print(json.dumps(r), flush=True)
`;

const EXEC_OPTIONS = { env: TOOL_ENV, stdin: "pipe", stdout: "pipe", stderr: "pipe", buffer: false, reject: false } as const;
type NbdshProcess = ResultPromise<typeof EXEC_OPTIONS>;

export class NbdshSession {
  private readonly waiters: ((line: string) => void)[] = [];
  private readonly lines: string[] = [];
  private exited = false;
  private stderr = "";

  private constructor(private readonly proc: NbdshProcess) {
    const rl = createInterface({ input: proc.stdout });
    rl.on("line", (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (d: string) => (this.stderr += d));
    void proc.then(() => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w(JSON.stringify({ ok: false, errno: "EXITED", message: `nbdsh exited: ${this.stderr.trim()}` }));
    });
  }

  static async open(uri: string, opts: { metaContexts?: readonly string[] } = {}): Promise<NbdshSession> {
    const bin = requireTool("nbdsh");
    const script = `URI = ${JSON.stringify(uri)}\nCTXS = ${JSON.stringify(JSON.stringify(opts.metaContexts ?? ["base:allocation"]))}\n${SCRIPT}`;
    const proc = execa(bin, ["-c", script], EXEC_OPTIONS);
    const s = new NbdshSession(proc);
    const first = JSON.parse(await s.nextLine()) as NbdshReply;
    if (!first.ok) throw new Error(`nbdsh could not connect to ${uri}: ${first.message ?? ""}`);
    return s;
  }

  private nextLine(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.exited) return Promise.resolve(JSON.stringify({ ok: false, errno: "EXITED", message: `nbdsh exited: ${this.stderr.trim()}` }));
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async run(cmd: NbdshCommand): Promise<NbdshReply> {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    return JSON.parse(await this.nextLine()) as NbdshReply;
  }

  /** Like run, but throws unless the command succeeded. */
  async ok(cmd: NbdshCommand): Promise<NbdshReply> {
    const r = await this.run(cmd);
    if (!r.ok) throw new Error(`nbdsh ${cmd.op} failed: ${r.errno ?? "?"} ${r.message ?? ""}`);
    return r;
  }

  async close(): Promise<void> {
    if (!this.exited) this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.proc;
    clearTimeout(t);
  }
}
