/**
 * The layering rules of eslint.config.js must actually bite: scratch modules
 * that break each rule are written under the real folders (the rules are
 * path-based) and linted with the project's own configuration. The probes are
 * removed whatever happens.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { afterAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../../src/package-root.js";

const ROOT = packageRoot();
const PROBE = "__lint_probe__";
const made: string[] = [];

function probe(folder: string, files: Record<string, string>): string[] {
  const dir = join(ROOT, folder, `${PROBE}${process.pid}`);
  mkdirSync(dir, { recursive: true });
  made.push(dir);
  return Object.entries(files).map(([name, text]) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  });
}

afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

async function ruleIds(paths: string[]): Promise<string[]> {
  // The probes are not in any tsconfig, so type-aware rules are off for them; the layering rules need no types.
  const eslint = new ESLint({ cwd: ROOT, overrideConfig: [{ files: [`**/${PROBE}*/**`], ...tseslint.configs.disableTypeChecked }] });
  const results = await eslint.lintFiles(paths);
  return results.flatMap((r) => r.messages.map((m) => m.ruleId ?? m.message));
}

describe("lint keeps the layering", () => {
  it("src/ may not import simulator/, plugin/ or cli/", async () => {
    const [a, b, c] = probe("src", {
      "a.ts": 'export { Hypervisor } from "../../simulator/hypervisor/hypervisor.js";\n',
      "b.ts": 'import { runBackup } from "../../plugin/backup/backup-run.js";\nexport const b = runBackup;\n',
      "c.ts": 'import { formatTable } from "../../cli/table.js";\nexport const c = formatTable;\n',
    });
    expect(await ruleIds([a!, b!, c!])).toEqual(["no-restricted-imports", "no-restricted-imports", "no-restricted-imports"]);
  });

  it("simulator/ and plugin/ may not import each other", async () => {
    const [s] = probe("simulator", { "s.ts": 'import { runBackup } from "../../plugin/backup/backup-run.js";\nexport const s = runBackup;\n' });
    const [p] = probe("plugin", { "p.ts": 'import { Hypervisor } from "../../simulator/hypervisor/hypervisor.js";\nexport const p = Hypervisor;\n' });
    expect(await ruleIds([s!, p!])).toEqual(["no-restricted-imports", "no-restricted-imports"]);
  });

  it("an import cycle fails; the same imports without the cycle pass", async () => {
    const [a, b] = probe("src", {
      "cycle-a.ts": 'import { b } from "./cycle-b.js";\nexport const a = (): number => b() + 1;\n',
      "cycle-b.ts": 'import { a } from "./cycle-a.js";\nexport const b = (): number => a() + 1;\n',
    });
    expect(await ruleIds([a!, b!])).toEqual(["import-x/no-cycle", "import-x/no-cycle"]);
    const [c, d] = probe("src", {
      "line-c.ts": 'import { d } from "./line-d.js";\nexport const c = (): number => d() + 1;\n',
      "line-d.ts": "export const d = (): number => 1;\n",
    });
    expect(await ruleIds([c!, d!])).toEqual([]);
  });

  it("cli/ may import every layer", async () => {
    const [x] = probe("cli", { "x.ts": 'import { Hypervisor } from "../../simulator/hypervisor/hypervisor.js";\nimport { runBackup } from "../../plugin/backup/backup-run.js";\nexport const x = [Hypervisor, runBackup];\n' });
    expect(await ruleIds([x!])).toEqual([]);
  });
});
