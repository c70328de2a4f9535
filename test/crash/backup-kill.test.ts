/**
 * Crash test: kill -9 a real `sanbox backup run` process (dist/cli/main.js, as a
 * user runs it) at random points, KILLS times (default 20), while the VM's
 * dependent-write workload keeps writing: one 16 MiB VMDK on a 64 MiB datastore
 * LUN and one 16 MiB physical RDM, so every run has changed chunks to copy.
 *
 * Where the kills land (seeded by SANBOX_CRASH_SEED; the seed, kill number,
 * mode and delay are in every failure message; SANBOX_CRASH_TRACE=1 prints
 * each kill as it happens):
 *  - "time" (12 of 20): a delay uniform from half the last successful run's
 *    start-up (node loading, before its first phase) to 1.1 × its wall time: in
 *    discovery, the RDM and VMDK copies (a `.partial` pack open), the quiesce
 *    window, the revert, the commit, cleanup, or after the process finished;
 *  - "anchored" (7): a short random delay after a file-system step of the run,
 *    seen by inotify on the repository: `tmp/<id>` created (the copies begin;
 *    up to 1.2 × the last run's copy time), a change in `index/` (commit steps
 *    2-4; 0-4 ms), the rename into `points/` (just committed; 0-2 ms). Uniform
 *    times rarely hit the few milliseconds the commit takes; these do;
 *  - "stop" (1): the named stop `before-rename`.
 * The phase each kill landed in is read from what it left behind (new entries
 * under points/, tmp/<id> contents, index/ and pack files, snapshots, a
 * quiesced VM), tallied and printed.
 *
 * After every kill: `backup list --json` holds exactly the points committed
 * before plus at most the killed run's, all healthy; `backup check --json` is
 * clean (`.partial` packs and unreferenced blobs are garbage, never problems).
 * Then the next `backup run` must succeed and leave no tmp/ entry, no lock, no
 * snapshot export, no backup snapshot but its own S1, and the VM running.
 *
 * Oracle: a point claims to hold the VM's disks at T1, which is exactly the
 * content of its S1 group snapshot, and the array keeps that S1 (as the next
 * incremental's base) until the next successful run. So as soon as a point
 * appears (a successful run, or a kill after the rename) its S1 members are read
 * straight from the array, the RDM member over NBD and the VMDK flat file
 * through the datastore on the datastore member, and their SHA-256 and size
 * recorded. That never reads the repository and does not depend on timing. At
 * the end every disk of every point is restored with `sanbox restore` and must
 * match: byte-exact. A lost point, a point that should not exist, or a point
 * made visible before its chunks were durable and indexed fails.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Datastore } from "../../src/datastore/datastore.js";
import type { StopName } from "../../src/failpoints.js";
import { NbdClient } from "../../src/nbd/client.js";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Prng } from "../../src/oracle/prng.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import type { ArrayDaemon } from "../support/array-daemon.js";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";
import type { HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

const KILLS = Math.max(20, Number(process.env.SANBOX_CRASH_BACKUP_KILLS ?? 20));
const SEED = Number(process.env.SANBOX_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MiB = 1024 * 1024;
/** vm1: one VMDK and one RDM. */
const DISKS = 2;
const SNAP = /^sanbox-backup-[0-9a-f]{8}-vm1-/;

type Anchor = "tmp" | "index" | "points";
/** The longest delay after each anchor: tmp/<id> appears as the copies begin; index/ and the rename are ms apart. */
const ANCHOR_DELAY_MS: Record<Anchor, (copyMs: number) => number> = { tmp: (copyMs) => Math.ceil(copyMs * 1.2), index: () => 4, points: () => 2 };
type KillMode = { kind: "time" } | { kind: "anchored"; anchor: Anchor } | { kind: "stop"; name: StopName };

/** What a disk of a point must hold: its S1 content. */
interface Expected {
  size: number;
  sha256: string;
}

