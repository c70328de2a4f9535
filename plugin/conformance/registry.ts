/**
 * Test registration, as csi-sanity's `DescribeSanity`: each area file calls
 *
 *   describeArea("cbt", (area) => {
 *     const setup = area.fixture(async (t) => …);          // shared, built once per run
 *     area.it("cbt.apply-delta", "restoring the base and applying …", async (t) => …, { requires: ["cbt"] });
 *   });
 *
 * at import time. A check is skipped only when the array's GetArrayInfo does
 * not claim one of its `requires` capabilities (or, in the NBD area, when the
 * export does not advertise the NBD feature). Check ids are `<area>.<name>`;
 * `--only PATTERN` matches them.
 */
import type { Capability, CheckContext } from "./context.js";

export type { Capability } from "./context.js";

/** Where an area runs: "array" needs an ArrayService endpoint; "nbd" also runs against any NBD URI (--nbd-only). */
export type AreaMode = "array" | "nbd";

export type CheckFn = (t: CheckContext) => Promise<void>;

export interface CheckSpec {
  readonly area: string;
  readonly id: string;
  /** The contract rule this check enforces, stated so that a failure names it. */
  readonly rule: string;
  readonly requires: readonly Capability[];
  /** Array-only checks inside an "nbd" area (they need the control plane). */
  readonly arrayOnly: boolean;
  readonly fn: CheckFn;
}

export interface AreaSpec {
  readonly name: string;
  readonly mode: AreaMode;
  readonly checks: readonly CheckSpec[];
}

export interface CheckOptions {
  requires?: readonly Capability[];
  arrayOnly?: boolean;
}

/** A lazily built value shared by the checks of one area in one run. */
export type Fixture<T> = (t: CheckContext) => Promise<T>;

export interface AreaBuilder {
  it(id: string, rule: string, fn: CheckFn, opts?: CheckOptions): void;
  fixture<T>(build: (t: CheckContext) => Promise<T>): Fixture<T>;
}

const REGISTRY: AreaSpec[] = [];

export function describeArea(name: string, body: (area: AreaBuilder) => void, opts: { mode?: AreaMode } = {}): AreaSpec {
  const checks: CheckSpec[] = [];
  const builder: AreaBuilder = {
    it(id, rule, fn, o = {}) {
      if (!id.startsWith(`${name}.`) && !id.includes(".")) throw new Error(`check id "${id}" must be <area>.<name>`);
      if (checks.some((c) => c.id === id)) throw new Error(`check id "${id}" registered twice`);
      checks.push({ area: name, id, rule, requires: o.requires ?? [], arrayOnly: o.arrayOnly ?? false, fn });
    },
    fixture<T>(build: (t: CheckContext) => Promise<T>): Fixture<T> {
      const key = Symbol(`${name} fixture`);
      return (t) => t.fixture(key, () => build(t));
    },
  };
  body(builder);
  const area: AreaSpec = { name, mode: opts.mode ?? "array", checks };
  REGISTRY.push(area);
  return area;
}

/** Every registered area, in registration order. */
export function registeredAreas(): readonly AreaSpec[] {
  return REGISTRY;
}
