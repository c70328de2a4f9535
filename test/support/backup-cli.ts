/**
 * Run `sanbox backup …` / `sanbox restore …` as a user would (package.json bin.sanbox).
 */
import { execa, type ResultPromise } from "execa";
import { sanboxBin } from "../../src/package-root.js";
import { TOOL_ENV } from "./tools.js";


export interface CliResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function sanboxBackup(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execa("node", [sanboxBin(), ...args], { env: { ...TOOL_ENV, SANBOX_LOG: "warn", ...env }, reject: false });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
}

/** Starts a command without waiting (kill tests, `backup serve`). */
const spawnOptions = (env: Record<string, string>) => ({ env: { ...TOOL_ENV, SANBOX_LOG: "warn", ...env }, reject: false, buffer: false, stdout: "pipe", stderr: "pipe" }) as const;

export type Spawned = ResultPromise<ReturnType<typeof spawnOptions>>;

export function spawnBackup(args: readonly string[], env: Record<string, string> = {}): Spawned {
  return execa("node", [sanboxBin(), ...args], spawnOptions(env));
}

export function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`expected an object: ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
