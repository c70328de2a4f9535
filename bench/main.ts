/**
 * `npm run bench -- NAME [--json]`: runs one benchmark suite (or all) and prints a markdown
 * table on stdout (or JSON with --json). Progress goes to stderr.
 */
import { jsonResult, markdownTable, type BenchResult } from "./report.js";

type Suite = (argv: string[]) => Promise<BenchResult>;
const SUITES: Record<string, () => Promise<Suite>> = {
  nbd: async () => (await import("./nbd.js")).run,
  store: async () => (await import("./store.js")).run,
  array: async () => (await import("./array.js")).run,
  backup: async () => (await import("./backup.js")).run,
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const json = argv.includes("--json");
  const names = argv.filter((a) => !a.startsWith("-"));
  const selected = names.length > 0 ? names : Object.keys(SUITES);
  const results: BenchResult[] = [];
  for (const name of selected) {
    const load = SUITES[name];
    if (!load) {
      console.error(`bench: unknown suite "${name}"; known: ${Object.keys(SUITES).join(", ")}`);
      process.exit(2);
    }
    const run = await load();
    results.push(await run(argv));
  }
  if (json) {
    const out = results.map(jsonResult);
    console.log(JSON.stringify(out.length === 1 ? out[0] : out, null, 2));
  } else {
    console.log(results.map(markdownTable).join("\n\n"));
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
