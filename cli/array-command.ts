/**
 * `sanbox array …`: commands that act on an array data directory directly.
 *
 *   sanbox array fsck --data DIR [--deep] [--json]
 *
 * fsck opens the block store, runs the invariant checker (refcounts, free lists,
 * maps/wset agreement, one entry per block between readers, catalogue links, every
 * snapshot readable) and exits 0 when clean, 1 when not. Run it on a stopped array:
 * opening the store also performs recovery (incomplete group snapshots are removed).
 * `array serve` (cli/array-serve.ts) joins the same group.
 */
import type { Command } from "commander";
import { CorruptError } from "../src/errors.js";
import { ArrayStore } from "../simulator/array/index.js";
import { formatSize } from "../src/size.js";

export function registerArray(program: Command): Command {
  const array = program.command("array").description("the simulated SAN array");
  array
    .command("fsck")
    .description("check every invariant of an array data directory")
    .requiredOption("--data <dir>", "array data directory")
    .option("--deep", "also read every data block of every LUN and snapshot")
    .option("--json", "machine-readable output")
    .action(async (opts: { data: string; deep?: boolean; json?: boolean }) => {
      const store = await ArrayStore.open(opts.data);
      try {
        const report = await store.check({ deep: opts.deep ?? false });
        const pool = store.poolInfo();
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ...report, pool }, null, 2)}\n`);
        } else {
          const s = report.stats;
          process.stdout.write(
            `${report.ok ? "clean" : "CORRUPT"}: ${s.luns} LUNs, ${s.snapshots} snapshots (+${s.tombstones} tombstones), ${s.groups} group snapshots, ` +
              `${s.entries} mappings, ${s.referencedSlots} slots in use (${formatSize(pool.usedBytes)}), ${s.freeSlots} free, ${s.pendingSlots} pending\n`,
          );
          for (const e of report.errors) process.stdout.write(`  ${e}\n`);
        }
        if (!report.ok) throw new CorruptError(`${report.errors.length} invariant violation(s) in ${opts.data}`);
      } finally {
        await store.close();
      }
    });
  return array;
}
