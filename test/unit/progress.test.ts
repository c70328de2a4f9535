// Progress rendering and throttling with a fake clock: pure renderers, rate over a window, ETA,
// bar redraws at most 10×/s, plain lines every 5 s, JSON lines, none silent, first/last always shown.
import { describe, expect, it } from "vitest";
import { etaSeconds, formatDuration, parseProgressMode, ProgressReporter, RateMeter, renderBar, renderJson, renderPlain } from "../../src/progress.js";

const MiB = 1024 * 1024;

function fake(isTTY: boolean): { out: { write: (s: string) => void; isTTY: boolean; text: string }; clock: { t: number }; now: () => number } {
  const out = { text: "", isTTY, write: (s: string): void => void (out.text += s) };
  const clock = { t: 1_000_000 };
  return { out, clock, now: () => clock.t };
}

describe("progress renderers", () => {
  const snap = { phase: "rdm", item: "vm1_1", done: 512 * MiB, total: 2048 * MiB, rate: 64 * MiB, etaSeconds: 24 };
  it("bar", () => {
    const line = renderBar(snap, 20);
    expect(line).toContain("vm1_1 rdm");
    expect(line).toContain("[#####...............]  25%");
    expect(line).toMatch(/512 MiB \/ 2.00 GiB 64.0 MiB\/s ETA 00:24$/);
  });
  it("plain and json", () => {
    expect(renderPlain(snap)).toMatch(/^vm1_1 rdm: 512 MiB \/ 2.00 GiB \(25%\), 64.0 MiB\/s, ETA 00:24$/);
    expect(JSON.parse(renderJson(snap))).toEqual({ phase: "rdm", item: "vm1_1", done: 512 * MiB, total: 2048 * MiB, rate: 64 * MiB, etaSeconds: 24 });
    expect((JSON.parse(renderJson({ ...snap, rate: 0, etaSeconds: null })) as { etaSeconds: unknown }).etaSeconds).toBeNull();
  });
  it("durations, ETA, modes", () => {
    expect(formatDuration(null)).toBe("--:--");
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(etaSeconds(10, 10, 0)).toBe(0);
    expect(etaSeconds(0, 100, 0)).toBeNull();
    expect(etaSeconds(0, 100, 30)).toBe(4);
    expect(parseProgressMode("json")).toBe("json");
    expect(() => parseProgressMode("fancy")).toThrow(/--progress must be one of/);
  });
  it("rate follows the last window, not the average", () => {
    const m = new RateMeter(5000);
    m.add(0, 0);
    m.add(10_000, 10 * MiB); // slow start: 1 MiB/s
    for (let t = 11_000; t <= 20_000; t += 1000) m.add(t, 10 * MiB + ((t - 10_000) / 1000) * 10 * MiB); // then 10 MiB/s
    expect(m.rate()).toBeCloseTo(10 * MiB, -3);
  });
});

describe("ProgressReporter", () => {
  it("bar on a TTY: redrawn in place at most 10 times a second, ends with a newline", () => {
    const f = fake(true);
    const r = new ProgressReporter("auto", { out: f.out, now: f.now });
    expect(r.mode).toBe("bar");
    for (let i = 0; i <= 100; i++) {
      r.update("rdm", "vm1_1", i * MiB, 100 * MiB);
      f.clock.t += 10; // 100 updates a second
    }
    const draws = f.out.text.split("\r").length - 1;
    expect(draws).toBeGreaterThanOrEqual(10);
    expect(draws).toBeLessThanOrEqual(12); // first + ~1 per 100 ms over 1 s + the last
    expect(f.out.text.endsWith("\n")).toBe(true);
    expect(f.out.text).toContain("100%");
  });
  it("plain when stderr is not a TTY: a line every 5 s, plus first and last", () => {
    const f = fake(false);
    const r = new ProgressReporter("auto", { out: f.out, now: f.now });
    expect(r.mode).toBe("plain");
    for (let s = 0; s <= 20; s++) {
      r.update("restore", "vm1", s, 20);
      f.clock.t += 1000;
    }
    const lines = f.out.text.trim().split("\n");
    expect(lines.length).toBe(5); // t = 0, 5, 10, 15, 20 s
    expect(lines[0]).toMatch(/^vm1 restore: 0 B \/ 20 B \(0%\)/);
    expect(lines[4]).toMatch(/\(100%\)/);
  });
  it("json lines, a new phase starts a new meter", () => {
    const f = fake(true);
    const r = new ProgressReporter("json", { out: f.out, now: f.now });
    r.update("vmdk", "vm1", 0, 10);
    f.clock.t += 2000;
    r.update("vmdk", "vm1", 10, 10);
    r.update("revert", "vm1", 0, 4);
    const lines = f.out.text.trim().split("\n").map((l) => JSON.parse(l) as { phase: string; done: number; rate: number; etaSeconds: number | null });
    expect(lines.map((l) => [l.phase, l.done])).toEqual([["vmdk", 0], ["vmdk", 10], ["revert", 0]]);
    expect(lines[1]?.rate).toBe(5);
    expect(lines[2]?.etaSeconds).toBeNull();
  });
  it("none writes nothing", () => {
    const f = fake(true);
    const r = new ProgressReporter("none", { out: f.out, now: f.now });
    r.update("rdm", "x", 1, 2);
    r.update("rdm", "x", 2, 2);
    r.end();
    expect(f.out.text).toBe("");
  });
});
