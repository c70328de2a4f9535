/**
 * Failpoints on the backup's path, so crash tests stop a run at an exact step:
 * with SANBOX_FAILPOINT=<name>, the process reaching `failpoint(name)` prints
 * "failpoint <name>" on stderr and waits there to be killed (bbolt's pattern).
 * Without the variable each call is one string comparison.
 */
export async function failpoint(name: string): Promise<void> {
  if (process.env.SANBOX_FAILPOINT !== name) return;
  process.stderr.write(`failpoint ${name}\n`);
  await new Promise<never>(() => undefined);
}
