/** The client paging loop (src/rpc/paging.ts): every item once, lazily, and a bound against a server whose tokens never end. */
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { allPages, pagedItems, type Page } from "../../../src/rpc/paging.js";

/** A server of `items` in pages of `size`, counting its calls. */
function pager(items: readonly number[], size: number): { fetch: (token: string) => Promise<Page<number>>; calls: () => number } {
  let calls = 0;
  return {
    fetch: async (token) => {
      calls++;
      const start = token === "" ? 0 : Number(token);
      const end = Math.min(start + size, items.length);
      return { items: items.slice(start, end), next: end < items.length ? String(end) : "" };
    },
    calls: () => calls,
  };
}

describe("client paging", () => {
  it("collects every item of every page, in order, with one call per page", async () => {
    const items = Array.from({ length: 23 }, (_, i) => i);
    const p = pager(items, 5);
    expect(await allPages("ListThings", p.fetch)).toEqual(items);
    expect(p.calls()).toBe(5);
    expect(await allPages("ListThings", pager([], 5).fetch)).toEqual([]);
  });

  it("fetches lazily: a search that stops at its hit fetches no further page", async () => {
    const p = pager(Array.from({ length: 50 }, (_, i) => i), 10);
    for await (const x of pagedItems("ListThings", p.fetch)) if (x === 12) break;
    expect(p.calls()).toBe(2);
  });

  it("fails, naming the listing, when the server never ends its tokens", async () => {
    let calls = 0;
    const endless = async (): Promise<Page<number>> => ({ items: [calls++], next: "again" });
    const err = await allPages("ListLuns", endless, { maxPages: 7 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SanboxError);
    expect((err as SanboxError).code).toBe("IO_ERROR");
    expect((err as SanboxError).message).toMatch(/^ListLuns: .*7 pages/);
    expect(calls).toBe(7);
  });
});
