/**
 * Meta-context query matching (proto.md "Metadata querying"). A query is either a
 * full context name, or a namespace/leaf prefix ending in ":" ("base:",
 * "qemu:dirty-bitmap:") which, for LIST only, matches every context under it.
 * An empty query list in LIST means "all contexts"; in SET it selects none.
 */
export function matchContexts(available: readonly string[], queries: readonly string[], forList: boolean): string[] {
  if (queries.length === 0) return forList ? [...available] : [];
  const out: string[] = [];
  for (const q of queries) {
    for (const name of available) {
      const hit = name === q || (forList && q.endsWith(":") && name.startsWith(q));
      if (hit && !out.includes(name)) out.push(name);
    }
  }
  return out;
}
