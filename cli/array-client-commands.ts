/**
 * The array's client commands: `sanbox lun|host|snap|diff|revert|clone|export|pool`
 * and `sanbox array info`. Each is one ArrayService call (or a few to resolve
 * names) through the typed client in src/rpc. The endpoint is --endpoint, else
 * $SANBOX_ENDPOINT, else the local daemon's socket; $SANBOX_TOKEN is sent as a
 * bearer token. Human tables by default, `--json` for machine output; errors are
 * one line `sanbox: REASON: message` with a non-zero exit (cli/run.ts).
 *
 * Arguments name LUNs, snapshots and hosts by name or by id (resolved by the
 * *ByRef helpers of src/rpc/array-client.ts, the same way the hypervisor does).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { Command } from "commander";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, SanboxError, quote } from "../src/errors.js";
import { parsePskFile } from "../src/nbd/tls-psk.js";
import { connectArray, groupSnapshotByRef, hostByRef, lunByRef, snapshotByRef, type ArrayClient } from "../src/rpc/array-client.js";
import { resumableExtents } from "../src/rpc/block-stream.js";
import { collect } from "../src/rpc/client.js";
import { allPages } from "../src/rpc/paging.js";
import { v1 } from "../src/rpc/proto.js";
import type { Decoded } from "../src/rpc/service.js";
import { formatSize, wholeBlocks } from "../src/size.js";
import { defaultEndpoint } from "./array-paths.js";
import { sizeArg, type SizeArg } from "./size-arg.js";
import { formatTable } from "./table.js";

interface Common {
  endpoint?: string;
  json?: boolean;
}

function withCommon(cmd: Command): Command {
  return cmd.option("--endpoint <endpoint>", "array control endpoint: unix:PATH or HOST:PORT (default: $SANBOX_ENDPOINT or the local daemon); $SANBOX_TOKEN is the bearer token, $SANBOX_CA the CA file for tls:").option("--json", "machine-readable output");
}

function client(opts: Common): ArrayClient {
  const token = process.env.SANBOX_TOKEN;
  const caFile = process.env.SANBOX_CA;
  return connectArray({
    endpoint: opts.endpoint ?? defaultEndpoint(),
    ...(token !== undefined && token !== "" ? { token } : {}),
    ...(caFile !== undefined && caFile !== "" ? { ca: readFileSync(caFile) } : {}),
  });
}

/** Runs `fn` with a client and closes it afterwards. */
async function using<T>(opts: Common, fn: (c: ArrayClient) => Promise<T>): Promise<T> {
  const c = client(opts);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function print(opts: Common, data: unknown, human: () => string): void {
  process.stdout.write(opts.json === true ? `${JSON.stringify(data, null, 2)}\n` : human());
}

function isCode(e: unknown, code: string): boolean {
  return e instanceof SanboxError && e.code === code;
}

/** `lookup`, with its NOT_FOUND replaced by one that names what the user typed. */
async function orNotFound<T>(lookup: Promise<T>, message: string): Promise<T> {
  try {
    return await lookup;
  } catch (e: unknown) {
    if (isCode(e, "NOT_FOUND")) throw new NotFoundError(message);
    throw e;
  }
}

type Lun = Decoded<v1.ILun>;
type Snapshot = Decoded<v1.ISnapshot>;

interface ToObject<T> {
  toObject(m: T, opts: { defaults: boolean; arrays: boolean; enums: StringConstructor }): Record<string, unknown>;
}
/** JSON output: every field, enums by name. The value is the codec's own decoded message. */
function plain<T>(codec: ToObject<T>, m: object): Record<string, unknown> {
  return codec.toObject(m as T, { defaults: true, arrays: true, enums: String });
}

// ------------------------------------------------------------------ views

function lunJson(l: Lun): Record<string, unknown> {
  return plain(v1.Lun, l);
}
function lunRows(luns: Lun[]): string {
  return formatTable(
    ["NAME", "ID", "SIZE", "ALLOCATED", "NAA", "HOSTS"],
    luns.map((l) => [l.name, l.lunId, formatSize(l.sizeBytes), formatSize(l.allocatedBytes), l.naa, String(l.mappedHostIds.length)]),
  );
}
function snapJson(s: Snapshot): Record<string, unknown> {
  return plain(v1.Snapshot, s);
}
function snapRows(snaps: Snapshot[]): string {
  return formatTable(
    ["ID", "NAME", "LUN", "SIZE", "GROUP", "CREATED"],
    snaps.map((s) => [s.snapshotId, s.name, s.lunName, formatSize(s.sizeBytes), s.groupSnapshotId || "-", s.creationTime]),
  );
}
function showPairs(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${v}`).join("\n") + "\n";
}

// ------------------------------------------------------------------ registration

export function registerArrayInfo(array: Command): void {
  withCommon(array.command("info").description("show the array's identity, contract version and capabilities")).action(async (opts: Common) =>
    using(opts, async (c) => {
      const i = await c.getArrayInfo({});
      const obj = plain(v1.ArrayInfo, i);
      print(opts, obj, () => {
        const caps = i.capabilities ? plain(v1.Capabilities, i.capabilities) : {};
        return showPairs([
          ["vendor", i.vendor],
          ["model", i.model],
          ["serial", i.serial],
          ["contract", i.contractVersion],
          ["block size", formatSize(i.blockSizeBytes)],
          // Capability keys are proto field names (camelCase); shown as words, like the rows above.
          ...Object.entries(caps).map(([k, v]): [string, string] => [k.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`), /Bytes$/.test(k) && typeof v === "number" ? formatSize(v) : String(v)]),
        ]);
      });
    }),
  );
}

