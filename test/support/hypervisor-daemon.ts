/**
 * Start `sanbox hypervisor serve` as a user would, against a running array
 * daemon, run `sanbox vm …` commands against it, and stop it with SIGTERM.
 */
import { execa } from "execa";
import { sanboxBin } from "../../src/package-root.js";
import { connectHypervisor, type HypervisorClient } from "../../src/rpc/hypervisor-service-def.js";
import { TOOL_ENV } from "./tools.js";


export interface HypervisorDaemon {
  endpoint: string;
  pid: number | undefined;
  client: HypervisorClient;
  cli(args: readonly string[], opts?: { reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  json(args: readonly string[]): Promise<unknown>;
  stop(): Promise<void>;
  /** Sends `signal` (SIGKILL: a crash) and waits for the process to end; no exit status is checked. */
  kill(signal: NodeJS.Signals): Promise<void>;
  stderr(): string;
}

/** `extraArgs` go to `hypervisor serve` (e.g. --io-timeout, --reconnect-limit). */
export async function startHypervisor(dataDir: string, arrayEndpoint: string, extraArgs: readonly string[] = []): Promise<HypervisorDaemon> {
  const bin = sanboxBin();
  let err = "";
  const proc = execa("node", [bin, "hypervisor", "serve", "--array", arrayEndpoint, "--data", dataDir, ...extraArgs], {
    env: { ...TOOL_ENV, SANBOX_LOG: "warn" },
    reject: false,
    buffer: false,
    stdout: "pipe",
    stderr: "pipe",
  });
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const endpoint = await new Promise<string>((res, rej) => {
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^rpc (\S+)$/m.exec(out);
      if (m?.[1] !== undefined) res(m[1]);
    });
    void proc.then(() => rej(new Error(`hypervisor serve exited early: ${err}`)));
  });
  const client = connectHypervisor({ endpoint });
  const cli: HypervisorDaemon["cli"] = async (args, opts = {}) => {
    const r = await execa("node", [bin, ...args, "--endpoint", endpoint], { env: { ...TOOL_ENV, SANBOX_LOG: "warn" }, reject: false });
    const res = { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    if ((opts.reject ?? true) && res.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")} failed (${res.exitCode}): ${res.stderr}`);
    return res;
  };
  return {
    endpoint,
    pid: proc.pid,
    client,
    cli,
    json: async (args) => JSON.parse((await cli([...args, "--json"])).stdout) as unknown,
    stop: async () => {
      client.close();
      proc.kill("SIGTERM");
      const r = await proc;
      if (r.exitCode !== 0) throw new Error(`hypervisor serve exited with ${r.exitCode ?? r.signal}: ${err}`);
    },
    kill: async (signal) => {
      client.close();
      proc.kill(signal);
      await proc;
    },
    stderr: () => err,
  };
}
