/**
 * Identity and capabilities: GetArrayInfo describes the array and what it
 * claims (every later skip depends on it), answers the same every time, and
 * GetPoolStats is consistent.
 */
import { must } from "../assert.js";
import { describeArea } from "../registry.js";

describeArea("identity", (area) => {
  area.it("identity.array-info", "GetArrayInfo names the vendor, model and serial, a semver 1.x contract version, a power-of-two block size and the capabilities", async (t) => {
    const i = t.info;
    must(i.vendor !== "", "vendor is empty");
    must(i.model !== "", "model is empty");
    must(i.serial !== "", "serial is empty");
    const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(i.contractVersion);
    must(m !== null, `contract_version "${i.contractVersion}" is not semver`);
    must(m[1] === "1", `contract_version ${i.contractVersion}: this suite checks major version 1`);
    const bs = i.blockSizeBytes;
    must(bs >= 512 && (bs & (bs - 1)) === 0, `block_size_bytes ${bs} is not a power of two >= 512`);
    must(i.capabilities !== undefined, "capabilities are missing");
    const g = i.capabilities.cbtGranularityBytes;
    must(g === 0 || (g >= bs && g % bs === 0), `cbt_granularity_bytes ${g} is not 0 or a multiple of the block size ${bs}`);
    must(i.capabilities.maxSnapshotsPerLun >= 0, "max_snapshots_per_lun is negative");
  });

  area.it("identity.idempotent", "GetArrayInfo is stable: repeated calls return the same identity and capabilities", async (t) => {
    const first = JSON.stringify(t.info);
    for (let i = 0; i < t.idempotentCount; i++) {
      const again = JSON.stringify(await t.array.getArrayInfo({}));
      must(again === first, `call ${i + 2} differs: ${again} vs ${first}`);
    }
  });

  area.it("identity.pool-stats", "GetPoolStats reports non-negative sizes and counts, and a new LUN adds to provisioned_bytes and lun_count", async (t) => {
    const before = await t.array.getPoolStats({});
    for (const [k, v] of Object.entries(before)) if (typeof v === "number") must(v >= 0, `${k} is negative (${v})`);
    const lun = await t.createLun("pool", t.blockSize * 4);
    const after = await t.array.getPoolStats({});
    must(after.lunCount >= before.lunCount + 1 || after.lunCount >= 1, `lun_count did not count the new LUN (${before.lunCount} -> ${after.lunCount})`);
    must(after.provisionedBytes >= lun.sizeBytes, `provisioned_bytes ${after.provisionedBytes} is less than the new LUN's size ${lun.sizeBytes}`);
  });
});
