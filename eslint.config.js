// Lint policy: typescript-eslint's type-checked rules. `any` is banned outright;
// values that cross a boundary arrive as `unknown` and are narrowed.
//
// Layering (README "Rules the code keeps"), kept here rather than by review:
//   src/        shared libraries; import nothing outside src/
//   simulator/  the array and hypervisor; never import plugin/ (they meet over NBD and gRPC)
//   plugin/     the backup plugin and conformance suite; never import simulator/
//   cli/        the one composition root; may import all of the above
// and no module takes part in an import cycle (import-x/no-cycle).
import importX from "eslint-plugin-import-x";
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript";
import tseslint from "typescript-eslint";

/** A no-restricted-imports rule that forbids relative imports reaching `dirs` (each a top-level folder). */
function forbid(dirs, why) {
  return {
    "no-restricted-imports": [
      "error",
      { patterns: dirs.map((dir) => ({ regex: `^(\\.\\./)+${dir}(/|$)`, message: why })) },
    ],
  };
}

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "src/rpc/generated/**", "coverage/**", ".bench-tmp/**"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ["vitest.config.ts", "vitest.rbd.config.ts"] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true, allowBoolean: true }],
    },
  },
  {
    // Shipped code runs on Node >= 20.5 (package.json engines); tests and tools may use newer.
    files: ["src/**/*.ts", "simulator/**/*.ts", "plugin/**/*.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector: "MemberExpression[object.type='MetaProperty'][property.name=/^(dirname|filename)$/]",
          message: "import.meta.dirname/filename need Node 20.11; use dirname(fileURLToPath(import.meta.url)).",
        },
      ],
    },
  },
  {
    plugins: { "import-x": importX },
    settings: {
      ...importX.flatConfigs.typescript.settings,
      "import-x/resolver": undefined,
      "import-x/resolver-next": [createTypeScriptImportResolver({ project: "tsconfig.json" })],
    },
    files: ["cli/**/*.ts", "src/**/*.ts", "simulator/**/*.ts", "plugin/**/*.ts", "bench/**/*.ts", "test/**/*.ts"],
    rules: { "import-x/no-cycle": ["error", { ignoreExternal: true }] },
  },
  { files: ["src/**/*.ts"], rules: forbid(["cli", "simulator", "plugin", "bench", "test"], "src/ is the shared library layer: it imports nothing outside src/.") },
  { files: ["simulator/**/*.ts"], rules: forbid(["plugin", "cli", "bench", "test"], "simulator/ never imports plugin/ or cli/: the products meet over NBD and gRPC.") },
  { files: ["plugin/**/*.ts"], rules: forbid(["simulator", "cli", "bench", "test"], "plugin/ never imports simulator/ or cli/: the products meet over NBD and gRPC.") },
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
  },
);
