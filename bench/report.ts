/**
 * Benchmark result shape shared by every `npm run bench -- NAME` suite.
 * Each row compares ours against a peer measured in the same run; the ratio is
 * what matters (absolute numbers on a shared 2-core machine are noise).
 *
 * A suite whose issue states goals gives each row a `goal`: then the ratio is
 * the one the goal names (e.g. "ours/peer <= 1.25", so not always ">1 = ours
 * better") and the table gains goal and pass/fail columns. Other suites keep
 * the plain table.
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
  /** The issue's target for this row; `text` says which ratio it bounds. */
  goal?: { text: string; pass: boolean };
}

export interface BenchResult {
  bench: string;
  /** The command that produced the result, printed above the table. */
  command?: string;
  rows: BenchRow[];
  notes: string[];
}

export function markdownTable(r: BenchResult): string {
  if (r.rows.some((x) => x.goal !== undefined)) return goalTable(r);
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

function goalTable(r: BenchResult): string {
  const lines = [
    `### ${r.bench}`,
    "",
    ...(r.command !== undefined ? ["`" + r.command + "`", ""] : []),
    "| case | ours | peer | peer value | unit | ratio | goal | result |",
    "|---|---:|---|---:|---|---:|---|---|",
    ...r.rows.map((x) => {
      const result = x.goal === undefined ? "" : x.goal.pass ? "pass" : "**FAIL**";
      return `| ${x.case}${x.note ? ` (${x.note})` : ""} | ${fmt(x.ours)} | ${x.peer} | ${fmt(x.peerValue)} | ${x.unit} | ${ratioText(x.ratio)} | ${x.goal?.text ?? ""} | ${result} |`;
    }),
  ];
  if (r.notes.length > 0) lines.push("", ...r.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

function ratioText(n: number): string {
  return Number.isFinite(n) ? (n >= 10 ? n.toFixed(1) : n >= 0.1 ? n.toFixed(2) : n.toPrecision(2)) : "n/a";
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  return n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(3);
}

/** JSON rows with unit-suffixed keys, e.g. {case, ours_MBps, peer, peer_MBps, ratio}. */
export function jsonResult(r: BenchResult): unknown {
  return {
    bench: r.bench,
    ...(r.command !== undefined ? { command: r.command } : {}),
    rows: r.rows.map((x) => {
      const u = x.unit.replace("/s", "ps").replace(/[^A-Za-z0-9]/g, "_");
      return { case: x.case, [`ours_${u}`]: x.ours, peer: x.peer, [`peer_${u}`]: x.peerValue, ratio: x.ratio, ...(x.note ? { note: x.note } : {}), ...(x.goal ? { goal: x.goal.text, pass: x.goal.pass } : {}) };
    }),
    notes: r.notes,
  };
}
