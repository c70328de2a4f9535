/**
 * `npm run bench -- nbd`: our NBD server against nbdkit, same machine, same run,
 * same client (nbdcopy over a Unix socket). Ratio = ours / nbdkit throughput.
 *
 * Cases: memory vs `nbdkit memory`, file vs `nbdkit file` on the same file;
 * sequential write then read of SIZE (default 1 GiB) in 1 MiB requests, at
 * nbdcopy's default parallelism (4 connections) and at -C1; reads at nbdcopy's
 * default 256 KiB requests; 4 KiB requests; TLS-PSK reads (two rows, below).
 *
 * Why two TLS rows. The first reads the TLS export with nbdcopy, like every other
 * row; but nbdcopy decrypts with GnuTLS in one process, and that client caps both
 * servers, so the row compares servers behind the same client bottleneck. The
 * second takes nbdcopy out: our own client (bench/tls-reader.ts, Node's OpenSSL)
 * reads the whole export in a separate process, over TLS_CONNS connections with
 * TLS_DEPTH 1 MiB READs in flight on each (both servers advertise multi-conn).
 * That row is still bounded by a client, ours, so it states what a Node reader
 * gets from each server rather than either server's ceiling; the notes add CPU
 * seconds per GB of client and server (from /proc), which do not depend on how
 * busy the machine is. Both TLS servers run at once and are read alternately,
 * best of TLS_ROUNDS, so background load falls on both alike.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { parseSize } from "../src/size.js";
import { argValue, bestOf, progress, ROOT, scratch, startNbdkit, startOurs, timeCommand, type Served } from "./harness.js";
import type { BenchResult, BenchRow } from "./report.js";

async function makeRandomFile(path: string, size: number): Promise<void> {
  const out = createWriteStream(path);
  const block = randomBytes(4 * 1024 * 1024);
  for (let done = 0; done < size; done += block.length) {
    if (!out.write(block.subarray(0, Math.min(block.length, size - done)))) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  out.end();
  await finished(out);
}

type Dir = "write" | "read";

/** Connections and 1 MiB READs in flight per connection of the sanbox-client TLS row. */
const TLS_CONNS = 4;
const TLS_DEPTH = 8;
/** Alternating rounds over the two TLS servers; each TLS row keeps the best. */
const TLS_ROUNDS = 3;
const TLS_READER = join(ROOT, "dist/bench/tls-reader.js");

/** One run of bench/tls-reader.ts in its own process: wall and CPU seconds from connect to close. */
async function ourClientRead(uri: string, size: number): Promise<{ seconds: number; cpuSeconds: number; connections: number }> {
  const { execa } = await import("execa");
  const { stdout } = await execa(process.execPath, [TLS_READER, uri, String(size), String(TLS_CONNS), String(TLS_DEPTH)]);
  const r = JSON.parse(stdout) as { bytes?: unknown; seconds?: unknown; cpuSeconds?: unknown; connections?: unknown };
  if (r.bytes !== size || typeof r.seconds !== "number" || typeof r.cpuSeconds !== "number" || typeof r.connections !== "number") {
    throw new Error(`tls-reader printed ${stdout}`);
  }
  return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, connections: r.connections };
}

/** The process serving `sock` (its command line names the socket), found through /proc; undefined off Linux. */
function serverPid(sock: string): number | undefined {
  try {
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        if (readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0").includes(sock)) return Number(name);
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return undefined;
}

/** User + system CPU seconds of a process, all threads (Linux /proc; USER_HZ is 100). */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" "); // fields 3.. (utime is 14, stime 15)
    const user = Number(fields[11]);
    const sys = Number(fields[12]);
    return Number.isFinite(user) && Number.isFinite(sys) ? (user + sys) / 100 : undefined;
  } catch {
    return undefined;
  }
}

async function copyRate(served: Served, dir: Dir, src: string, size: number, extra: string[]): Promise<number> {
  const args = dir === "write" ? [...extra, src, served.uri] : [...extra, served.uri, "null:"];
  const secs = await bestOf(2, () => timeCommand("/usr/bin/nbdcopy", args));
  return size / secs / 1e6;
}

