/**
 * Crash test: a real child process (test/crash/crash-writer.ts, compiled
 * here with tsc into node_modules/.cache) writes, trims, flushes, FUA-writes and snapshots; we kill -9 it at a
 * random moment, over and over (55 times), and after each kill reopen the store and check:
 *  - every write acknowledged as durable (FUA, or completed before a FLUSH that
 *    returned) is there, or a write issued after it on the same sectors;
 *  - no sector holds anything but a value some write put there (no torn or stale data);
 *  - regions of earlier runs are exactly as they were after the previous check;
 *  - every snapshot (single or group member) that existed reads back with the same
 *    SHA-256 as when it was taken (snapshots the child was deleting may be gone);
 *  - no incomplete group snapshot survives (RBD-style intent recovery on open);
 *  - the deep invariant checker passes.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArrayStore } from "../../simulator/array/index.js";
import { LUN_B, LUN_NAME, LUN_SIZE, SECTOR, sectorContent } from "./crash-protocol.js";

const ROOT = join(import.meta.dirname, "../..");
// Compiled privately (not into dist/, which a concurrent `npm run build` may be rewriting);
// under node_modules so the child resolves lmdb like the store does.
const CHILD = join(ROOT, "node_modules/.cache/sanbox-crash-writer/test/crash/crash-writer.js");
const KILLS = Number(process.env.SANBOX_CRASH_KILLS ?? 55);
const REGION = 32 * 1024;

interface IssuedOp {
  seq: number;
  first: number;
  count: number;
  kind: string;
  acked: boolean;
}

let dir: string;
beforeAll(async () => {
  const r = spawnSync("npx", ["tsc", "-p", "test/crash/tsconfig.crash-writer.json"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`compiling the crash writer failed:\n${r.stdout}${r.stderr}`);
  dir = await mkdtemp(join(tmpdir(), "sanbox-crash-"));
}, 120_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runChild(run: number, seed: number): Promise<{ lines: string[]; stderr: string; code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(run), String(run * REGION), String(REGION), String(seed)], { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const rl = createInterface({ input: child.stdout });
    rl.on("line", (l) => {
      lines.push(l);
      if (l === "READY") setTimeout(() => child.kill("SIGKILL"), 5 + Math.floor(Math.random() * 200));
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ lines, stderr, code, signal }));
  });
}

describe("block store survives kill -9", () => {
  it(`keeps every acknowledged write and every snapshot across ${KILLS} kills`, async () => {
    const snaps = new Map<string, string>(); // id -> sha256 at creation
    const deleting = new Set<string>();
    const earlier = new Map<number, Buffer>(); // run -> region content after its check
    let totalAcks = 0;
    for (let run = 0; run < KILLS; run++) {
      const { lines, stderr, signal } = await runChild(run, 1 + run * 7919);
      expect(stderr).toBe("");
      expect(signal).toBe("SIGKILL");
      const ops = new Map<number, IssuedOp>();
      const bySector = new Map<number, IssuedOp[]>();
      for (const l of lines) {
        const [tag, a, b, c, d, e] = l.split(" ");
        if (tag === "ISSUE") {
          const op = { seq: Number(b), first: Number(c), count: Number(d), kind: e ?? "", acked: false };
          ops.set(op.seq, op);
          for (let s = op.first; s < op.first + op.count; s++) bySector.set(s, [...(bySector.get(s) ?? []), op]);
        } else if (tag === "ACK") {
          const op = ops.get(Number(b));
          expect(op).toBeDefined();
          if (op) op.acked = true;
          totalAcks++;
        } else if (tag === "SNAP") snaps.set(a ?? "", b ?? "");
        else if (tag === "DELETING") deleting.add(a ?? "");
      }

      const store = await ArrayStore.open(dir);
      try {
        const vol = store.openVolume({ lun: LUN_NAME });
        expect(vol.size).toBe(LUN_SIZE);
        const region = await vol.read(run * REGION, REGION);
        for (let i = 0; i < REGION / SECTOR; i++) {
          const sector = run * (REGION / SECTOR) + i;
          const got = region.subarray(i * SECTOR, (i + 1) * SECTOR);
          const history = bySector.get(sector) ?? [];
          let lastAck = -1;
          history.forEach((op, k) => {
            if (op.acked) lastAck = k;
          });
          const allowed = history.slice(Math.max(0, lastAck));
          const candidates = allowed.map((op) => (op.kind === "trim" ? Buffer.alloc(SECTOR) : sectorContent(run, op.seq, sector)));
          if (lastAck < 0) candidates.push(Buffer.alloc(SECTOR));
          const ok = candidates.some((c) => c.equals(got));
          expect(ok, `run ${run} sector ${sector}: content is neither the last acknowledged write nor a later one (history ${JSON.stringify(history.map((h) => [h.seq, h.kind, h.acked]))})`).toBe(true);
        }
        earlier.set(run, region);
        for (const [r, content] of earlier) {
          if (r === run) continue;
          expect((await vol.read(r * REGION, REGION)).equals(content), `region of run ${r} changed`).toBe(true);
        }
        const present = new Set([...store.listSnapshots({ lun: LUN_NAME }), ...store.listSnapshots({ lun: LUN_B })].map((s) => s.id));
        // A group cut interrupted by the kill leaves no incomplete group and no orphan member.
        const report0 = await store.check();
        expect(report0.stats.groups).toBe(store.listGroupSnapshots().length);
        for (const g of store.listGroupSnapshots()) expect(g.members.map((m) => m.lunId).sort()).toEqual([store.getLun(LUN_NAME).id, store.getLun(LUN_B).id].sort());
        for (const [id, sha] of snaps) {
          if (!present.has(id)) {
            expect(deleting.has(id), `snapshot ${id} vanished`).toBe(true);
            snaps.delete(id);
            continue;
          }
          const data = await store.openVolume({ snapshot: id }).read(0, LUN_SIZE);
          expect(createHash("sha256").update(data).digest("hex"), `snapshot ${id} changed`).toBe(sha);
        }
        for (const id of present) {
          if (!snaps.has(id)) {
            // Created just before the kill, never reported: adopt it; it must stay unchanged from now on.
            snaps.set(id, createHash("sha256").update(await store.openVolume({ snapshot: id }).read(0, LUN_SIZE)).digest("hex"));
          }
        }
        const report = await store.check({ deep: true });
        expect(report.errors).toEqual([]);
      } finally {
        await store.close();
      }
    }
    expect(totalAcks).toBeGreaterThan(KILLS);
  }, 600_000);
});