export function registerArrayClient(program: Command): void {
  registerLun(program);
  registerHost(program);
  registerSnap(program);

  withCommon(program.command("diff").description("changed blocks between two snapshots (CBT); TARGET 'live' means the LUN now (needs --lun)"))
    .argument("<base>", "base snapshot (name or id; a deleted snapshot's id still works)")
    .argument("<target>", "target snapshot (name or id), or 'live'")
    .option("--lun <lun>", "the LUN (required for 'live'; checked otherwise)")
    .action(async (baseRef: string, targetRef: string, opts: Common & { lun?: string }) =>
      using(opts, async (c) => {
        let baseId = baseRef;
        try {
          baseId = (await snapshotByRef(c, baseRef)).snapshotId;
        } catch (e: unknown) {
          if (!isCode(e, "NOT_FOUND")) throw e; // maybe a deleted base, known only by id
        }
        const lunId = opts.lun !== undefined ? (await lunByRef(c, opts.lun)).lunId : "";
        let targetId = "";
        if (targetRef !== "live") targetId = (await snapshotByRef(c, targetRef)).snapshotId;
        else if (lunId === "") throw new InvalidArgumentError("diff against 'live' needs --lun");
        let capacity = 0;
        const extents = await collect(
          resumableExtents((startingOffset, co) => c.getChangedBlocks({ baseSnapshotId: baseId, targetSnapshotId: targetId, lunId, startingOffset }, co), {
            onCapacity: (n) => (capacity = n),
          }),
        );
        // The JSON keeps the CSI field name `type` for the DATA/ZERO flag.
        const typed = extents.map((e) => ({ offset: e.offset, length: e.length, type: e.flag }));
        print(opts, { baseSnapshotId: baseId, targetSnapshotId: targetId, volumeCapacityBytes: capacity, extents: typed }, () =>
          formatTable(["OFFSET", "LENGTH", "TYPE"], typed.map((e) => [String(e.offset), String(e.length), e.type])) +
          `${extents.length} extent(s), ${formatSize(extents.reduce((n, e) => n + e.length, 0))} changed of ${formatSize(capacity)}\n`,
        );
      }),
    );

  withCommon(program.command("revert").description("revert a LUN to one of its snapshots"))
    .argument("<lun>")
    .argument("<snapshot>")
    .action(async (lunRef: string, snapRef: string, opts: Common) =>
      using(opts, async (c) => {
        const lun = await lunByRef(c, lunRef);
        const s = await snapshotByRef(c, snapRef);
        const r = await c.revertLun({ lunId: lun.lunId, snapshotId: s.snapshotId });
        print(opts, lunJson(r), () => `reverted LUN ${r.name} to snapshot ${s.name} (${s.snapshotId})\n`);
      }),
    );

  withCommon(program.command("clone").description("create a new LUN from a snapshot (no copy)"))
    .argument("<snapshot>")
    .argument("<new-lun>")
    .action(async (snapRef: string, name: string, opts: Common) =>
      using(opts, async (c) => {
        const s = await snapshotByRef(c, snapRef);
        const l = await c.cloneSnapshot({ snapshotId: s.snapshotId, name });
        print(opts, lunJson(l), () => lunRows([l]));
      }),
    );

  withCommon(program.command("export").description("export a LUN (read-write) or a snapshot (read-only) over NBD; prints the NBD URI"))
    .argument("<lun-or-snapshot>")
    .option("--host <host>", "the host allowed to open it (default: the local host)")
    .action(async (ref: string, opts: Common & { host?: string }) =>
      using(opts, async (c) => {
        const hostId = opts.host !== undefined ? (await hostByRef(c, opts.host)).hostId : "";
        let target: { lunId: string } | { snapshotId: string };
        try {
          target = { snapshotId: (await snapshotByRef(c, ref)).snapshotId };
        } catch (e: unknown) {
          if (!isCode(e, "NOT_FOUND")) throw e;
          target = { lunId: (await lunByRef(c, ref)).lunId };
        }
        const x = await c.createExport({ ...target, hostId });
        print(opts, plain(v1.Export, x), () => `${x.uri}\n`);
      }),
    );

  withCommon(program.command("exports").description("list NBD exports"))
    .option("--host <host>", "only this host's exports")
    .action(async (opts: Common & { host?: string }) =>
      using(opts, async (c) => {
        const hostId = opts.host !== undefined ? (await hostByRef(c, opts.host)).hostId : "";
        const all = await allPages("ListExports", (startingToken) => c.listExports({ startingToken, hostId }).then((r) => ({ items: r.exports, next: r.nextToken })));
        print(
          opts,
          all.map((x) => plain(v1.Export, x)),
          () => formatTable(["ID", "EXPORT", "HOST", "URI"], all.map((x) => [x.exportId, x.exportName, x.hostId || "(local)", x.uri])),
        );
      }),
    );

  withCommon(program.command("unexport").description("delete an export, by export id or by LUN/snapshot (+ --host)"))
    .argument("<export-or-target>")
    .option("--host <host>", "the host the export is for (default: the local host)")
    .action(async (ref: string, opts: Common & { host?: string }) =>
      using(opts, async (c) => {
        const all = await allPages("ListExports", (startingToken) => c.listExports({ startingToken }).then((r) => ({ items: r.exports, next: r.nextToken })));
        let hit = all.find((x) => x.exportId === ref);
        if (!hit) {
          const hostId = opts.host !== undefined ? (await hostByRef(c, opts.host)).hostId : "";
          let snapId = "";
          let lunId = "";
          try {
            snapId = (await snapshotByRef(c, ref)).snapshotId;
          } catch (e: unknown) {
            if (!isCode(e, "NOT_FOUND")) throw e;
            lunId = (await lunByRef(c, ref)).lunId;
          }
          hit = all.find((x) => x.hostId === hostId && (snapId !== "" ? x.snapshotId === snapId : x.lunId === lunId && x.snapshotId === ""));
        }
        if (!hit) throw new NotFoundError(`no export matches ${quote(ref)}`);
        await c.deleteExport({ exportId: hit.exportId });
        print(opts, { deleted: hit.exportId }, () => `deleted export ${hit.exportId} (${hit.exportName})\n`);
      }),
    );

  withCommon(program.command("pool").description("pool capacity and usage")).action(async (opts: Common) =>
    using(opts, async (c) => {
      const p = await c.getPoolStats({});
      print(opts, plain(v1.PoolStats, p), () =>
        showPairs([
          ["capacity", p.capacityBytes === 0 ? "unbounded" : formatSize(p.capacityBytes)],
          ["used", formatSize(p.usedBytes)],
          ["provisioned", formatSize(p.provisionedBytes)],
          ["LUNs", String(p.lunCount)],
          ["snapshots", String(p.snapshotCount)],
          ["hosts", String(p.hostCount)],
          ["exports", String(p.exportCount)],
        ]),
      );
    }),
  );
}

