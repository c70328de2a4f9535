/**
 * How a fault stands in front of the real array, the way an nbdkit filter
 * stands in front of `next`: `overlay(next, overrides)` is the object `next`
 * with some of its methods replaced, and a fault's override calls `next` for
 * the real answer and alters it.
 *
 * Invariants: every member not in `overrides` is `next`'s own, called with
 * `this` bound to `next`, so the real object's state (fields, promise chains)
 * is never copied or shadowed; a filter reaches the real array only through
 * the contract (ArrayServiceImpl method names, the NbdBackend / ExportProvider
 * interfaces), never through its internals. Filters exist only when a fault is
 * active (faults/index.ts): the real objects carry no trace of them.
 */
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";

/** A fault on the control plane: the real service in, the broken one out. */
export type ServiceFilter = (next: ArrayServiceImpl) => ArrayServiceImpl;

/** The decoded request of one ArrayService method. */
export type RequestOf<K extends keyof ArrayServiceImpl> = Parameters<ArrayServiceImpl[K]>[0];

/** What the server knows of a call (passed through to `next` unchanged). */
export type CallContextOf = Parameters<ArrayServiceImpl["getLun"]>[1];

export function overlay<T extends object>(next: T, overrides: Partial<T>): T {
  return new Proxy(next, {
    get(target, property) {
      if (Object.hasOwn(overrides, property)) return Reflect.get(overrides, property) as unknown;
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]): unknown => Reflect.apply(value, target, args);
    },
  });
}
