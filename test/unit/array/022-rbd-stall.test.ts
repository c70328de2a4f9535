// ceph-stall.ts without Ceph: what an OSD map says blocks writes to a pool, and
// how boundCall ends a call that does not return (the probe's answer or the deadline).
import { describe, expect, it } from "vitest";
import { IoError, NoSpaceError, TimeoutError } from "../../../src/errors.js";
import { blockerOf, boundCall, type Blocker, type HealthProbe } from "../../../simulator/array/rbd/ceph-stall.js";

const map = (over: { flags?: string; poolFlags?: string; osd?: { up: number; in: number; state: string[] } }): unknown => ({
  flags: over.flags ?? "sortbitwise,recovery_deletes",
  pools: [
    { pool_name: "other", flags_names: "hashpspool,full_quota" },
    { pool_name: "rbd", flags_names: over.poolFlags ?? "hashpspool,selfmanaged_snaps" },
  ],
  osds: [{ osd: 0, ...(over.osd ?? { up: 1, in: 1, state: ["exists", "up"] }) }],
});

describe("blockerOf", () => {
  it("reads a healthy map as nothing, and another pool's quota as not ours", () => {
    expect(blockerOf(map({}), "rbd")).toBeUndefined();
  });
  it("sees the pool's quota, the pool full, the cluster full, an OSD full", () => {
    expect(blockerOf(map({ poolFlags: "hashpspool,full_quota" }), "rbd")?.kind).toBe("full");
    expect(blockerOf(map({ poolFlags: "hashpspool,full" }), "rbd")?.message).toMatch(/pool "rbd" is full/);
    expect(blockerOf(map({ flags: "full,sortbitwise" }), "rbd")?.kind).toBe("full");
    expect(blockerOf(map({ osd: { up: 1, in: 1, state: ["exists", "full", "up"] } }), "rbd")?.message).toBe("osd.0 is full");
  });
  it("sees an OSD down (in, not up), and not one that is out", () => {
    expect(blockerOf(map({ osd: { up: 0, in: 1, state: ["exists"] } }), "rbd")).toEqual({ kind: "down", message: "osd.0 down" });
    expect(blockerOf(map({ osd: { up: 0, in: 0, state: ["exists"] } }), "rbd")).toBeUndefined();
  });
  it("reads garbage as nothing", () => {
    expect(blockerOf(null, "rbd")).toBeUndefined();
    expect(blockerOf({ pools: "x", osds: [1] }, "rbd")).toBeUndefined();
  });
});

/** A probe that answers from a script, one answer per probe (the last repeats). */
function health(answers: (Blocker | undefined)[]): HealthProbe {
  let i = 0;
  return { blocker: () => Promise.resolve(answers[Math.min(i++, answers.length - 1)]) };
}
const never = new Promise<never>(() => undefined);
const down = (m: string): IoError => new IoError(m);

describe("boundCall", () => {
  it("returns what the call returns while it is in time", async () => {
    await expect(boundCall("x", Promise.resolve(7), { health: health([undefined]), probeMs: 20, deadlineMs: 100, down })).resolves.toBe(7);
  });
  it("ends a blocked call at the first probe that sees the pool full, and calls onEnd", async () => {
    let ended = 0;
    const t0 = Date.now();
    const p = boundCall("write", never, { health: health([undefined, { kind: "full", message: "pool full" }]), probeMs: 20, deadlineMs: 5_000, down, onEnd: () => ended++ });
    await expect(p).rejects.toBeInstanceOf(NoSpaceError);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(ended).toBe(1);
  });
  it("maps an OSD down to the caller's error", async () => {
    await expect(boundCall("write", never, { health: health([{ kind: "down", message: "osd.0 down" }]), probeMs: 10, deadlineMs: 5_000, down })).rejects.toThrow(/write: osd.0 down/);
  });
  it("ends at the deadline with TIMEOUT when the map shows nothing wrong", async () => {
    const t0 = Date.now();
    await expect(boundCall("write", never, { health: health([undefined]), probeMs: 20, deadlineMs: 120, down })).rejects.toBeInstanceOf(TimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
  });
  it("passes the call's own failure through", async () => {
    await expect(boundCall("write", Promise.reject(new IoError("boom")), { health: health([undefined]), probeMs: 20, deadlineMs: 100, down })).rejects.toThrow("boom");
  });
});
