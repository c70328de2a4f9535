/**
 * Start `sanbox array serve` as a user would (a real process on a data
 * directory), run `sanbox` client commands against it, and stop it with SIGTERM.
 */
import { join } from "node:path";
import { execa } from "execa";
import { waitForSocket } from "./wait-socket.js";
import { sanboxBin } from "../../src/package-root.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { tempDir, TOOL_ENV } from "./tools.js";

export { sanboxBin };

export interface ArrayDaemon {
  dir: string;
  rpcEndpoint: string;
  nbdSocket: string;
  pid: number | undefined;
  /** `nbd+unix:///NAME?socket=…` on the local (untrusted-TLS-free) socket. */
  uri(exportName: string): string;
  /** Runs a `sanbox` command against this daemon; returns stdout (throws on failure). */
  cli(args: readonly string[], opts?: { reject?: boolean; env?: Record<string, string> }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** Runs a `sanbox … --json` command and parses its output. */
  json(args: readonly string[]): Promise<unknown>;
  stop(): Promise<void>;
  /** Sends `signal` (SIGKILL: a crash) and waits for the process to end; no exit status is checked. */
  kill(signal: NodeJS.Signals): Promise<void>;
  stderr(): string;
}

export async function startArrayDaemon(dir: string, extraArgs: readonly string[] = [], env: Record<string, string> = {}): Promise<ArrayDaemon> {
  const bin = sanboxBin();
  let err = "";
  const proc = execa("node", [bin, "array", "serve", "--data", dir, ...extraArgs], {
    env: { ...TOOL_ENV, SANBOX_LOG: "warn", ...env },
    reject: false,
    buffer: false,
    stdout: "pipe",
    stderr: "pipe",
  });
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  let out = "";
  const lines = new Promise<string>((resolveLines, rejectLines) => {
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.split("\n").length >= 3) resolveLines(out);
    });
    void proc.then(() => rejectLines(new Error(`array serve exited early: ${err}`)));
  });
  const text = await lines;
  const rpcLine = /^rpc (\S+)$/m.exec(text);
  const nbdLine = /^nbd (\S+)$/m.exec(text);
  if (!rpcLine?.[1] || !nbdLine?.[1]) throw new Error(`unexpected array serve output: ${text}`);
  const rpcEndpoint = rpcLine[1];
  const sock = /socket=([^&]+)/.exec(nbdLine[1])?.[1];
  const nbdSocket = sock !== undefined ? decodeURIComponent(sock) : join(dir, "nbd.sock");
  await waitForSocket(nbdSocket, proc);
  const cli: ArrayDaemon["cli"] = async (args, opts = {}) => {
    const r = await execa("node", [bin, ...args, "--endpoint", rpcEndpoint], {
      env: { ...TOOL_ENV, SANBOX_LOG: "warn", ...opts.env },
      reject: false,
    });
    const res = { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    if ((opts.reject ?? true) && res.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")} failed (${res.exitCode}): ${res.stderr}`);
    return res;
  };
  return {
    dir,
    rpcEndpoint,
    nbdSocket,
    pid: proc.pid,
    uri: (name) => `nbd+unix:///${name}?socket=${nbdSocket}`,
    cli,
    json: async (args) => JSON.parse((await cli([...args, "--json"])).stdout) as unknown,
    stop: async () => {
      proc.kill("SIGTERM");
      const r = await proc;
      if (r.exitCode !== 0) throw new Error(`array serve exited with ${r.exitCode ?? r.signal}: ${err}`);
    },
    kill: async (signal) => {
      proc.kill(signal);
      await proc;
    },
    stderr: () => err,
  };
}

/** Narrow helpers for parsed --json output. */
export function field(o: unknown, k: string): unknown {
  if (typeof o !== "object" || o === null) throw new Error(`expected an object, got ${JSON.stringify(o)}`);
  return (o as Record<string, unknown>)[k];
}
export function str(o: unknown, k: string): string {
  const v = field(o, k);
  if (typeof v !== "string") throw new Error(`field ${k} is not a string: ${JSON.stringify(o)}`);
  return v;
}

export interface ArrayFixture {
  tmp: { dir: string; cleanup: () => void };
  d: ArrayDaemon;
  rpc: ArrayClient;
  /** Close the client, stop the daemon (SIGTERM), remove the directory. */
  stop(): Promise<void>;
}

/** The common e2e setup: a temp directory, an array daemon in it, and an RPC client. */
export async function startArrayFixture(prefix: string): Promise<ArrayFixture> {
  const tmp = tempDir(prefix);
  const d = await startArrayDaemon(join(tmp.dir, "array"));
  const rpc = connectArray({ endpoint: d.rpcEndpoint });
  return {
    tmp,
    d,
    rpc,
    stop: async () => {
      rpc.close();
      await d.stop();
      tmp.cleanup();
    },
  };
}
