import { defineConfig } from "vitest/config";

// The RBD tier (test/rbd/): global-setup.ts starts one throwaway Ceph cluster with
// scripts/ceph-cluster.mjs for every file; files run one at a time, as the cluster
// already takes most of a core of the 2-core machine.
export default defineConfig({
  test: {
    include: ["test/rbd/**/*.test.ts"],
    globalSetup: ["test/rbd/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
