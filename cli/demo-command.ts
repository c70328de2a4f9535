/**
 * `sanbox demo` (what `npm run demo` runs): the time-consistent VM backup from
 * start to finish on a temporary directory (backup-demo.ts). `--nbd` shows only
 * the NBD layer: our server on a memory disk driven by stock clients (nbd-demo.ts).
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "../src/errors.js";
import { runBackupDemo } from "./backup-demo.js";
import { runNbdDemo } from "./nbd-demo.js";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the end-to-end demonstration on a temporary directory (no flags needed)")
    .option("--nbd", "show only the NBD server driven by nbdinfo, nbdcopy and our client")
    .option("--backend <kind>", "where the array keeps its LUNs: local, or rbd on a throwaway Ceph cluster (needs: node scripts/setup.mjs --rbd)", "local")
    .action(async (options: { nbd?: boolean; backend?: string }) => {
      const backend = options.backend ?? "local";
      if (backend !== "local" && backend !== "rbd") throw new InvalidArgumentError(`--backend must be local or rbd, not "${backend}"`);
      return options.nbd ? runNbdDemo() : runBackupDemo({ backend });
    });
}
