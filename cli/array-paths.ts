/**
 * Where the local array lives: the data directory (`--data`, else $SANBOX_HOME,
 * else ~/.local/share/sanbox/array) and the Unix sockets inside it. The block
 * store, the control catalogue (control.json) and the sockets share the directory,
 * so `sanbox array fsck --data DIR` and `sanbox array serve --data DIR` agree.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { rpcSocketPath } from "../simulator/array/daemon.js";

export function defaultDataDir(): string {
  const env = process.env.SANBOX_HOME;
  return env !== undefined && env !== "" ? env : join(homedir(), ".local", "share", "sanbox", "array");
}

/** The control endpoint a client uses by default: --endpoint, $SANBOX_ENDPOINT, else the local daemon. */
export function defaultEndpoint(): string {
  const env = process.env.SANBOX_ENDPOINT;
  return env !== undefined && env !== "" ? env : `unix:${rpcSocketPath(defaultDataDir())}`;
}
