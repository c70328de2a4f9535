// The backup e2e on `sanbox array serve --backend rbd`: the same suite as
// test/e2e/600 (full, incrementals, oracle, images equal S1, negative control),
// with a shorter chain to keep the tier within budget.
import { inject } from "vitest";
import { describeBackupRun } from "../support/backup-run-suite.js";

describeBackupRun({
  title: "sanbox backup run under a live workload, LUNs on Ceph RBD",
  tempPrefix: "sanbox-rbd-200-",
  arrayArgs: () => ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool")],
  runs: Number(process.env.SANBOX_BACKUP_RUNS ?? "3"),
});
