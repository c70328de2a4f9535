/**
 * Reading `sanbox conformance --json` reports and checking its JUnit XML in
 * e2e tests (700, 720).
 */
export interface Result {
  id: string;
  status: string;
  rule: string;
  detail?: string;
}
export interface Report {
  passed: number;
  failed: number;
  skipped: number;
  results: Result[];
}

export function parseReport(text: string): Report {
  const v: unknown = JSON.parse(text);
  if (typeof v !== "object" || v === null || !("results" in v) || !Array.isArray(v.results)) throw new Error(`not a conformance report: ${text.slice(0, 300)}`);
  const results = (v.results as unknown[]).map((r): Result => {
    if (typeof r !== "object" || r === null) throw new Error("bad result");
    const o = r as Record<string, unknown>;
    if (typeof o.id !== "string" || typeof o.status !== "string" || typeof o.rule !== "string") throw new Error(`bad result ${JSON.stringify(r)}`);
    return { id: o.id, status: o.status, rule: o.rule, ...(typeof o.detail === "string" ? { detail: o.detail } : {}) };
  });
  const n = (k: string): number => {
    const x = (v as Record<string, unknown>)[k];
    return typeof x === "number" ? x : NaN;
  };
  return { passed: n("passed"), failed: n("failed"), skipped: n("skipped"), results };
}

/**
 * A strict little XML well-formedness check (no XML parser among our dependencies):
 * tags nest, attributes are quoted, text has no raw '<' or unescaped '&'.
 * Returns the element names in document order.
 */
export function parseXml(text: string): { name: string; attrs: Record<string, string> }[] {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, "");
  const stack: string[] = [];
  const out: { name: string; attrs: Record<string, string> }[] = [];
  const re = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(body)) !== null) {
    pos = re.lastIndex;
    const [, close, name, attrText, selfClose, textNode] = m;
    if (textNode !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(textNode)) throw new Error(`bad entity in text: ${textNode.slice(0, 80)}`);
      if (stack.length === 0 && textNode.trim() !== "") throw new Error("text outside the root element");
      continue;
    }
    if (name === undefined) throw new Error("no tag name");
    if (close === "/") {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of (attrText ?? "").matchAll(/([A-Za-z_][\w.-]*)="([^"]*)"/g)) {
      if (a[1] !== undefined && a[2] !== undefined) {
        if (/&(?!(amp|lt|gt|quot|apos);)/.test(a[2])) throw new Error(`bad entity in attribute ${a[1]}`);
        attrs[a[1]] = a[2];
      }
    }
    out.push({ name, attrs });
    if (selfClose !== "/") stack.push(name);
  }
  if (pos !== body.length) throw new Error(`unparseable XML at offset ${pos}: ${body.slice(pos, pos + 80)}`);
  if (stack.length !== 0) throw new Error(`unclosed <${stack.join("><")}>`);
  return out;
}
