/**
 * `sanbox backup run` under a live workload on the local block store: the suite
 * of test/support/backup-run-suite.ts (full + incrementals pass the oracle and
 * equal their S1; negative control without the revert fails it).
 *
 * SANBOX_BACKUP_RUNS sets the chain length (default 20, as issue 6 asks of CI).
 */
import { describeBackupRun } from "../support/backup-run-suite.js";

describeBackupRun({
  title: "sanbox backup run under a live workload",
  tempPrefix: "sanbox-e2e-600-",
  arrayArgs: () => [],
  runs: Number(process.env.SANBOX_BACKUP_RUNS ?? "20"),
});
