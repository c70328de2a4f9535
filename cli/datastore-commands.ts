/**
 * `sanbox ds …`: the datastore file system on an NBD export or a local raw file
 * (format, fsck, ls, extents, cp-in, cp-out), and `sanbox verify-consistency`:
 * the dependent-write oracle over raw images or NBD exports.
 *
 * TARGET and IMAGE are NBD URIs (nbd://host:port/export, nbd+unix:///export?socket=PATH)
 * or local file paths. `--json` prints data for scripts; human output otherwise.
 * Commands that write (format, cp-in) refuse a datastore whose writer lease a
 * hypervisor holds live (src/datastore/lease.ts); they take no lease themselves.
 */
import { open, stat } from "node:fs/promises";
import type { Command } from "commander";
import { InvalidArgumentError, quote } from "../src/errors.js";
import type { BlockDevice } from "../src/block-device.js";
import { Datastore, type DirEntry } from "../src/datastore/datastore.js";
import { DatastoreFileDevice } from "../src/datastore/file-device.js";
import { fsck } from "../src/datastore/fsck.js";
import { refuseLiveLease } from "../src/datastore/lease.js";
import { openBlockDevice } from "../src/datastore/open-device.js";
import { readVm } from "../src/datastore/vm-files.js";
import { describeViolation, verifyConsistency, type NamedImage } from "../src/oracle/verify.js";
import { formatSize, parseSize } from "../src/size.js";

interface JsonOpt {
  json?: boolean;
}

function print(json: boolean | undefined, data: unknown, human: () => string): void {
  process.stdout.write(json === true ? JSON.stringify(data, null, 2) + "\n" : human());
}

async function withDevice<T>(target: string, opts: { readOnly?: boolean; create?: boolean; size?: number }, fn: (dev: BlockDevice) => Promise<T>): Promise<T> {
  const dev = await openBlockDevice(target, opts);
  try {
    return await fn(dev);
  } finally {
    await dev.close?.();
  }
}

async function withDatastore<T>(target: string, readOnly: boolean, fn: (ds: Datastore) => Promise<T>): Promise<T> {
  return withDevice(target, { readOnly }, async (dev) => {
    // One writer per datastore: not while a hypervisor's writer lease on it is live.
    if (!readOnly) await refuseLiveLease(dev, target);
    // Manual commit: a copy commits once at the end (close), not per allocating write.
    const ds = await Datastore.open(dev, { readOnly, commit: "manual" });
    try {
      return await fn(ds);
    } finally {
      await ds.close();
    }
  });
}

function entryLine(e: DirEntry): string {
  return `${e.kind === "dir" ? "d" : "-"} ${String(e.size).padStart(14)}  ${new Date(e.mtimeMs).toISOString()}  ${e.path}${e.kind === "dir" ? "/" : ""}\n`;
}

const CHUNK = 1024 * 1024;

