/**
 * One throwaway Ceph cluster for the whole RBD tier, started with the project's
 * script before the first file and stopped (by its recorded PIDs) after the last.
 * Files share its pool; each array daemon has its own data directory, and LUN
 * images are named by random LUN ids, so files cannot see each other's LUNs.
 * (010-ceph-cluster starts clusters of its own: it tests the script.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startCephCluster } from "../support/ceph-cluster.js";

declare module "vitest" {
  export interface ProvidedContext {
    cephConf: string;
    cephPool: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = mkdtempSync(join(tmpdir(), "sanbox-rbd-tier-"));
  const cluster = await startCephCluster(join(root, "ceph"));
  project.provide("cephConf", cluster.conf);
  project.provide("cephPool", cluster.pool);
  return async () => {
    try {
      await cluster.stop();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  };
}
