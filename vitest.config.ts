import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The RBD tier needs Ceph (node scripts/setup.mjs --rbd) and runs by its own config: npm run test:rbd.
    exclude: ["test/rbd/**", "**/node_modules/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Interop tests start real servers and tools; two workers match the 2-core CI machine.
    pool: "forks",
    maxWorkers: 2,
  },
});
