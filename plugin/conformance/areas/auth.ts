/**
 * Masking and authentication: the control plane refuses a missing or wrong
 * bearer token (UNAUTHENTICATED), and the data plane refuses a wrong TLS-PSK
 * key and hides LUNs not mapped or exported to the host.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NbdNegotiationError } from "../../../src/errors.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { formatNbdUri, toNbdUri } from "../../../src/nbd/uri.js";
import { connectArray } from "../../../src/rpc/array-client.js";
import { expectCode, must, violation } from "../assert.js";
import type { CheckContext } from "../context.js";
import { describeArea } from "../registry.js";

interface HostSetup {
  hostId: string;
  identity: string;
  keyFile: string;
  wrongKeyFile: string;
  mappedUri: string;
  mappedName: string;
  hiddenName: string;
}

async function tempDir(t: CheckContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "sanbox-conformance-"));
  t.track.defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describeArea("auth", (area) => {
  const hostSetup = area.fixture(async (t): Promise<HostSetup> => {
    const key = randomBytes(32);
    const name = t.name("host");
    const host = await t.array.createHost({ name, pskKey: key });
    t.track.host(host.hostId);
    const mapped = await t.createLun("masked", t.blockSize * 2);
    const hidden = await t.createLun("hidden", t.blockSize * 2);
    await t.array.mapLun({ lunId: mapped.lunId, hostId: host.hostId });
    const exp = await t.exportOf({ lunId: mapped.lunId }, host.hostId);
    const dir = await tempDir(t);
    const keyFile = join(dir, "host.psk");
    const wrongKeyFile = join(dir, "wrong.psk");
    await writeFile(keyFile, `${host.pskIdentity}:${key.toString("hex")}\n`, { mode: 0o600 });
    await writeFile(wrongKeyFile, `${host.pskIdentity}:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const hiddenExp = await t.exportOf({ lunId: hidden.lunId });
    return { hostId: host.hostId, identity: host.pskIdentity, keyFile, wrongKeyFile, mappedUri: exp.uri, mappedName: exp.exportName, hiddenName: hiddenExp.exportName };
  });

  area.it("auth.host-lifecycle", "CreateHost is idempotent on name and key, refuses a short key (INVALID_ARGUMENT) and another host's identity (ALREADY_EXISTS); a host with mappings cannot be deleted (FAILED_PRECONDITION); DeleteHost is idempotent", async (t) => {
    const key = randomBytes(32);
    const name = t.name("hl");
    const h = await t.array.createHost({ name, pskKey: key });
    t.track.host(h.hostId);
    must(h.pskIdentity === name, `psk_identity defaults to "${h.pskIdentity}", expected the name ${name}`);
    for (let i = 0; i < t.idempotentCount; i++) {
      const again = await t.array.createHost({ name, pskKey: key });
      must(again.hostId === h.hostId, `repeat ${i + 1} returned host ${again.hostId}, expected ${h.hostId}`);
    }
    await expectCode(() => t.array.createHost({ name, pskKey: randomBytes(32) }), "ALREADY_EXISTS", "CreateHost(same name, other key)");
    await expectCode(() => t.array.createHost({ name: t.name("hl2"), pskIdentity: name, pskKey: randomBytes(32) }), "ALREADY_EXISTS", "CreateHost(another host's identity)");
    await expectCode(() => t.array.createHost({ name: t.name("hl3"), pskKey: randomBytes(4) }), "INVALID_ARGUMENT", "CreateHost(4-byte key)");
    const lun = await t.createLun("hl", t.blockSize);
    await t.array.mapLun({ lunId: lun.lunId, hostId: h.hostId });
    await t.array.mapLun({ lunId: lun.lunId, hostId: h.hostId });
    must((await t.array.getLun({ lunId: lun.lunId })).mappedHostIds.filter((x) => x === h.hostId).length === 1, "MapLun twice does not give exactly one mapping");
    await expectCode(() => t.array.deleteHost({ hostId: h.hostId }), "FAILED_PRECONDITION", "DeleteHost(host with a mapping)");
    await t.array.unmapLun({ lunId: lun.lunId, hostId: h.hostId });
    await t.array.deleteHost({ hostId: h.hostId });
    for (let i = 0; i < t.idempotentCount; i++) await t.array.deleteHost({ hostId: h.hostId });
    await expectCode(() => t.array.mapLun({ lunId: lun.lunId, hostId: t.name("no-such-host") }), "NOT_FOUND", "MapLun(unknown host)");
  });

  area.it("auth.token", "every call without the bearer token, or with a wrong one, is UNAUTHENTICATED", async (t) => {
    const token = t.config.token;
    if (token === undefined) return t.skip("no --token given (the suite cannot tell whether the endpoint requires one)");
    const endpoint = t.config.endpoint ?? "";
    for (const bad of [undefined, `${token}-wrong`]) {
      const c = connectArray({ endpoint, ...(bad !== undefined ? { token: bad } : {}), ...(t.config.ca !== undefined ? { ca: t.config.ca } : {}) });
      try {
        const what = bad === undefined ? "without a token" : "with a wrong token";
        await expectCode(() => c.getArrayInfo({}), "UNAUTHENTICATED", `GetArrayInfo ${what}`);
        await expectCode(() => c.listLuns({}), "UNAUTHENTICATED", `ListLuns ${what}`);
        await expectCode(() => c.createLun({ name: t.name("unauth"), sizeBytes: t.blockSize }), "UNAUTHENTICATED", `CreateLun ${what}`);
      } finally {
        c.close();
      }
    }
  });

  area.it(
    "auth.wrong-psk",
    "an NBD session with the host's TLS-PSK identity and the right key opens the host's export; the same identity with a wrong key is refused",
    async (t) => {
      const h = await hostSetup(t);
      const ok = await t.nbd(h.mappedUri, { tlsPskFile: h.keyFile });
      must(ok.size > 0, "the host's export opened with size 0");
      try {
        const c = await NbdClient.connect(h.mappedUri, { tlsPskFile: h.wrongKeyFile, connectTimeoutMs: 10_000 });
        await c.close();
      } catch {
        return;
      }
      violation(`the export ${h.mappedName} opened with a wrong PSK key for identity ${h.identity}`);
    },
    { requires: ["lunMasking"] },
  );

  area.it(
    "auth.masking",
    "LUN masking: a host's TLS session lists and opens only LUNs mapped or exported to it; another LUN is an unknown export",
    async (t) => {
      const h = await hostSetup(t);
      const list = await NbdClient.list(h.mappedUri, { tlsPskFile: h.keyFile, connectTimeoutMs: 10_000 });
      const names = list.map((x) => x.name);
      must(names.includes(h.mappedName), `NBD_OPT_LIST for the host does not name its mapped LUN ${h.mappedName} (got ${names.join(", ") || "nothing"})`);
      must(!names.includes(h.hiddenName), `NBD_OPT_LIST for the host names ${h.hiddenName}, which is neither mapped nor exported to it`);
      const u = toNbdUri(h.mappedUri);
      const hiddenUri = formatNbdUri({ ...u, exportName: h.hiddenName });
      try {
        const c = await NbdClient.connect(hiddenUri, { tlsPskFile: h.keyFile, connectTimeoutMs: 10_000 });
        await c.close();
      } catch (e: unknown) {
        if (e instanceof NbdNegotiationError) return;
        throw e;
      }
      violation(`the host opened ${h.hiddenName}, which is neither mapped nor exported to it`);
    },
    { requires: ["lunMasking"] },
  );
});
