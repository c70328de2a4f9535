/**
 * The `sanbox` command tree. Each subcommand lives in its own file and registers
 * itself here; building the tree has no side effects, so tests can walk it.
 */
import { Command } from "commander";
import { registerNbd } from "./nbd-command.js";
import { registerArray } from "./array-command.js";
import { registerArrayClient, registerArrayInfo } from "./array-client-commands.js";
import { registerArrayServe } from "./array-serve.js";
import { registerBackup, registerRestore } from "./backup-commands.js";
import { registerConformance } from "./conformance-command.js";
import { registerDatastore, registerVerifyConsistency } from "./datastore-commands.js";
import { registerDemo } from "./demo-command.js";
import { registerFaultProxy } from "./fault-proxy-command.js";
import { registerHypervisor, registerVm } from "./hypervisor-commands.js";
import { packageInfo } from "../src/package-root.js";

export function buildProgram(): Command {
  const program = new Command("sanbox").description("SAN array simulator and time-consistent VM backup plugin").version(packageInfo().version);
  registerNbd(program);
  const array = registerArray(program);
  registerArrayServe(array);
  registerArrayInfo(array);
  registerArrayClient(program);
  registerDatastore(program);
  registerVerifyConsistency(program);
  registerHypervisor(program);
  registerVm(program);
  registerBackup(program);
  registerRestore(program);
  registerConformance(program);
  registerFaultProxy(program);
  registerDemo(program);
  return program;
}
