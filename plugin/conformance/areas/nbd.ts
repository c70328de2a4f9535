/**
 * Exports over NBD: the data path as the NBD spec (doc/proto.md) defines it.
 * The same checks run against the array's exports and, with --nbd-only URI,
 * against any NBD server (CI runs them against plain `nbdkit memory`), which
 * shows they test the protocol and not our server. A check is skipped when
 * the export does not advertise the feature (transmission flags are NBD's
 * capability claims). Checks marked array-only need the control plane
 * (a snapshot export, an unknown export name).
 *
 * Writes stay in the first MiB of the export; a --nbd-only target must be
 * writable, at least 1 MiB, and its content is overwritten.
 */
import { NbdClient } from "../../../src/nbd/client.js";
import { NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_FLAG_READ_ONLY, NBD_META_BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../src/nbd/constants.js";
import { toNbdUri, formatNbdUri } from "../../../src/nbd/uri.js";
import { NbdCommandError, NbdNegotiationError, SanboxError } from "../../../src/errors.js";
import { firstDifference, must, violation } from "../assert.js";
import type { CheckContext } from "../context.js";
import { isZero, pattern } from "../data.js";
import { rawConnect } from "../raw-nbd.js";
import { describeArea } from "../registry.js";

interface Target {
  /** A writable export. */
  uri: string;
  exportName: string;
  /** A read-only export (a snapshot), array mode only. */
  readOnlyUri?: string;
}

const SPAN = 1024 * 1024;

async function expectCommandError(call: () => Promise<unknown>, what: string, errnos?: readonly string[]): Promise<NbdCommandError> {
  try {
    await call();
  } catch (e: unknown) {
    if (e instanceof NbdCommandError) {
      if (errnos !== undefined && !errnos.includes(e.errno)) violation(`${what}: the server answered ${e.errno}, expected ${errnos.join(" or ")}`);
      return e;
    }
    violation(`${what}: expected a command error reply, got ${e instanceof SanboxError ? e.code : "an error"}: ${e instanceof Error ? e.message : String(e)} (the connection must survive a failed command)`);
  }
  violation(`${what}: the server accepted it`);
}

describeArea(
  "nbd",
  (area) => {
    const target = area.fixture(async (t: CheckContext): Promise<Target> => {
      const only = t.config.nbdOnlyUri;
      if (only !== undefined) return { uri: only, exportName: toNbdUri(only).exportName };
      const bs = t.blockSize;
      const lun = await t.createLun("nbd", Math.max(bs, Math.ceil((4 * SPAN) / bs) * bs));
      const e = await t.exportOf({ lunId: lun.lunId });
      const c = await t.nbd(e.uri);
      await c.write(0, pattern("nbd/ro", SPAN));
      await c.flush();
      const s = await t.snapshotOne(lun.lunId, "nbd-ro");
      const se = await t.exportOf({ snapshotId: s.snapshotId });
      return { uri: e.uri, exportName: e.exportName, readOnlyUri: se.uri };
    });
    const open = async (t: CheckContext, opts: { metaContexts?: string[] } = {}): Promise<NbdClient> => t.nbd((await target(t)).uri, opts);

    area.it("nbd.handshake", "fixed-newstyle handshake: the export opens with OPT_GO and structured replies, has a size, and OPT_LIST answers", async (t) => {
      const tg = await target(t);
      const c = await open(t);
      must(c.size >= SPAN, `export size ${c.size} is below the ${SPAN} bytes the checks need`);
      must(c.structuredReplies, "the server refused NBD_OPT_STRUCTURED_REPLY");
      must(!c.readOnly, "the export is read-only; the data-path checks need a writable export");
      const list = await NbdClient.list(tg.uri, { connectTimeoutMs: 10_000 });
      if (t.hasArray) must(list.some((x) => x.name === tg.exportName), `NBD_OPT_LIST does not name the export "${tg.exportName}" (got ${list.map((x) => x.name).join(", ")})`);
    });

    area.it("nbd.read-write", "READ returns what WRITE stored, at aligned and unaligned offsets, with many requests pipelined on one connection", async (t) => {
      const c = await open(t);
      const cases = [
        { offset: 0, data: pattern("rw/0", 4096) },
        { offset: 12345, data: pattern("rw/u", 777) },
        { offset: SPAN - 65536, data: pattern("rw/end", 65536) },
      ];
      for (const w of cases) await c.write(w.offset, w.data);
      for (const w of cases) {
        const at = firstDifference(await c.read(w.offset, w.data.length), w.data);
        must(at < 0, `read of [${w.offset}, +${w.data.length}) differs from the write at byte ${at}`);
      }
      const many = Array.from({ length: 32 }, (_, i) => ({ offset: 131072 + i * 8192, data: pattern(`rw/p${i}`, 4096 + i) }));
      await Promise.all(many.map((w) => c.write(w.offset, w.data)));
      const back = await Promise.all(many.map((w) => c.read(w.offset, w.data.length)));
      back.forEach((b, i) => must(b.equals(many[i]?.data ?? Buffer.alloc(0)), `pipelined read ${i} differs from its write`));
    });

    area.it("nbd.flush-fua", "FLUSH succeeds when advertised, and a write with FUA is acknowledged and readable", async (t) => {
      const c = await open(t);
      if (!c.canFlush) t.skip("the export does not advertise NBD_FLAG_SEND_FLUSH");
      await c.write(4096, pattern("flush", 4096));
      await c.flush();
      if (c.canFua) {
        const d = pattern("fua", 4096);
        await c.write(8192, d, { fua: true });
        must((await c.read(8192, 4096)).equals(d), "a FUA write is not readable");
      }
    });

    area.it("nbd.trim", "TRIM is accepted when advertised and the connection keeps working (trimmed content is unspecified by the spec)", async (t) => {
      const c = await open(t);
      if (!c.canTrim) t.skip("the export does not advertise NBD_FLAG_SEND_TRIM");
      await c.write(0, pattern("trim", 65536));
      await c.trim(0, 65536);
      await c.read(0, 65536);
    });

    area.it("nbd.zero", "WRITE_ZEROES makes the range read as zeros (aligned or not) without touching its neighbours; FAST_ZERO either zeroes or fails with ENOTSUP", async (t) => {
      const c = await open(t);
      if (!c.canZero) t.skip("the export does not advertise NBD_FLAG_SEND_WRITE_ZEROES");
      const d = pattern("zero", 65536 * 2);
      await c.write(262144, d);
      await c.zero(262144, 65536);
      must(isZero(await c.read(262144, 65536)), "an aligned WRITE_ZEROES range does not read as zeros");
      await c.zero(262144 + 65536 + 100, 1000);
      const after = await c.read(262144 + 65536, 65536);
      must(isZero(after.subarray(100, 1100)), "an unaligned WRITE_ZEROES range does not read as zeros");
      must(after.subarray(0, 100).equals(d.subarray(65536, 65636)) && after.subarray(1100).equals(d.subarray(65536 + 1100)), "WRITE_ZEROES changed bytes outside its range");
      if (c.canFastZero) {
        await c.write(393216, pattern("fz", 65536));
        try {
          await c.zero(393216, 65536, { fastZero: true });
          must(isZero(await c.read(393216, 65536)), "a FAST_ZERO range that succeeded does not read as zeros");
        } catch (e: unknown) {
          if (!(e instanceof NbdCommandError && e.errno === "ENOTSUP")) throw e;
        }
      }
    });

    area.it("nbd.block-status", "BLOCK_STATUS on base:allocation describes the range contiguously from the requested offset with only HOLE/ZERO flags, never calls written data ZERO, and REQ_ONE gives one extent", async (t) => {
      const c = await open(t, { metaContexts: [NBD_META_BASE_ALLOCATION] });
      const d = pattern("bs", 65536);
      await c.write(0, d);
      let pos = 0;
      const end = Math.min(c.size, SPAN);
      for await (const e of c.extents(NBD_META_BASE_ALLOCATION, 0, end)) {
        must(e.offset === pos, `extent at ${e.offset} leaves a gap or overlap (expected ${pos})`);
        must(e.length > 0, `empty extent at ${e.offset}`);
        must((e.flag & ~(NBD_STATE_HOLE | NBD_STATE_ZERO)) === 0, `extent at ${e.offset} has unknown flags ${e.flag}`);
        if (e.offset < 65536) must((e.flag & NBD_STATE_ZERO) === 0, `extent [${e.offset}, +${e.length}) is flagged ZERO but holds written data`);
        pos = e.offset + e.length;
      }
      must(pos === end, `extents stop at ${pos}, expected ${end}`);
      const one = await c.blockStatus(0, end, { reqOne: true });
      const list = one.get(NBD_META_BASE_ALLOCATION) ?? [];
      must(list.length === 1, `REQ_ONE returned ${list.length} extents`);
    });

    area.it("nbd.meta-context", "SET_META_CONTEXT grants base:allocation and does not grant an unknown context", async (t) => {
      const c = await open(t, { metaContexts: [NBD_META_BASE_ALLOCATION] });
      must(c.metaContexts.has(NBD_META_BASE_ALLOCATION), "base:allocation was not granted");
      try {
        const bad = await open(t, { metaContexts: ["sanbox-conformance:no-such-context"] });
        violation(`an unknown meta context was granted (contexts: ${[...bad.metaContexts.keys()].join(", ")})`);
      } catch (e: unknown) {
        if (!(e instanceof NbdNegotiationError)) throw e;
      }
    });

    area.it("nbd.errors", "a command outside the export fails with an error reply (EINVAL/ENOSPC/EOVERFLOW) and the connection keeps serving", async (t) => {
      const tg = await target(t);
      const raw = await rawConnect(tg.uri);
      t.track.defer(() => raw.close());
      const size = raw.negotiated.size;
      await expectCommandError(() => raw.submit(NBD_CMD_READ, size - 512, 4096), "READ past the end", ["EINVAL", "ENOSPC", "EOVERFLOW"]);
      await expectCommandError(() => raw.submit(NBD_CMD_WRITE, size, 512, Buffer.alloc(512)), "WRITE past the end", ["EINVAL", "ENOSPC", "EOVERFLOW"]);
      const ok = await raw.submit(NBD_CMD_READ, 0, 512);
      must(ok.data?.length === 512, "the connection does not serve a READ after a failed command");
    });

    area.it("nbd.multi-conn", "with CAN_MULTI_CONN, a write flushed on one connection is visible to a read on another", async (t) => {
      const a = await open(t);
      if (!a.canMultiConn) t.skip("the export does not advertise NBD_FLAG_CAN_MULTI_CONN");
      const b = await open(t);
      const d = pattern("mc", 8192);
      await a.write(524288, d);
      if (a.canFlush) await a.flush();
      must((await b.read(524288, 8192)).equals(d), "the other connection does not see the flushed write");
    });

    area.it(
      "nbd.read-only",
      "a snapshot export is read-only: it advertises NBD_FLAG_READ_ONLY, and WRITE and TRIM sent anyway fail with EPERM while READ works",
      async (t) => {
        const tg = await target(t);
        if (tg.readOnlyUri === undefined) return t.skip("no read-only export");
        const raw = await rawConnect(tg.readOnlyUri);
        t.track.defer(() => raw.close());
        must((raw.negotiated.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0, "the snapshot export does not advertise NBD_FLAG_READ_ONLY");
        await expectCommandError(() => raw.submit(NBD_CMD_WRITE, 0, 512, Buffer.alloc(512, 1)), "WRITE to a read-only export", ["EPERM"]);
        await expectCommandError(() => raw.submit(NBD_CMD_TRIM, 0, 65536), "TRIM on a read-only export", ["EPERM", "EINVAL"]);
        const r = await raw.submit(NBD_CMD_READ, 0, 4096);
        must(r.data?.equals(pattern("nbd/ro", 4096)) === true, "the snapshot export does not read back its content (or a refused write changed it)");
      },
      { arrayOnly: true },
    );

    area.it(
      "nbd.unknown-export",
      "opening an export name the array does not serve fails in negotiation (NBD_REP_ERR_UNKNOWN)",
      async (t) => {
        const tg = await target(t);
        const u = toNbdUri(tg.uri);
        const bad = formatNbdUri({ ...u, exportName: `lun/${t.name("no-such-export")}` });
        try {
          const c = await NbdClient.connect(bad, { connectTimeoutMs: 10_000 });
          await c.close();
          violation(`the unknown export ${bad} opened`);
        } catch (e: unknown) {
          if (!(e instanceof NbdNegotiationError)) throw e;
        }
      },
      { arrayOnly: true },
    );
  },
  { mode: "nbd" },
);
