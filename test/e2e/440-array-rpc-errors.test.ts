/**
 * ArrayService error contract (docs/contract.md "Errors"), against the real
 * daemon: each bad input gets its documented gRPC status code and reason, CBT
 * streams keep CSI's ordering and resume rules, and a daemon started with
 * --token-file refuses calls without the bearer token.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client, credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { collect } from "../../src/rpc/client.js";
import { v1 } from "../../src/rpc/proto.js";
import { REASON_KEY } from "../../src/rpc/status.js";
import { execa } from "execa";
import { sanboxBin, startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

const BS = 65536;

/** A raw unary call, to see the wire status code and reason metadata. */
function rawGetLun(endpoint: string, lunId: string): Promise<{ code: number; reason: unknown }> {
  const c = new Client(endpoint, credentials.createInsecure());
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      "/sanbox.array.v1.ArrayService/GetLun",
      (m: v1.IGetLunRequest) => Buffer.from(v1.GetLunRequest.encode(m).finish()),
      (b: Buffer) => v1.Lun.decode(b),
      { lunId },
      new Metadata(),
      {},
      (err: ServiceError | null) => {
        c.close();
        resolve({ code: err?.code ?? status.OK, reason: err?.metadata.get(REASON_KEY)[0] });
      },
    );
  });
}

