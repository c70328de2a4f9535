/**
 * Starts `sanbox` daemons as child processes for the demo and the benchmarks:
 * the array (`array serve`) and the hypervisor (`hypervisor serve`), from the
 * same `sanbox` entry point. Waits for the "rpc ENDPOINT" line on stdout.
 */
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { sanboxBin } from "../src/package-root.js";

const SANBOX_MAIN = sanboxBin();

const daemonOptions = { reject: false, buffer: false, stdout: "pipe", stderr: "pipe", env: { SANBOX_LOG: "warn" } } as const;
export type ChildDaemon = ResultPromise<typeof daemonOptions>;

export async function startDaemon(bin: string, args: string[]): Promise<{ proc: ChildDaemon; endpoint: string }> {
  const proc = execa("node", [bin, ...args], daemonOptions);
  let err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^rpc (\S+)$/m.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    void proc.then(() => reject(new Error(`${args.slice(0, 2).join(" ")} exited early: ${err}`)));
  });
  return { proc, endpoint };
}

/** The array and the hypervisor, as a user starts them. */
export async function startArrayAndHypervisor(dir: string, arrayArgs: readonly string[] = []): Promise<{ array: string; hypervisor: string; stop: () => Promise<void> }> {
  const array = await startDaemon(SANBOX_MAIN, ["array", "serve", "--data", join(dir, "array"), ...arrayArgs]);
  let hv: { proc: ChildDaemon; endpoint: string };
  try {
    hv = await startDaemon(SANBOX_MAIN, ["hypervisor", "serve", "--array", array.endpoint, "--data", join(dir, "hv")]);
  } catch (e: unknown) {
    array.proc.kill("SIGTERM");
    await array.proc;
    throw e;
  }
  return {
    array: array.endpoint,
    hypervisor: hv.endpoint,
    stop: async () => {
      for (const c of [hv.proc, array.proc]) {
        c.kill("SIGTERM");
        await c;
      }
    },
  };
}
