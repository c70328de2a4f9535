/**
 * The fenced code blocks of a Markdown file, with the docs-test marker that
 * classifies each shell block (test/e2e/670-docs-commands.test.ts runs them).
 *
 * A marker is an HTML comment on the line before the fence (blank lines
 * between are allowed), invisible on GitHub:
 *
 *   <!-- docs-test: run -->            run every command, in order, in the doc's session
 *   <!-- docs-test: serve -->          each command is a server: start it, await its first line, SIGTERM, exit 0
 *   <!-- docs-test: skip REASON -->    not run; the reason is required
 *
 * Shell blocks are those fenced ```sh, ```bash, ```shell or ```console (in a
 * console block only `$ ` lines are commands). A fence with no language at
 * all is an error too, so a command cannot hide in an unlabelled block: output
 * and diagrams are ```text.
 *
 * Pure: parsing only, no I/O, so the parser is tested on strings.
 */

export const SHELL_LANGS = new Set(["sh", "bash", "shell", "console"]);

export type Marker = { kind: "run" } | { kind: "serve" } | { kind: "skip"; reason: string } | { kind: "none" } | { kind: "bad"; text: string };

export interface DocBlock {
  /** Path as given, e.g. "docs/backup.md". */
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  marker: Marker;
  /** The block's lines, between the fences. */
  body: string[];
}

/** One command of a block: continuation lines joined, the trailing comment apart. */
export interface DocCommand {
  /** 1-based line in the doc. */
  line: number;
  code: string;
  comment: string;
  /** Ends in a lone `&`: a background job (code keeps the `&` off). */
  background: boolean;
}

const MARKER = /^<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->\s*$/;

function parseMarker(text: string): Marker {
  const m = MARKER.exec(text.trim());
  if (!m) return { kind: "bad", text };
  const [, kind, rest = ""] = m;
  if (kind === "run" && rest === "") return { kind: "run" };
  if (kind === "serve" && rest === "") return { kind: "serve" };
  if (kind === "skip" && rest !== "") return { kind: "skip", reason: rest };
  return { kind: "bad", text };
}

export function parseDocBlocks(doc: string, markdown: string): DocBlock[] {
  const lines = markdown.split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+|~~~+)\s*([\w-]*)/.exec(lines[i] ?? "");
    if (!open) continue;
    const fence = open[2] ?? "```";
    const lang = open[3] ?? "";
    let j = i - 1;
    while (j >= 0 && (lines[j] ?? "").trim() === "") j--;
    const prev = j >= 0 ? (lines[j] ?? "").trim() : "";
    const marker: Marker = prev.startsWith("<!--") && prev.includes("docs-test") ? parseMarker(prev) : { kind: "none" };
    const body: string[] = [];
    let k = i + 1;
    while (k < lines.length && !(lines[k] ?? "").trim().startsWith(fence)) body.push(lines[k++] ?? "");
    blocks.push({ doc, line: i + 1, lang, marker, body });
    i = k;
  }
  return blocks;
}

/** Problems with the classification of a doc's blocks: unlabelled fences, shell blocks without a valid marker. */
export function classificationProblems(blocks: readonly DocBlock[]): string[] {
  const out: string[] = [];
  for (const b of blocks) {
    const at = `${b.doc}:${b.line}`;
    if (b.lang === "") out.push(`${at}: a fence without a language: label it (\`\`\`text for output and diagrams, \`\`\`sh for commands)`);
    else if (SHELL_LANGS.has(b.lang) && b.marker.kind === "none") out.push(`${at}: an unclassified shell block: put <!-- docs-test: run -->, <!-- docs-test: serve --> or <!-- docs-test: skip REASON --> before it`);
    if (b.marker.kind === "bad") out.push(`${at}: a malformed marker ${b.marker.text} (run, serve, or skip with a reason)`);
    if (!SHELL_LANGS.has(b.lang) && b.marker.kind !== "none" && b.lang !== "") out.push(`${at}: a docs-test marker on a \`\`\`${b.lang} block`);
  }
  return out;
}

/** Splits `line` at its trailing shell comment: the first `#` outside quotes that starts a word. */
export function splitComment(line: string): { code: string; comment: string } {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "\\") i++;
    else if (c === "#" && (i === 0 || /\s/.test(line[i - 1] ?? ""))) return { code: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() };
  }
  return { code: line.trimEnd(), comment: "" };
}

export function blockCommands(block: DocBlock): DocCommand[] {
  const out: DocCommand[] = [];
  let pending: { line: number; code: string } | undefined;
  block.body.forEach((raw, idx) => {
    let text = raw;
    if (block.lang === "console") {
      if (pending === undefined && !/^\s*\$ /.test(text)) return;
      text = text.replace(/^\s*\$ /, "");
    }
    const line = block.line + 1 + idx;
    if (text.trimEnd().endsWith("\\")) {
      const part = text.trimEnd().slice(0, -1);
      pending = pending === undefined ? { line, code: part } : { line: pending.line, code: `${pending.code} ${part.trim()}` };
      return;
    }
    const joined = pending === undefined ? { line, code: text } : { line: pending.line, code: `${pending.code} ${text.trim()}` };
    pending = undefined;
    const { code, comment } = splitComment(joined.code);
    if (code.trim() === "") return;
    const bg = /(^|[^&])&\s*$/.test(code);
    out.push({ line: joined.line, code: bg ? code.replace(/&\s*$/, "").trim() : code.trim(), comment, background: bg });
  });
  return out;
}

/**
 * A `# prints X` comment as a regular expression for the output's first line:
 * `…` and `<anything>` match any text, the rest literally.
 */
export function printsPattern(comment: string): RegExp | undefined {
  const m = /^prints:?\s+(\S.*?)(\s{2,}.*)?$/.exec(comment);
  if (!m?.[1]) return undefined;
  const parts = m[1].split(/(…|<[^>]+>)/);
  return new RegExp(`^${parts.map((p) => (p === "…" || /^<[^>]+>$/.test(p) ? ".+" : p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("")}$`);
}

/** A `# exits N` comment: the exit status the doc promises, else 0. */
export function expectedExit(comment: string): number {
  const m = /(?:^|\W)exits (\d+)\b/.exec(comment);
  return m?.[1] !== undefined ? Number(m[1]) : 0;
}
