/**
 * `npm run bench -- nbd`: our NBD server against nbdkit, same machine, same run,
 * same client (nbdcopy over a Unix socket). Ratio = ours / nbdkit throughput.
 *
 * Cases: memory vs `nbdkit memory`, file vs `nbdkit file` on the same file;
 * sequential write then read of SIZE (default 1 GiB) in 1 MiB requests, at
 * nbdcopy's default parallelism (4 connections) and at -C1; reads at nbdcopy's
 * default 256 KiB requests; 4 KiB requests; TLS-PSK reads.
 *
 * TLS caveat: nbdcopy decrypts with GnuTLS in the client, and that caps both
 * servers; the row compares the servers behind the same client bottleneck.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { parseSize } from "../src/size.js";
import { argValue, bestOf, progress, scratch, startNbdkit, startOurs, timeCommand, type Served } from "./harness.js";
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
    const tlsRates: number[] = [];
    for (const who of ["ours", "peer"] as const) {
      const sock = join(dir, `tls-${who}.sock`);
      const served =
        who === "ours"
          ? await startOurs(sock, ["--memory", String(tlsSize), "--tls", "require", "--tls-psk", psk])
          : await startNbdkit(sock, ["--tls=require", `--tls-psk=${psk}`, "memory", String(tlsSize)]);
      const uri = `nbds+unix://bench@/?socket=${sock}&tls-psk-file=${psk}`;
      try {
        progress(`tls ${who} fill + read`);
        await timeCommand("/usr/bin/nbdcopy", [tlsSrc, uri]);
        const secs = await bestOf(2, () => timeCommand("/usr/bin/nbdcopy", [uri, "null:"]));
        tlsRates.push(tlsSize / secs / 1e6);
      } finally {
        await served.stop();
      }
    }
    const [tOurs = 0, tPeer = 0] = tlsRates;
    rows.push({ case: "TLS-PSK memory read", ours: tOurs, peer: "nbdkit --tls=require memory", peerValue: tPeer, ratio: tOurs / tPeer, unit: "MB/s" });
    return { bench: "nbd", rows, notes };
  } finally {
    cleanup();
  }
}
