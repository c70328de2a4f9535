/**
 * matchContexts: LIST and SET query matching (proto.md "Metadata querying").
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { matchContexts } from "../../../src/nbd/meta-context.js";

const AVAILABLE = ["base:allocation", "qemu:dirty-bitmap:S1", "qemu:dirty-bitmap:S2"];

type Row = [string, string[], boolean, string[]];

const table: Row[] = [
  ["LIST with no queries lists everything", [], true, AVAILABLE],
  ["SET with no queries selects nothing", [], false, []],
  ["an exact name, LIST", ["base:allocation"], true, ["base:allocation"]],
  ["an exact name, SET", ["qemu:dirty-bitmap:S2"], false, ["qemu:dirty-bitmap:S2"]],
  ["a namespace prefix lists its contexts", ["qemu:"], true, ["qemu:dirty-bitmap:S1", "qemu:dirty-bitmap:S2"]],
  ["a leaf prefix lists its contexts", ["qemu:dirty-bitmap:"], true, ["qemu:dirty-bitmap:S1", "qemu:dirty-bitmap:S2"]],
  ["a prefix selects nothing in SET", ["qemu:"], false, []],
  ["unknown names are ignored", ["base:nope", "x:y"], true, []],
  ["a prefix without its colon does not match", ["base"], true, []],
  ["answer order follows the queries", ["qemu:dirty-bitmap:S2", "base:allocation"], false, ["qemu:dirty-bitmap:S2", "base:allocation"]],
  ["duplicates are answered once", ["base:allocation", "base:allocation", "base:"], true, ["base:allocation"]],
  ["names are case-sensitive", ["BASE:allocation"], false, []],
];

describe("matchContexts", () => {
  it.each(table)("%s", (_name, queries, forList, want) => {
    expect(matchContexts(AVAILABLE, queries, forList)).toEqual(want);
  });

  it("answers only available contexts, each once, and SET is a subset of LIST", () => {
    const query = fc.oneof(fc.constantFrom(...AVAILABLE, "base:", "qemu:", "qemu:dirty-bitmap:", ""), fc.string({ maxLength: 12 }));
    fc.assert(
      fc.property(fc.array(query, { maxLength: 6 }), (queries) => {
        const list = matchContexts(AVAILABLE, queries, true);
        const set = matchContexts(AVAILABLE, queries, false);
        for (const r of [list, set]) {
          expect(new Set(r).size).toBe(r.length);
          for (const n of r) expect(AVAILABLE).toContain(n);
        }
        for (const n of set) expect(list).toContain(n);
        for (const n of set) expect(queries).toContain(n);
      }),
    );
  });
});