export function registerDatastore(program: Command): void {
  const ds = program.command("ds").description("the datastore file system on an NBD export or a local raw file");

  ds.command("format")
    .description("write an empty datastore file system over the whole device")
    .argument("<target>", "NBD URI or local file")
    .option("--block-size <size>", "file-system block size (CBT granularity)", "64K")
    .option("--label <text>", "volume label", "")
    .option("--size <size>", "local file: create or extend it to this size first")
    .option("--json", "print the result as JSON")
    .action(async (target: string, options: JsonOpt & { blockSize: string; label: string; size?: string }) => {
      const size = options.size !== undefined ? parseSize(options.size) : undefined;
      await withDevice(target, { create: size !== undefined, ...(size !== undefined ? { size } : {}) }, async (dev) => {
        await refuseLiveLease(dev, target);
        const fs = await Datastore.format(dev, { blockSize: parseSize(options.blockSize), label: options.label });
        const u = fs.usage();
        print(options.json, { uuid: fs.uuid, label: fs.label, blockSize: fs.blockSize, blocks: u.blocks, free: u.free, generation: fs.generation }, () => `formatted ${target}: ${u.blocks} blocks of ${formatSize(fs.blockSize)} (${formatSize(u.free * fs.blockSize)} free), uuid ${fs.uuid}\n`);
      });
    });

  ds.command("fsck")
    .description("check the committed file system; exits 1 when it is damaged")
    .argument("<target>", "NBD URI or local file")
    .option("--json", "print the report as JSON")
    .action(async (target: string, options: JsonOpt) => {
      await withDevice(target, { readOnly: true }, async (dev) => {
        const r = await fsck(dev);
        print(options.json, r, () =>
          [`generation ${r.generation}: ${r.files} files, ${r.directories} directories, ${r.usedBlocks}/${r.blockCount} blocks used`, ...r.notes.map((n) => `note: ${n}`), ...r.errors.map((e) => `error: ${e}`), r.ok ? "clean" : "DAMAGED"].join("\n") + "\n",
        );
        if (!r.ok) process.exitCode = 1;
      });
    });

  ds.command("ls")
    .description("list a directory (default /)")
    .argument("<target>", "NBD URI or local file")
    .argument("[path]", "directory or file", "/")
    .option("-R, --recursive", "list everything below the path")
    .option("--json", "print entries as JSON")
    .action(async (target: string, path: string, options: JsonOpt & { recursive?: boolean }) => {
      await withDatastore(target, true, async (fs) => {
        const st = await fs.stat(path);
        const entries = st.kind === "file" ? [st] : options.recursive === true ? await fs.walk(path) : await fs.list(path);
        print(options.json, entries, () => entries.map(entryLine).join(""));
      });
    });

  ds.command("extents")
    .description("where a file's bytes live on the LUN: (file offset, LUN offset, length) runs; gaps are holes")
    .argument("<target>", "NBD URI or local file")
    .argument("<path>", "file on the datastore")
    .option("--json", "print the extent map as JSON")
    .action(async (target: string, path: string, options: JsonOpt) => {
      await withDatastore(target, true, async (fs) => {
        const st = await fs.stat(path);
        const map = await fs.extentMap(path);
        print(options.json, { path: st.path, size: st.size, blockSize: fs.blockSize, extents: map }, () =>
          [`${st.path}: ${st.size} bytes, ${map.length} extents`, `${"FILE OFFSET".padStart(16)} ${"LUN OFFSET".padStart(16)} ${"LENGTH".padStart(16)}`, ...map.map((x) => `${String(x.fileOffset).padStart(16)} ${String(x.lunOffset).padStart(16)} ${String(x.length).padStart(16)}`)].join("\n") + "\n",
        );
      });
    });

  ds.command("cp-in")
    .description("copy a local file into the datastore (all-zero blocks stay holes)")
    .argument("<target>", "NBD URI or local file")
    .argument("<local>", "local source file")
    .argument("<path>", "destination on the datastore (replaced if it exists)")
    .option("--json", "print the result as JSON")
    .action(async (target: string, local: string, path: string, options: JsonOpt) => {
      await withDatastore(target, false, async (fs) => {
        const size = (await stat(local)).size;
        const fh = await open(local, "r");
        let written = 0;
        try {
          if (await fs.exists(path)) await fs.truncate(path, 0);
          else await fs.create(path);
          await fs.truncate(path, size);
          const buf = Buffer.alloc(CHUNK);
          const bs = fs.blockSize;
          for (let at = 0; at < size; at += CHUNK) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - at), at);
            for (let o2 = 0; o2 < bytesRead; o2 += bs) {
              const piece = buf.subarray(o2, Math.min(o2 + bs, bytesRead));
              if (!piece.some((b) => b !== 0)) continue;
              await fs.write(path, at + o2, Buffer.from(piece));
              written += piece.length;
            }
          }
          await fs.commit();
        } finally {
          await fh.close();
        }
        print(options.json, { path, size, written }, () => `copied ${local} to ${path}: ${size} bytes (${written} non-zero)\n`);
      });
    });

  ds.command("cp-out")
    .description("copy a datastore file to a local file (holes stay sparse)")
    .argument("<target>", "NBD URI or local file")
    .argument("<path>", "file on the datastore")
    .argument("<local>", "local destination file (replaced)")
    .option("--json", "print the result as JSON")
    .action(async (target: string, path: string, local: string, options: JsonOpt) => {
      await withDatastore(target, true, async (fs) => {
        const st = await fs.stat(path);
        if (st.kind !== "file") throw new InvalidArgumentError(`${path} is a directory`);
        const fh = await open(local, "w");
        let copied = 0;
        try {
          for (const x of await fs.extentMap(path)) {
            for (let at = 0; at < x.length; at += CHUNK) {
              const data = await fs.read(path, x.fileOffset + at, Math.min(CHUNK, x.length - at));
              await fh.write(data, 0, data.length, x.fileOffset + at);
              copied += data.length;
            }
          }
          await fh.truncate(st.size);
        } finally {
          await fh.close();
        }
        print(options.json, { path: st.path, size: st.size, copied }, () => `copied ${st.path} to ${local}: ${st.size} bytes (${copied} allocated)\n`);
      });
    });
}

