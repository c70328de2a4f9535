/**
 * Benchmark result shape shared by every `npm run bench -- NAME` suite.
 * Each row compares ours against a peer measured in the same run; the ratio is
 * what matters (absolute numbers on a shared 2-core machine are noise).
 */
export interface BenchRow {
  case: string;
  ours: number;
  peer: string;
  peerValue: number;
  /** ours / peer for throughput; peer / ours for latency (always: >1 means we win). */
  ratio: number;
  unit: string;
  note?: string;
}

export interface BenchResult {
  bench: string;
  rows: BenchRow[];
  notes: string[];
}

export function markdownTable(r: BenchResult): string {
  const lines = [
    `### ${r.bench}`,
    "",
    "| case | ours | peer | peer value | ratio (>1 = ours better) | unit |",
    "|---|---:|---|---:|---:|---|",
    ...r.rows.map((x) => `| ${x.case} | ${fmt(x.ours)} | ${x.peer} | ${fmt(x.peerValue)} | ${x.ratio.toFixed(2)} | ${x.unit}${x.note ? ` (${x.note})` : ""} |`),
  ];
  if (r.notes.length > 0) lines.push("", ...r.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(3);
}

/** JSON rows with unit-suffixed keys, e.g. {case, ours_MBps, peer, peer_MBps, ratio}. */
export function jsonResult(r: BenchResult): unknown {
  return {
    bench: r.bench,
    rows: r.rows.map((x) => {
      const u = x.unit.replace("/s", "ps").replace(/[^A-Za-z0-9]/g, "_");
      return { case: x.case, [`ours_${u}`]: x.ours, peer: x.peer, [`peer_${u}`]: x.peerValue, ratio: x.ratio, ...(x.note ? { note: x.note } : {}) };
    }),
    notes: r.notes,
  };
}
