/**
 * Client side of CSI-style paging (ListLuns, ListSnapshots, …): call with
 * `starting_token` = the previous page's `next_token` until it comes back
 * empty. The loop is written here once.
 *
 * A server that never ends its tokens (a bug, or a token that leads back to an
 * earlier page) would keep a client looping forever, so the number of pages is
 * bounded; past the bound the listing fails with an IoError that names it,
 * rather than hang or return a silently truncated list.
 */
import { IoError } from "../errors.js";
import { collect } from "./client.js";

export interface Page<T> {
  items: readonly T[];
  /** The next page's starting token; "" after the last page. */
  next: string;
}

export type PageFetch<T> = (startingToken: string) => Promise<Page<T>>;

export interface PagingOptions {
  /** Pages fetched at the most (default 10,000: 5 million items at the simulator's page size). */
  maxPages?: number;
}

const DEFAULT_MAX_PAGES = 10_000;

/**
 * Every item, page after page, fetched as the caller consumes them, so a search
 * can stop at its hit. `what` names the listing in the error ("ListLuns").
 */
export async function* pagedItems<T>(what: string, fetch: PageFetch<T>, options: PagingOptions = {}): AsyncIterable<T> {
  const maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  let token = "";
  for (let pages = 0; pages < maxPages; pages++) {
    const page = await fetch(token);
    yield* page.items;
    if (page.next === "") return;
    token = page.next;
  }
  throw new IoError(`${what}: still no last page after ${maxPages} pages (the server keeps returning a next_token)`);
}

/** Every item of every page, as one list. */
export async function allPages<T>(what: string, fetch: PageFetch<T>, options: PagingOptions = {}): Promise<T[]> {
  return collect(pagedItems(what, fetch, options));
}