export function registerVerifyConsistency(program: Command): void {
  program
    .command("verify-consistency")
    .description("check that disk images hold a prefix of a dependent-write workload's chain; exits 1 on a violation")
    .argument("[image...]", "raw image files or NBD URIs, one per disk (identity comes from the stamps); with --datastore, ds:/PATH is a file in it")
    .option("--datastore <target>", "a datastore (NBD URI, e.g. a snapshot export, or local file) holding VMDK flat files")
    .option("--vm <dir>", "with --datastore: add every virtual disk of the VM in this directory")
    .option("--horizon <n>", "replay the chain up to this sequence number (default: highest stamp + 4096)")
    .option("--json", "print the report as JSON")
    .action(async (images: string[], options: JsonOpt & { horizon?: string; datastore?: string; vm?: string }) => {
      const devs: BlockDevice[] = [];
      try {
        const named: NamedImage[] = [];
        let fs: Datastore | undefined;
        if (options.datastore !== undefined) {
          const dev = await openBlockDevice(options.datastore, { readOnly: true });
          devs.push(dev);
          fs = await Datastore.open(dev, { readOnly: true });
        } else if (options.vm !== undefined) throw new InvalidArgumentError("--vm needs --datastore");
        if (fs !== undefined && options.vm !== undefined) {
          for (const d of (await readVm(fs, options.vm)).disks) if (d.flatPath !== undefined) named.push({ name: d.flatPath, source: await DatastoreFileDevice.open(fs, d.flatPath) });
        }
        for (const im of images) {
          if (im.startsWith("ds:")) {
            if (fs === undefined) throw new InvalidArgumentError(`${im}: a ds:/PATH image needs --datastore`);
            named.push({ name: im.slice(3), source: await DatastoreFileDevice.open(fs, im.slice(3)) });
            continue;
          }
          const dev = await openBlockDevice(im, { readOnly: true });
          devs.push(dev);
          named.push({ name: im, source: dev });
        }
        if (named.length === 0) throw new InvalidArgumentError("no images given");
        let horizon: number | undefined;
        if (options.horizon !== undefined) {
          horizon = Number(options.horizon);
          if (!Number.isSafeInteger(horizon) || horizon < 0) throw new InvalidArgumentError(`--horizon must be a non-negative integer, got ${quote(options.horizon)}`);
        }
        const r = await verifyConsistency(named, horizon !== undefined ? { horizon } : {});
        print(options.json, r, () => {
          const lines = r.disks.map((d) => `disk ${d.id} (${d.kind}): ${d.image === "" ? "no image" : d.image}, ${d.stamps} stamps`);
          if (r.consistent) lines.push(`consistent: the images hold exactly the writes up to sequence ${r.prefix}${r.inFlight !== undefined ? ` (operation ${r.inFlight} partly applied, in flight)` : ""}`);
          else {
            lines.push(`INCONSISTENT: ${r.violations.length} blocks break the best-fitting prefix ${r.prefix} (highest stamp ${r.maxSeq})`);
            for (const v of r.violations) lines.push(`  ${describeViolation(v)}`);
          }
          return lines.join("\n") + "\n";
        });
        if (!r.consistent) process.exitCode = 1;
      } finally {
        for (const d of devs) await d.close?.();
      }
    });
}
