/**
 * Runs `sanbox conformance` and `sanbox fault-proxy` as a user would (package.json bin.sanbox).
 */
import { execa } from "execa";
import { sanboxBin } from "./array-daemon.js";
import { TOOL_ENV } from "./tools.js";

/** The `sanbox` entry point. */
export function sanboxEntry(): Promise<string> {
  return Promise.resolve(sanboxBin());
}

export interface CliResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function runSanbox(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execa("node", [await sanboxEntry(), ...args], { env: { ...TOOL_ENV, SANBOX_LOG: "warn", ...env }, reject: false, timeout: 120_000 });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
}

export interface LongRunning {
  /** The first stdout line (fault-proxy prints its URI, or JSON with --json). */
  firstLine: string;
  /** Sends a signal to the sanbox process. */
  kill(signal: NodeJS.Signals): void;
  stderr(): string;
  /** Resolves with the exit code once the process ended. */
  exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
}

export async function startSanbox(args: readonly string[]): Promise<LongRunning> {
  const proc = execa("node", [await sanboxEntry(), ...args], { env: { ...TOOL_ENV, SANBOX_LOG: "info" }, reject: false, buffer: false, stdout: "pipe", stderr: "pipe" });
  let err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = proc.then((r) => ({ exitCode: r.exitCode, signal: r.signal }));
  const firstLine = await new Promise<string>((res, rej) => {
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) res(out.slice(0, nl));
    });
    void exited.then((x) => rej(new Error(`sanbox ${args.join(" ")} exited (${x.exitCode ?? x.signal ?? "?"}) before printing: ${err}`)));
  });
  return { firstLine, kill: (sig) => void proc.kill(sig), stderr: () => err, exited };
}
