/**
 * `npm run bench -- [NAME...] [--json] [SUITE OPTIONS]`: runs benchmark suites (default all) and prints a markdown
 * table on stdout (or JSON with --json). Progress goes to stderr.
 */
import { jsonResult, markdownTable, type BenchResult } from "./report.js";

type Suite = (argv: string[]) => Promise<BenchResult>;
const SUITES: Record<string, () => Promise<Suite>> = {
  nbd: async () => (await import("./nbd.js")).run,
  store: async () => (await import("./store.js")).run,
  array: async () => (await import("./array.js")).run,
  backup: async () => (await import("./backup.js")).run,
  hash: async () => (await import("./hash.js")).run,
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const json = argv.includes("--json");
  // Suite names come first; everything from the first option on belongs to the
  // suites (`nbd --size 256M`: "256M" is an option's value, not a suite).
  const firstOption = argv.findIndex((a) => a.startsWith("-"));
  const names = firstOption < 0 ? argv : argv.slice(0, firstOption);
  const selected = names.length > 0 ? names : Object.keys(SUITES);
  const unknown = selected.filter((n) => SUITES[n] === undefined);
  if (unknown.length > 0) {
    console.error(`bench: unknown suite ${unknown.map((n) => `"${n}"`).join(", ")}; known: ${Object.keys(SUITES).join(", ")}`);
    process.exit(2);
  }
  const results: BenchResult[] = [];
  for (const name of selected) {
    const load = SUITES[name];
    if (!load) throw new Error("unreachable");
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