function registerLun(program: Command): void {
  const lun = program.command("lun").description("create, inspect, resize, delete and map LUNs");
  withCommon(lun.command("create").description("create a thin LUN (idempotent on name)"))
    .argument("<name>")
    .argument("<size>", "size, e.g. 10G (a bare number is bytes; a multiple of the array's block size)", sizeArg)
    .action(async (name: string, size: SizeArg, opts: Common) =>
      using(opts, async (c) => {
        // The array rounds a size up to its block size (contract); a person gets told instead.
        const l = await c.createLun({ name, sizeBytes: wholeBlocks(size.text, size.bytes, (await c.getArrayInfo({})).blockSizeBytes, "the array") });
        print(opts, lunJson(l), () => lunRows([l]));
      }),
    );
  withCommon(lun.command("list").description("list LUNs")).action(async (opts: Common) =>
    using(opts, async (c) => {
      const all = await allPages("ListLuns", (startingToken) => c.listLuns({ startingToken }).then((r) => ({ items: r.luns, next: r.nextToken })));
      print(opts, all.map(lunJson), () => lunRows(all));
    }),
  );
  withCommon(lun.command("show").description("show one LUN"))
    .argument("<lun>")
    .action(async (ref: string, opts: Common) =>
      using(opts, async (c) => {
        const l = await lunByRef(c, ref);
        print(opts, lunJson(l), () =>
          showPairs([
            ["name", l.name],
            ["id", l.lunId],
            ["naa", l.naa],
            ["size", `${formatSize(l.sizeBytes)} (${l.sizeBytes} bytes)`],
            ["allocated", formatSize(l.allocatedBytes)],
            ["block size", formatSize(l.blockSizeBytes)],
            ["created", l.creationTime],
            ["cloned from", l.sourceSnapshotId || "-"],
            ["mapped to", l.mappedHostIds.join(", ") || "-"],
          ]),
        );
      }),
    );
  withCommon(lun.command("resize").description("grow or shrink a LUN"))
    .argument("<lun>")
    .argument("<size>", "new size (a bare number is bytes; a multiple of the LUN's block size)", sizeArg)
    .action(async (ref: string, size: SizeArg, opts: Common) =>
      using(opts, async (c) => {
        const lun = await lunByRef(c, ref);
        const l = await c.resizeLun({ lunId: lun.lunId, sizeBytes: wholeBlocks(size.text, size.bytes, lun.blockSizeBytes, `LUN ${lun.name}`) });
        print(opts, lunJson(l), () => lunRows([l]));
      }),
    );
  withCommon(lun.command("delete").description("delete a LUN (its snapshots, mappings and exports must be gone)"))
    .argument("<lun>")
    .action(async (ref: string, opts: Common) =>
      using(opts, async (c) => {
        // The RPC is idempotent (a missing LUN is success); a person naming a LUN that is not there made a mistake.
        const id = (await orNotFound(lunByRef(c, ref), `no LUN named "${ref}"`)).lunId;
        await c.deleteLun({ lunId: id });
        print(opts, { deleted: id }, () => `deleted LUN ${ref}\n`);
      }),
    );
  for (const [verb, what] of [
    ["map", "map a LUN to a host (the host may then open lun/<name> over NBD)"],
    ["unmap", "unmap a LUN from a host"],
  ] as const) {
    withCommon(lun.command(verb).description(what))
      .argument("<lun>")
      .argument("<host>")
      .action(async (lunRef: string, hostRef: string, opts: Common) =>
        using(opts, async (c) => {
          const req = { lunId: (await lunByRef(c, lunRef)).lunId, hostId: (await hostByRef(c, hostRef)).hostId };
          if (verb === "map") await c.mapLun(req);
          else await c.unmapLun(req);
          print(opts, req, () => `${verb === "map" ? "mapped" : "unmapped"} LUN ${lunRef} ${verb === "map" ? "to" : "from"} host ${hostRef}\n`);
        }),
      );
  }
}

