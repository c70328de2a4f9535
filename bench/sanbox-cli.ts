/**
 * The bench's `sanbox` user: the array and hypervisor daemons as child
 * processes, and every other step as a `sanbox … --json` command against
 * them (`node dist/cli/main.js`, package.json's bin), so a bench measures
 * what a user gets, process start included.
 *
 * The hypervisor can be stopped and started again on the same state
 * directory: it remounts its datastores on start (simulator/hypervisor), and
 * the bench writes VMDK data through the datastore file system while it is
 * down (two writers of one datastore's metadata would corrupt it).
 */
import { join } from "node:path";
import { execa } from "execa";
import { startDaemon, type ChildDaemon } from "../cli/child-daemons.js";
import { CLI } from "./harness.js";

export type Json = Record<string, unknown>;

export function asObject(x: unknown, what: string): Json {
  if (typeof x !== "object" || x === null || Array.isArray(x)) throw new Error(`${what}: not an object`);
  return x as Json;
}

export function str(o: Json, key: string): string {
  const v = o[key];
  if (typeof v !== "string") throw new Error(`"${key}" is not a string`);
  return v;
}

export function num(o: Json, key: string): number {
  const v = o[key];
  if (typeof v !== "number") throw new Error(`"${key}" is not a number`);
  return v;
}

export function list(o: Json, key: string): Json[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new Error(`"${key}" is not a list`);
  return v.map((x, i) => asObject(x, `${key}[${i}]`));
}

export class SanboxUser {
  private hv: { proc: ChildDaemon; endpoint: string } | undefined;

  private constructor(
    private readonly dir: string,
    private readonly arrayProc: ChildDaemon,
    readonly array: string,
  ) {}

  static async start(dir: string): Promise<SanboxUser> {
    const a = await startDaemon(CLI, ["array", "serve", "--data", join(dir, "array")]);
    const user = new SanboxUser(dir, a.proc, a.endpoint);
    try {
      await user.startHypervisor();
    } catch (e: unknown) {
      await user.stop();
      throw e;
    }
    return user;
  }

  get hypervisor(): string {
    if (this.hv === undefined) throw new Error("the hypervisor is not running");
    return this.hv.endpoint;
  }

  async startHypervisor(): Promise<void> {
    if (this.hv !== undefined) return;
    this.hv = await startDaemon(CLI, ["hypervisor", "serve", "--array", this.array, "--data", join(this.dir, "hv")]);
  }

  async stopHypervisor(): Promise<void> {
    const hv = this.hv;
    this.hv = undefined;
    if (hv === undefined) return;
    hv.proc.kill("SIGTERM");
    await hv.proc;
  }

  async stop(): Promise<void> {
    await this.stopHypervisor();
    this.arrayProc.kill("SIGTERM");
    await this.arrayProc;
  }

  /** `sanbox ARGS --json`, parsed. */
  async json(args: string[]): Promise<Json> {
    const r = await execa("node", [CLI, ...args, "--json"], { env: { ...process.env, SANBOX_LOG: "warn" }, reject: false });
    if (r.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")}: exit ${r.exitCode}\n${r.stderr}`);
    return asObject(JSON.parse(r.stdout), `sanbox ${args[0] ?? ""}`);
  }

  /** An array command (`lun`, `export`, `diff`, …) against this array. */
  arrayJson(args: string[]): Promise<Json> {
    return this.json([...args, "--endpoint", this.array]);
  }

  /** A hypervisor command (`vm …`) against this hypervisor. */
  hypervisorJson(args: string[]): Promise<Json> {
    return this.json([...args, "--endpoint", this.hypervisor]);
  }

  async createLun(name: string, size: number): Promise<Json> {
    return this.arrayJson(["lun", "create", name, String(size)]);
  }

  /**
   * The NBD URI of a LUN's or snapshot's export. Exports are idempotent per
   * (target, host) and shared with the hypervisor's own, so LUN exports are
   * never deleted here; snapshot exports are, by `unexport`.
   */
  async exportUri(target: string): Promise<{ uri: string; exportId: string }> {
    const e = await this.arrayJson(["export", target]);
    return { uri: str(e, "uri"), exportId: str(e, "exportId") };
  }

  async unexport(exportId: string): Promise<void> {
    await this.arrayJson(["unexport", exportId]);
  }

  /** `sanbox backup run VM` argument list (the caller runs it measured). */
  backupArgs(vm: string, repo: string): string[] {
    return [CLI, "backup", "run", vm, "--repo", repo, "--array", this.array, "--hypervisor", this.hypervisor, "--json"];
  }

  restoreArgs(point: string, disk: string, repo: string, lun: string): string[] {
    return [CLI, "restore", point, "--disk", disk, "--to", `lun:${lun}`, "--repo", repo, "--array", this.array, "--json"];
  }
}