interface RepoFiles {
  index: Set<string>;
  packs: Set<string>;
  partial: Set<string>;
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

function listRepoFiles(repo: string): RepoFiles {
  const out: RepoFiles = { index: new Set(readdirSync(join(repo, "index"))), packs: new Set(), partial: new Set() };
  for (const sub of readdirSync(join(repo, "packs"))) {
    for (const f of readdirSync(join(repo, "packs", sub))) {
      if (f.endsWith(".pack.partial")) out.partial.add(f);
      else if (f.endsWith(".pack")) out.packs.add(f);
    }
  }
  return out;
}

function shuffledPlan(rng: Prng): KillMode[] {
  const plan: KillMode[] = [
    { kind: "stop", name: "before-rename" },
    ...(["tmp", "tmp", "index", "index", "index", "points", "points"] as const).map((anchor): KillMode => ({ kind: "anchored", anchor })),
  ];
  while (plan.length < KILLS) plan.push({ kind: "time" });
  for (let i = plan.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [plan[i], plan[j]] = [plan[j] as KillMode, plan[i] as KillMode];
  }
  return plan;
}

describe("backup run survives kill -9", () => {
  let fx: VmFixture | undefined;
  let dir: string;
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  let repo: string;

  beforeAll(async () => {
    fx = await startVmFixture("sanbox-crash-backup-", { seed: SEED % 100_000, rate: 40, warmUp: 100, datastoreBytes: 64 * MiB, rdmBytes: 16 * MiB, disk: "16M" });
    ({ dir, d, rpc, hv } = fx);
    repo = join(dir, "repo");
  }, 120_000);
  afterAll(async () => fx?.stop());

  const runArgs = (): string[] => ["backup", "run", "vm1", "--repo", repo, "--array", d.rpcEndpoint, "--hypervisor", hv.endpoint, "--progress", "none", "--json"];

  /** Backup snapshot sets on the array, by group name (members are "<group>@<lun>"). */
  const backupSnapshots = async (): Promise<Set<string>> =>
    new Set((await rpc.listSnapshots({})).snapshots.filter((s) => SNAP.test(s.name)).map((s) => s.name.replace(/@[^@]*$/, "")));

  /** SHA-256 and size of each disk of `pointId` read straight from its S1 snapshot on the array. */
  async function expectedFromS1(pointId: string): Promise<Map<string, Expected>> {
    const p = obj(JSON.parse(readFileSync(join(repo, "points", pointId, "point.json"), "utf8")));
    const base = obj(p["base"]);
    const members = (base["snapshots"] as unknown[]).map(obj);
    const out = new Map<string, Expected>();
    for (const disk of (p["disks"] as unknown[]).map(obj)) {
      const lunId = disk["kind"] === "vmdk" ? p["datastoreLunId"] : disk["lunId"];
      const snap = members.find((m) => m["lunId"] === lunId);
      if (snap === undefined) throw new Error(`point ${pointId}: no S1 member for disk ${String(disk["name"])}`);
      const exp = await rpc.createExport({ snapshotId: String(snap["snapshotId"]) });
      const client = await NbdClient.connect(exp.uri);
      try {
        let content: Buffer;
        if (disk["kind"] === "vmdk") {
          const ds = await Datastore.open(new NbdDevice(client, false), { readOnly: true });
          content = await ds.readFile(String(disk["flatPath"]));
        } else content = await client.read(0, client.size);
        out.set(String(disk["name"]), { size: content.length, sha256: sha(content) });
      } finally {
        await client.close();
        await rpc.deleteExport({ exportId: exp.exportId });
      }
    }
    return out;
  }

  /** `backup list --json` ids (every entry must be healthy). */
  async function listIds(ctx: string): Promise<string[]> {
    const r = await sanboxBackup(["backup", "list", "--repo", repo, "--json"]);
    expect(r.exitCode, `${ctx}: backup list: ${r.stderr}`).toBe(0);
    const entries = (JSON.parse(r.stdout) as unknown[]).map(obj);
    for (const e of entries) expect(e["status"], `${ctx}: ${String(e["id"])} is listed as ${String(e["status"])}: ${String(e["reason"])}`).toBe("ok");
    return entries.map((e) => String(e["id"]));
  }

  async function checkClean(ctx: string): Promise<Record<string, unknown>> {
    const r = await sanboxBackup(["backup", "check", "--repo", repo, "--json"]);
    const report = r.stdout.trim() === "" ? {} : obj(JSON.parse(r.stdout));
    expect(report["problems"], `${ctx}: backup check found problems (exit ${r.exitCode}): ${r.stderr}`).toEqual([]);
    expect(report["clean"], `${ctx}: backup check is not clean`).toBe(true);
    expect(r.exitCode, `${ctx}: backup check exit code`).toBe(0);
    return report;
  }

  /** A successful run; afterwards nothing of the killed runs is left but garbage packs. */
  async function cleanRun(ctx: string): Promise<{ point: string; wallMs: number; startupMs: number; copyMs: number }> {
    const t0 = performance.now();
    const r = await sanboxBackup(runArgs());
    const wallMs = performance.now() - t0;
    expect(r.exitCode, `${ctx}: the next backup run failed: ${r.stderr}`).toBe(0);
    const s = obj(JSON.parse(r.stdout));
    const ms = obj(s["durationsMs"]);
    const copyMs = ["rdm", "t2", "vmdk", "revert", "finish"].reduce((n, k) => n + Number(ms[k] ?? 0), 0);
    // Node start-up and connecting, before the first phase (discover) starts.
    const startupMs = Math.max(0, wallMs - Object.values(ms).reduce((n: number, v) => n + Number(v), 0));
    expect(readdirSync(join(repo, "tmp")), `${ctx}: tmp/ after the next run`).toEqual([]);
    expect(readdirSync(join(repo, "locks")), `${ctx}: locks/ after the next run`).toEqual([]);
    expect(await backupSnapshots(), `${ctx}: snapshots after the next run`).toEqual(new Set([String(obj(s["base"])["name"])]));
    expect((await rpc.listExports({})).exports.filter((e) => e.snapshotId !== ""), `${ctx}: snapshot exports after the next run`).toEqual([]);
    expect((await hv.client.getWorkloadStatus({ vm: "vm1" })).quiesced, `${ctx}: VM still quiesced after the next run`).toBe(false);
    return { point: String(s["point"]), wallMs, startupMs, copyMs };
  }

  it(`every committed point survives ${KILLS} kill -9s of backup run, and restores byte-exact`, async () => {
    const started = performance.now();
    const rng = new Prng(SEED);
    const plan = shuffledPlan(rng);
    const expected = new Map<string, Map<string, Expected>>(); // point -> disk -> content at T1
    const committed: string[] = [];
    const phases = new Map<string, number>();
    const log: string[] = [];
    let packWrites = 0;

    const first = await cleanRun(`seed ${SEED}, first run`);
    committed.push(first.point);
    expected.set(first.point, await expectedFromS1(first.point));
    let last = first;

    for (const [k, mode] of plan.entries()) {
      const delay =
        mode.kind === "time"
          ? Math.floor(last.startupMs / 2) + rng.int(Math.ceil(last.wallMs * 1.1 - last.startupMs / 2))
          : mode.kind === "anchored"
            ? rng.int(ANCHOR_DELAY_MS[mode.anchor](last.copyMs))
            : 0;
      const what = mode.kind === "time" ? `at ${delay} ms` : mode.kind === "anchored" ? `${delay} ms after a change in ${mode.anchor}/` : `at stop ${mode.name}`;
      const ctx = `seed ${SEED}, kill ${k + 1}/${KILLS} (${what})`;
      try {
        const snapsBefore = await backupSnapshots();
        expect(readdirSync(join(repo, "points")).sort(), `${ctx}: points/ before the run`).toEqual([...committed].sort());
        const filesBefore = listRepoFiles(repo);

        // Start the run and kill it.
        const t0 = performance.now();
        const child = spawnBackup(runArgs(), mode.kind === "stop" ? { SANBOX_FAILPOINTS: mode.name } : {});
        let stderr = "";
        child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        child.stdout.resume();
        let exited = false;
        const done = child.then((r) => {
          exited = true;
          return r;
        });
        const watchers: FSWatcher[] = [];
        const trigger = new Promise<void>((res) => {
          if (mode.kind === "time") setTimeout(res, delay);
          else if (mode.kind === "anchored") {
            let fired = false;
            watchers.push(
              watch(join(repo, mode.anchor), () => {
                if (fired) return;
                fired = true;
                setTimeout(res, delay);
              }),
            );
          } else child.stderr.on("data", () => stderr.includes(`failpoint ${mode.name}`) && res());
        });
        await Promise.race([trigger, done]);
        const killedAtMs = Math.round(performance.now() - t0);
        if (!exited) child.kill("SIGKILL");
        const r = await done;
        for (const w of watchers) w.close();
        const finished = r.signal !== "SIGKILL";
        if (finished) expect(r.exitCode, `${ctx}: the run failed on its own: ${stderr}`).toBe(0);
        if (mode.kind === "stop") expect(finished, `${ctx}: the run ended before the stop`).toBe(false);

        // What the kill left, to tell where it landed.
        const quiesced = (await hv.client.getWorkloadStatus({ vm: "vm1" })).quiesced;
        const snapsAfter = await backupSnapshots();
        const filesAfter = listRepoFiles(repo);
        const newSnaps = [...snapsAfter].filter((n) => !snapsBefore.has(n));
        // Unfinished points are directories; `<id>.owner` files beside them name their writer's pid.
        const tmpEntries = readdirSync(join(repo, "tmp"), { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
        const tmpHas = (name: string): boolean => tmpEntries.some((e) => readdirSync(join(repo, "tmp", e)).includes(name));
        const newPartial = [...filesAfter.partial].filter((f) => !filesBefore.partial.has(f));
        const newIndex = [...filesAfter.index].filter((f) => !filesBefore.index.has(f));
        const oldBaseAlive = [...snapsBefore].every((n) => snapsAfter.has(n));

        const appeared = readdirSync(join(repo, "points")).filter((id) => !committed.includes(id));
        const newPoint = appeared[0];

        const maps = tmpEntries.flatMap((e) => readdirSync(join(repo, "tmp", e)).filter((f) => f.endsWith(".map")));
        let phase: string;
        if (finished) phase = "finished (exited 0 before the kill)";
        else if (newPoint !== undefined)
          phase = newSnaps.some((n) => n.endsWith("-s2")) ? "committed, before cleanup" : oldBaseAlive ? "committed, in cleanup" : "committed, cleanup done, before exit";
        else if (mode.kind === "stop") phase = `stop ${mode.name}`;
        else if (tmpHas("point.json")) phase = "commit: point.json written, not renamed";
        else if (newIndex.some((f) => f.endsWith(".idx") && !f.startsWith(".tmp-"))) phase = "commit: index written, point not";
        else if (newIndex.length > 0) phase = "commit: writing the index";
        else if (maps.length >= DISKS && filesAfter.packs.size > filesBefore.packs.size) phase = "commit: pack sealed, index not";
        else if (maps.length >= DISKS) phase = "finish: every map written";
        else if (quiesced) phase = "t2: quiesce window";
        else if (newSnaps.some((n) => n.endsWith("-s2"))) phase = "vmdk copy / revert (S2 cut)";
        else if (newSnaps.length > 0) phase = "rdm copy (S1 cut)";
        else phase = "start-up / discover";
        if (newPoint === undefined && !finished && newPartial.length > 0) packWrites++;
        phases.set(phase, (phases.get(phase) ?? 0) + 1);
        if (process.env.SANBOX_CRASH_TRACE) process.stderr.write(`${Math.round(performance.now() - started)} ms: ${ctx}: killed at ${killedAtMs} ms -> ${phase}\n`);
        log.push(`${ctx}: killed at ${killedAtMs} ms -> ${phase}${newPartial.length > 0 ? " [pack open]" : ""}${newPoint !== undefined ? ` [committed ${newPoint}]` : ""}`);

        // The list: every earlier point, plus at most this run's, all healthy; check clean.
        const [ids] = await Promise.all([listIds(ctx), checkClean(ctx)]);
        for (const id of committed) expect(ids, `${ctx}: committed point ${id} lost`).toContain(id);
        expect(ids.filter((id) => !committed.includes(id)), `${ctx}: new points (at most the killed run's)`).toEqual(appeared.slice(0, 1));
        expect(appeared.length, `${ctx}: more than one new entry under points/: ${appeared.join(", ")}`).toBeLessThanOrEqual(1);

        if (newPoint !== undefined) {
          // A point the killed run made visible: check passed above; record what it must restore (its S1).
          committed.push(newPoint);
          expected.set(newPoint, await expectedFromS1(newPoint));
        }

        // The next run cleans up after the kill and succeeds.
        const next = await cleanRun(ctx);
        committed.push(next.point);
        expected.set(next.point, await expectedFromS1(next.point));
        last = next;
      } catch (e: unknown) {
        if (e instanceof Error) e.message = `[${ctx}; replay with SANBOX_CRASH_SEED=${SEED}]\n${log.join("\n")}\n${e.message}`;
        throw e;
      }
    }
    const loopMs = performance.now() - started;

    // Every committed point, every disk: restore and compare with its S1 content.
    expect(await listIds(`seed ${SEED}, at the end`)).toEqual(expect.arrayContaining(committed));
    const jobs = committed.flatMap((id) => [...(expected.get(id) ?? new Map<string, Expected>())].map(([disk, want]) => ({ id, disk, want })));
    const restoreOne = async (j: (typeof jobs)[number], n: number): Promise<void> => {
      const file = join(dir, `restore-${n}.raw`);
      const r = await sanboxBackup(["restore", j.id, "--disk", j.disk, "--to", file, "--repo", repo, "--progress", "none"]);
      expect(r.exitCode, `seed ${SEED}: restore ${j.id} ${j.disk}: ${r.stderr}`).toBe(0);
      expect(statSync(file).size, `seed ${SEED}: size of ${j.disk} restored from ${j.id}`).toBe(j.want.size);
      expect(sha(readFileSync(file)), `seed ${SEED}: ${j.disk} restored from ${j.id} differs from its S1`).toBe(j.want.sha256);
    };
    const queue = [...jobs.entries()];
    await Promise.all(
      [0, 1].map(async () => {
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) await restoreOne(next[1], next[0]);
      }),
    );

    // Coverage that the design guarantees: kills in the copies and at least one that committed.
    const tally = [...phases].map(([p, n]) => `${n} × ${p}`).join(", ");
    console.log(`backup-kill seed ${SEED}: ${KILLS} kills (${packWrites} with a pack open): ${tally}; ${committed.length} points restored (${jobs.length} disks); loop ${Math.round(loopMs / 1000)} s, total ${Math.round((performance.now() - started) / 1000)} s\n${log.join("\n")}`);
    expect([...phases.keys()].some((p) => p.startsWith("committed")), `seed ${SEED}: no kill landed after a commit: ${tally}`).toBe(true);
    expect([...phases.keys()].some((p) => p.includes("copy")), `seed ${SEED}: no kill landed in a copy: ${tally}`).toBe(true);
  }, 420_000);
});
