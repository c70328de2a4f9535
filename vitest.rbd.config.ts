import { defineConfig } from "vitest/config";

// The RBD tier (test/rbd/): each file starts its own throwaway Ceph cluster with
// scripts/ceph-cluster.mjs, so files run one at a time (a cluster is ~200 MB of RSS
// and most of a core while it peers).
export default defineConfig({
  test: {
    include: ["test/rbd/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
