/**
 * The reconnect backoff: the first attempt is immediate, the waits double from
 * the initial delay, never exceed the cap, and a cycle has exactly `limit`
 * attempts; bad policies are refused.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { DEFAULT_RECONNECT_POLICY, backoffDelay, backoffSchedule, checkPolicy } from "../../../simulator/hypervisor/reconnect-policy.js";

describe("reconnect policy", () => {
  it("the default schedule: at once, then 100 ms doubling to 2 s, 8 attempts (7.1 s of waiting)", () => {
    const s = backoffSchedule(DEFAULT_RECONNECT_POLICY);
    expect(s).toEqual([0, 100, 200, 400, 800, 1600, 2000, 2000]);
    expect(s.reduce((a, b) => a + b, 0)).toBe(7100);
  });

  it("every schedule: first wait 0, non-decreasing, doubling until the cap, capped, `limit` long", () => {
    const policy = fc
      .record({ limit: fc.integer({ min: 1, max: 200 }), initialMs: fc.integer({ min: 0, max: 10_000 }), extra: fc.integer({ min: 0, max: 100_000 }) })
      .map(({ limit, initialMs, extra }) => ({ limit, initialMs, maxMs: initialMs + extra }));
    fc.assert(
      fc.property(policy, (p) => {
        const s = backoffSchedule(checkPolicy(p));
        expect(s).toHaveLength(p.limit);
        expect(s[0]).toBe(0);
        for (let i = 1; i < s.length; i++) {
          const prev = s[i - 1] ?? 0;
          const cur = s[i] ?? 0;
          expect(cur).toBeGreaterThanOrEqual(prev);
          expect(cur).toBeLessThanOrEqual(p.maxMs);
          if (i >= 2 && prev < p.maxMs) expect(cur).toBe(Math.min(p.maxMs, prev * 2));
        }
        if (p.limit >= 2) expect(s[1]).toBe(Math.min(p.initialMs, p.maxMs));
      }),
    );
  });

  it("a huge attempt number stays at the cap (no overflow to Infinity or NaN)", () => {
    expect(backoffDelay(10_000, { limit: 10_000, initialMs: 7, maxMs: 5000 })).toBe(5000);
  });

  it("refuses a limit below 1, negative delays and a cap below the initial delay", () => {
    for (const p of [
      { limit: 0, initialMs: 1, maxMs: 1 },
      { limit: 1.5, initialMs: 1, maxMs: 1 },
      { limit: 1, initialMs: -1, maxMs: 1 },
      { limit: 1, initialMs: 10, maxMs: 5 },
    ]) {
      expect(() => checkPolicy(p)).toThrow(SanboxError);
      try {
        checkPolicy(p);
      } catch (e: unknown) {
        expect((e as SanboxError).code).toBe("INVALID_ARGUMENT");
      }
    }
  });
});