export async function run(argv: string[]): Promise<BenchResult> {
  const size = parseSize(argValue(argv, "--size") ?? "1G");
  const { dir, cleanup } = scratch("nbd");
  const rows: BenchRow[] = [];
  const notes: string[] = [`export size ${size} bytes; best of 2 runs; nbdcopy over a Unix socket; without -C1 nbdcopy uses 4 connections (multi-conn)`];
  try {
    const src = join(dir, "source.raw");
    progress(`writing ${size} byte random source file`);
    await makeRandomFile(src, size);

    const pairs: { name: string; ours: (s: string) => Promise<Served>; peer: (s: string) => Promise<Served>; peerName: string }[] = [
      { name: "memory", ours: (s) => startOurs(s, ["--memory", String(size)]), peer: (s) => startNbdkit(s, ["memory", String(size)]), peerName: "nbdkit memory" },
      {
        name: "file",
        ours: (s) => startOurs(s, [join(dir, "ours.img"), "--size", String(size)]),
        peer: async (s) => {
          const { execa } = await import("execa");
          await execa("truncate", ["-s", String(size), join(dir, "peer.img")]);
          return startNbdkit(s, ["file", join(dir, "peer.img")]);
        },
        peerName: "nbdkit file",
      },
    ];

    for (const p of pairs) {
      const cases: { label: string; dir: Dir; extra: string[]; bytes: number }[] = [
        { label: "write 1M requests", dir: "write", extra: ["--request-size=1048576"], bytes: size },
        { label: "read 1M requests", dir: "read", extra: ["--request-size=1048576"], bytes: size },
        { label: "write 1M requests -C1", dir: "write", extra: ["--request-size=1048576", "-C", "1"], bytes: size },
        { label: "read 1M requests -C1", dir: "read", extra: ["--request-size=1048576", "-C", "1"], bytes: size },
        { label: "read (nbdcopy default: 256K requests)", dir: "read", extra: [], bytes: size },
        // A read copies the whole export, so its rate is over `size`.
        { label: "read 4K requests", dir: "read", extra: ["--request-size=4096", "-C", "1"], bytes: size },
      ];
      const results: Record<string, [number, number]> = {};
      for (const who of ["ours", "peer"] as const) {
        const sock = join(dir, `${p.name}-${who}.sock`);
        const served = await (who === "ours" ? p.ours(sock) : p.peer(sock));
        try {
          for (const c of cases) {
            progress(`${p.name} ${who} ${c.label}`);
            const mbps = await copyRate(served, c.dir, src, c.bytes, c.extra);
            const slot = (results[c.label] ??= [0, 0]);
            slot[who === "ours" ? 0 : 1] = mbps;
          }
        } finally {
          await served.stop();
        }
      }
      for (const c of cases) {
        const [ours, peer] = results[c.label] ?? [0, 0];
        rows.push({ case: `${p.name} ${c.label}`, ours, peer: p.peerName, peerValue: peer, ratio: ours / peer, unit: "MB/s" });
      }
    }

    // TLS-PSK: reads of a smaller memory disk through STARTTLS on both servers.
    const tlsSize = Math.min(size, parseSize(argValue(argv, "--tls-size") ?? "256M"));
    const psk = join(dir, "keys.psk");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(psk, `bench:${randomBytes(32).toString("hex")}\n`);
    const tlsSrc = join(dir, "tls.raw");
    await makeRandomFile(tlsSrc, tlsSize);
    const who = ["ours", "peer"] as const;
    const served: Partial<Record<(typeof who)[number], Served>> = {};
    try {
      // Both servers up at once and measured alternately, so that load from other
      // work on the machine falls on both alike (each TLS read lasts about a second).
      served.ours = await startOurs(join(dir, "tls-ours.sock"), ["--memory", String(tlsSize), "--tls", "require", "--tls-psk", psk]);
      served.peer = await startNbdkit(join(dir, "tls-peer.sock"), ["--tls=require", `--tls-psk=${psk}`, "memory", String(tlsSize)]);
      const tls = who.map((w) => {
        const sock = join(dir, `tls-${w}.sock`);
        return { w, uri: `nbds+unix://bench@/?socket=${sock}&tls-psk-file=${psk}`, pid: serverPid(sock), nbdcopy: Infinity, client: Infinity, clientCpu: Infinity, serverCpu: Infinity };
      });
      for (const t of tls) {
        progress(`tls ${t.w} fill`);
        await timeCommand("/usr/bin/nbdcopy", [tlsSrc, t.uri]);
      }
      for (let round = 1; round <= TLS_ROUNDS; round++) {
        for (const t of tls) {
          progress(`tls ${t.w} read, round ${round}/${TLS_ROUNDS}: nbdcopy, then our client (${TLS_CONNS} x ${TLS_DEPTH} in flight)`);
          t.nbdcopy = Math.min(t.nbdcopy, await timeCommand("/usr/bin/nbdcopy", [t.uri, "null:"]));
          const cpu0 = cpuSeconds(t.pid);
          const r = await ourClientRead(t.uri, tlsSize);
          const cpu1 = cpuSeconds(t.pid);
          if (r.connections !== TLS_CONNS) throw new Error(`tls-reader used ${r.connections} connections against ${t.w}, not ${TLS_CONNS}`);
          t.client = Math.min(t.client, r.seconds);
          t.clientCpu = Math.min(t.clientCpu, r.cpuSeconds);
          if (cpu0 !== undefined && cpu1 !== undefined) t.serverCpu = Math.min(t.serverCpu, cpu1 - cpu0);
        }
      }
      const [o, k] = tls;
      if (o === undefined || k === undefined) throw new Error("TLS bench lost a server");
      const rate = (secs: number): number => tlsSize / secs / 1e6;
      const peer = "nbdkit --tls=require memory";
      rows.push({ case: "TLS-PSK memory read (nbdcopy)", ours: rate(o.nbdcopy), peer, peerValue: rate(k.nbdcopy), ratio: k.nbdcopy / o.nbdcopy, unit: "MB/s" });
      rows.push({ case: `TLS-PSK memory read (sanbox client, ${TLS_CONNS} conns)`, ours: rate(o.client), peer, peerValue: rate(k.client), ratio: k.client / o.client, unit: "MB/s" });
      notes.push(
        `TLS rows: ${tlsSize} byte memory export, TLS 1.2 PSK, both servers up at once and read alternately, best of ${TLS_ROUNDS}; "(nbdcopy)": nbdcopy defaults; "(sanbox client)": bench/tls-reader.ts in its own process, ${TLS_CONNS} connections x ${TLS_DEPTH} 1 MiB READs in flight`,
      );
      const perGB = (cpu: number): string => (Number.isFinite(cpu) ? `${(cpu / (tlsSize / 1e9)).toFixed(2)}` : "n/a");
      notes.push(
        `CPU seconds per GB read with our client (least of ${TLS_ROUNDS}): against ours: client ${perGB(o.clientCpu)}, server ${perGB(o.serverCpu)}; against nbdkit: client ${perGB(k.clientCpu)}, server ${perGB(k.serverCpu)}`,
      );
    } finally {
      await Promise.all(Object.values(served).map((x) => x.stop()));
    }
    return { bench: "nbd", rows, notes };
  } finally {
    cleanup();
  }
}