async function loadOrCreatePsk(file: string | undefined, identity: string): Promise<{ identity: string; key: Buffer; created: boolean }> {
  if (file !== undefined) {
    let text: string | undefined;
    try {
      text = await readFile(file, "utf8");
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (text !== undefined) {
      const table = parsePskFile(text, file);
      const key = table.get(identity) ?? [...table.values()][0];
      const id = table.has(identity) ? identity : ([...table.keys()][0] ?? identity);
      if (key === undefined) throw new InvalidArgumentError(`${file}: no key`);
      return { identity: id, key, created: false };
    }
  }
  const key = randomBytes(32);
  if (file !== undefined) await writeFile(file, `${identity}:${key.toString("hex")}\n`, { mode: 0o600 });
  return { identity, key, created: true };
}

function registerHost(program: Command): void {
  const host = program.command("host").description("hosts (initiators) and their TLS-PSK identities");
  withCommon(host.command("create").description("register a host; with --psk-file, use that psk file's key or create the file with a new key"))
    .argument("<name>")
    .option("--identity <id>", "TLS-PSK identity (default: the host name)")
    .option("--psk-file <file>", "psk file (identity:hexkey, nbdkit format): read if it exists, else created (mode 0600)")
    .action(async (name: string, opts: Common & { identity?: string; pskFile?: string }) =>
      using(opts, async (c) => {
        const psk = await loadOrCreatePsk(opts.pskFile, opts.identity ?? name);
        const h = await c.createHost({ name, pskIdentity: psk.identity, pskKey: psk.key });
        const out: Record<string, unknown> = plain(v1.Host, h);
        // A generated key with nowhere to go is printed once, as a psk file line.
        if (psk.created && opts.pskFile === undefined) out.psk = `${psk.identity}:${psk.key.toString("hex")}`;
        print(opts, out, () => `host ${h.name} (${h.hostId}) identity ${h.pskIdentity}${typeof out.psk === "string" ? `\npsk: ${out.psk}` : ""}\n`);
      }),
    );
  withCommon(host.command("list").description("list hosts")).action(async (opts: Common) =>
    using(opts, async (c) => {
      const all = await allPages("ListHosts", (startingToken) => c.listHosts({ startingToken }).then((r) => ({ items: r.hosts, next: r.nextToken })));
      print(
        opts,
        all.map((h) => plain(v1.Host, h)),
        () => formatTable(["NAME", "ID", "IDENTITY", "LUNS"], all.map((h) => [h.name, h.hostId, h.pskIdentity, String(h.mappedLunIds.length)])),
      );
    }),
  );
  withCommon(host.command("delete").description("delete a host (unmap its LUNs and delete its exports first)"))
    .argument("<host>")
    .action(async (ref: string, opts: Common) =>
      using(opts, async (c) => {
        const h = await hostByRef(c, ref);
        await c.deleteHost({ hostId: h.hostId });
        print(opts, { deleted: h.hostId }, () => `deleted host ${h.name}\n`);
      }),
    );
}

function registerSnap(program: Command): void {
  const snap = program.command("snap").description("snapshots and group snapshots");
  withCommon(snap.command("create").description("snapshot one LUN, or several as one atomic group snapshot"))
    .argument("<luns...>")
    .option("--name <name>", "snapshot (or group) name; default: generated from the time")
    .action(async (refs: string[], opts: Common & { name?: string }) =>
      using(opts, async (c) => {
        const ids: string[] = [];
        for (const r of refs) ids.push((await lunByRef(c, r)).lunId);
        const name = opts.name ?? `snap-${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "")}`;
        const r = await c.createSnapshot({ name, lunIds: ids });
        print(opts, { groupSnapshotId: r.groupSnapshotId, snapshots: r.snapshots.map(snapJson) }, () =>
          (r.groupSnapshotId !== "" ? `group snapshot ${r.groupSnapshotId}\n` : "") + snapRows(r.snapshots),
        );
      }),
    );
  withCommon(snap.command("list").description("list snapshots"))
    .option("--lun <lun>", "only this LUN's snapshots")
    .option("--group <id>", "only members of this group snapshot")
    .action(async (opts: Common & { lun?: string; group?: string }) =>
      using(opts, async (c) => {
        const lunId = opts.lun !== undefined ? (await lunByRef(c, opts.lun)).lunId : "";
        const all = await allPages("ListSnapshots", (startingToken) => c.listSnapshots({ startingToken, lunId, groupSnapshotId: opts.group ?? "" }).then((r) => ({ items: r.snapshots, next: r.nextToken })));
        print(opts, all.map(snapJson), () => snapRows(all));
      }),
    );
  withCommon(snap.command("show").description("show one snapshot"))
    .argument("<snapshot>")
    .action(async (ref: string, opts: Common) =>
      using(opts, async (c) => {
        const s = await snapshotByRef(c, ref);
        print(opts, snapJson(s), () =>
          showPairs([
            ["id", s.snapshotId],
            ["name", s.name],
            ["LUN", `${s.lunName} (${s.lunId})`],
            ["size", `${formatSize(s.sizeBytes)} (${s.sizeBytes} bytes)`],
            ["allocated", formatSize(s.allocatedBytes)],
            ["group", s.groupSnapshotId || "-"],
            ["created", s.creationTime],
          ]),
        );
      }),
    );
  withCommon(snap.command("delete").description("delete a snapshot, or a whole group snapshot by its group id"))
    .argument("<snapshot-or-group>")
    .action(async (ref: string, opts: Common) =>
      using(opts, async (c) => {
        const snapshot = await snapshotByRef(c, ref).catch((e: unknown) => {
          if (isCode(e, "NOT_FOUND")) return undefined;
          throw e;
        });
        if (snapshot === undefined || snapshot.groupSnapshotId !== "") {
          // A group's id or name deletes the group; a member names its group.
          const group = await orNotFound(groupSnapshotByRef(c, snapshot?.groupSnapshotId ?? ref), `no snapshot or group snapshot named "${ref}"`);
          if (snapshot !== undefined && group.groupSnapshotId !== ref && group.name !== ref) {
            throw new FailedPreconditionError(`snapshot ${quote(ref)} is a member of group snapshot ${group.groupSnapshotId} (${quote(group.name)}): delete the group (sanbox snap delete ${group.groupSnapshotId})`);
          }
          await c.deleteGroupSnapshot({ groupSnapshotId: group.groupSnapshotId });
          print(opts, { deleted: group.groupSnapshotId }, () => `deleted group snapshot ${group.groupSnapshotId} ("${group.name}", ${group.snapshots.length} snapshots)\n`);
          return;
        }
        const id = snapshot.snapshotId;
        await c.deleteSnapshot({ snapshotId: id });
        print(opts, { deleted: id }, () => `deleted snapshot ${id}\n`);
      }),
    );
}