describe("ArrayService errors and CBT stream rules", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let lunId = "";
  let s1 = "";
  let s2 = "";

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-440-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    lunId = (await rpc.createLun({ name: "cbt", sizeBytes: 64 * 1024 * 1024 })).lunId;
    s1 = (await rpc.createSnapshot({ name: "s1", lunIds: [lunId] })).snapshots[0]?.snapshotId ?? "";
    // 300 changed extents: one byte in every other block.
    const c = await NbdClient.connect(d.uri("lun/cbt"));
    await Promise.all(Array.from({ length: 300 }, (_, i) => c.write(i * 2 * BS + 7, Buffer.from([i & 0xff || 1]))));
    await c.flush();
    await c.close();
    s2 = (await rpc.createSnapshot({ name: "s2", lunIds: [lunId] })).snapshots[0]?.snapshotId ?? "";
  });
  afterAll(async () => {
    rpc?.close();
    await d?.stop();
    tmp?.cleanup();
  });

  it("unknown ids are NOT_FOUND (status 5, reason on the wire)", async () => {
    expect(await rawGetLun(d.rpcEndpoint, "lun-0000")).toEqual({ code: status.NOT_FOUND, reason: "NOT_FOUND" });
    await expect(rpc.getLun({ lunId: "lun-0000" })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(rpc.getSnapshot({ snapshotId: "snap-0000" })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(rpc.resizeLun({ lunId: "lun-0000", sizeBytes: BS })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(collect(rpc.getChangedBlocks({ baseSnapshotId: "snap-0000", targetSnapshotId: s2 }))).rejects.toMatchObject({ code: "NOT_FOUND" });
    // Deletes are idempotent (CSI): unknown ids succeed.
    await rpc.deleteSnapshot({ snapshotId: "snap-0000" });
    await rpc.deleteLun({ lunId: "lun-0000" });
  });

  it("negative or zero sizes and missing fields are INVALID_ARGUMENT", async () => {
    await expect(rpc.createLun({ name: "neg", sizeBytes: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(rpc.createLun({ name: "zero", sizeBytes: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(rpc.createLun({ name: "", sizeBytes: BS })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(rpc.resizeLun({ lunId, sizeBytes: -BS })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(rpc.createSnapshot({ name: "x", lunIds: [] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, maxResults: -1 }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("creates are idempotent on name; a conflicting create is ALREADY_EXISTS", async () => {
    const again = await rpc.createLun({ name: "cbt", sizeBytes: 64 * 1024 * 1024 });
    expect(again.lunId).toBe(lunId);
    await expect(rpc.createLun({ name: "cbt", sizeBytes: 32 * 1024 * 1024 })).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    const snapAgain = await rpc.createSnapshot({ name: "s1", lunIds: [lunId] });
    expect(snapAgain.snapshots[0]?.snapshotId).toBe(s1);
  });

  it("a bad page token is ABORTED; paging returns every item once", async () => {
    await expect(rpc.listSnapshots({ startingToken: "garbage" })).rejects.toMatchObject({ code: "ABORTED" });
    await expect(rpc.listLuns({ startingToken: "p1.!!" })).rejects.toMatchObject({ code: "ABORTED" });
    const ids: string[] = [];
    let token = "";
    do {
      const p = await rpc.listSnapshots({ maxEntries: 1, startingToken: token });
      expect(p.snapshots.length).toBeLessThanOrEqual(1);
      ids.push(...p.snapshots.map((s) => s.snapshotId));
      token = p.nextToken;
    } while (token !== "");
    expect(ids.sort()).toEqual([s1, s2].sort());
  });

  it("CBT streams: max_results per message, ascending and non-overlapping across messages", async () => {
    const msgs = await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, maxResults: 7 }));
    expect(msgs.length).toBe(Math.ceil(300 / 7));
    let end = -1;
    for (const m of msgs) {
      expect(m.blockMetadata.length).toBeLessThanOrEqual(7);
      expect(m.volumeCapacityBytes).toBe(64 * 1024 * 1024);
      expect(m.blockMetadataType).toBe(v1.BlockMetadataType.VARIABLE_LENGTH);
      for (const b of m.blockMetadata) {
        expect(b.byteOffset).toBeGreaterThan(end);
        expect(b.type).toBe(v1.ExtentType.DATA);
        end = b.byteOffset + b.sizeBytes - 1;
      }
    }
    expect(msgs.flatMap((m) => m.blockMetadata).map((b) => b.byteOffset)).toEqual(Array.from({ length: 300 }, (_, i) => i * 2 * BS));
  });

  it("a stream resumed at an offset returns exactly the rest (first extent may start before it)", async () => {
    const all = (await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2 }))).flatMap((m) => m.blockMetadata);
    const resumeAt = 100 * 2 * BS + 1000; // inside extent #100
    const rest = (await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: resumeAt, maxResults: 13 }))).flatMap((m) => m.blockMetadata);
    expect(rest).toEqual(all.slice(100));
    expect(rest[0]?.byteOffset).toBeLessThan(resumeAt);
    const between = (await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: 100 * 2 * BS + BS }))).flatMap((m) => m.blockMetadata);
    expect(between).toEqual(all.slice(101));
  });

  it("starting_offset outside the volume is OUT_OF_RANGE", async () => {
    await expect(collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: -1 }))).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
    await expect(collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: 64 * 1024 * 1024 + 1 }))).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
    await expect(collect(rpc.getAllocatedBlocks({ snapshotId: s2, startingOffset: -5 }))).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
  });

  it("a deleted base still answers (cbt_from_deleted_base) with the same extents; newer base than target is INVALID_ARGUMENT", async () => {
    const info = await rpc.getArrayInfo({});
    expect(info.capabilities?.cbtFromDeletedBase).toBe(true);
    const before = await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2 }));
    const s3 = (await rpc.createSnapshot({ name: "s3", lunIds: [lunId] })).snapshots[0]?.snapshotId ?? "";
    await expect(collect(rpc.getChangedBlocks({ baseSnapshotId: s3, targetSnapshotId: s2 }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await rpc.deleteSnapshot({ snapshotId: s3 });
    const tmpSnap = (await rpc.createSnapshot({ name: "tmp", lunIds: [lunId] })).snapshots[0]?.snapshotId ?? "";
    await rpc.deleteSnapshot({ snapshotId: tmpSnap });
    await expect(rpc.getSnapshot({ snapshotId: tmpSnap })).rejects.toMatchObject({ code: "NOT_FOUND" });
    const fromDeleted = await collect(rpc.getChangedBlocks({ baseSnapshotId: tmpSnap, lunId }));
    expect(fromDeleted.flatMap((m) => m.blockMetadata)).toEqual([]);
    expect(await collect(rpc.getChangedBlocks({ baseSnapshotId: s1, targetSnapshotId: s2 }))).toEqual(before);
  });

  it("CLI errors are one line `sanbox: REASON: message` with a non-zero exit", async () => {
    const r = await d.cli(["lun", "show", "nope"], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^sanbox: NOT_FOUND: /);
    const bad = await d.cli(["lun", "create", "x", "-5G"], { reject: false });
    expect(bad.exitCode).not.toBe(0);
  });

  it("with --token-file, calls need `authorization: Bearer <token>` (else UNAUTHENTICATED)", async () => {
    const tokenFile = join(tmp.dir, "token");
    writeFileSync(tokenFile, "s3cret-token\n", { mode: 0o600 });
    const d2 = await startArrayDaemon(join(tmp.dir, "array2"), ["--token-file", tokenFile]);
    try {
      const none = connectArray({ endpoint: d2.rpcEndpoint });
      await expect(none.getArrayInfo({})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      none.close();
      const wrong = connectArray({ endpoint: d2.rpcEndpoint, token: "nope" });
      await expect(wrong.getArrayInfo({})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      await expect(collect(wrong.getAllocatedBlocks({ lunId: "x" }))).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      wrong.close();
      const right = connectArray({ endpoint: d2.rpcEndpoint, token: "s3cret-token" });
      expect((await right.getArrayInfo({})).vendor).toBe("sanbox");
      right.close();
      const cli = await d2.cli(["pool", "--json"], { env: { SANBOX_TOKEN: "s3cret-token" } });
      expect(JSON.parse(cli.stdout)).toMatchObject({ lunCount: 0 });
      const denied = await d2.cli(["pool"], { reject: false });
      expect(denied.stderr).toMatch(/^sanbox: UNAUTHENTICATED: /);
    } finally {
      await d2.stop();
    }
  });

  it("gRPC over TCP: refused without TLS+token or --insecure; works with TLS, a CA and a token", async () => {
    const refused = await execa("node", [sanboxBin(), "array", "serve", "--data", join(tmp.dir, "array3"), "--rpc", "127.0.0.1:0"], { reject: false, timeout: 20_000 });
    expect(refused.exitCode).toBe(2);
    expect(String(refused.stderr)).toMatch(/^sanbox: INVALID_ARGUMENT: gRPC over TCP needs/m);

    const cert = join(tmp.dir, "cert.pem");
    const key = join(tmp.dir, "key.pem");
    await execa("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert]);
    const tokenFile = join(tmp.dir, "token4");
    writeFileSync(tokenFile, "tcp-token\n", { mode: 0o600 });
    const d4 = await startArrayDaemon(join(tmp.dir, "array4"), ["--rpc", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--token-file", tokenFile]);
    try {
      expect(d4.rpcEndpoint).toMatch(/^tls:127\.0\.0\.1:\d+$/);
      const c = connectArray({ endpoint: d4.rpcEndpoint, token: "tcp-token", ca: readFileSync(cert) });
      expect((await c.getArrayInfo({})).vendor).toBe("sanbox");
      c.close();
      const noToken = connectArray({ endpoint: d4.rpcEndpoint, ca: readFileSync(cert) });
      await expect(noToken.getArrayInfo({})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      noToken.close();
      const r = await d4.cli(["lun", "create", "over-tls", "1M", "--json"], { env: { SANBOX_TOKEN: "tcp-token", SANBOX_CA: cert } });
      expect(JSON.parse(r.stdout)).toMatchObject({ name: "over-tls" });
    } finally {
      await d4.stop();
    }
  });
});
