/**
 * Starts `sanbox` daemons as child processes for the demo and the benchmarks:
 * the array (`array serve`) and the hypervisor (`hypervisor serve`), each
 * resolved to dist/src/cli/main.js once it registers the command, else to the
 * interim standalone entry. Waits for the "rpc ENDPOINT" line on stdout.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";

const CLI_DIR = import.meta.dirname;

export function binFor(marker: string, fallback: string): string {
  const main = join(CLI_DIR, "main.js");
  if (existsSync(main) && readFileSync(main, "utf8").includes(marker)) return main;
  return join(CLI_DIR, fallback);
}

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
export async function startArrayAndHypervisor(dir: string): Promise<{ array: string; hypervisor: string; stop: () => Promise<void> }> {
  const array = await startDaemon(binFor("registerArrayServe", "main.js"), ["array", "serve", "--data", join(dir, "array")]);
  let hv: { proc: ChildDaemon; endpoint: string };
  try {
    hv = await startDaemon(binFor("registerHypervisor", "hypervisor-standalone.js"), ["hypervisor", "serve", "--array", array.endpoint, "--data", join(dir, "hv")]);
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
