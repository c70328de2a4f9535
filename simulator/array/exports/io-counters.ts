/**
 * Array-side NBD I/O counters: bytes every export served to READ and accepted
 * from WRITE since the daemon started (reported by GetPoolStats). They let a
 * backup product, a benchmark or a test measure what it really read from the
 * array, not what it believes it read.
 */
export class IoCounters {
  bytesRead = 0;
  /** The part of bytesRead served by snapshot exports (what a backup reads). */
  snapshotBytesRead = 0;
  bytesWritten = 0;
}
