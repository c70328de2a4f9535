// VMX, VMDK descriptor and RDM mapping parsers: golden files, round trips, line-numbered errors.
import { describe, expect, it } from "vitest";
import { buildFlatDescriptor, buildRdmDescriptor, parseVmdkDescriptor, serializeVmdkDescriptor, vmdkCapacity, vmdkKind } from "../../../src/datastore/vmdk-descriptor.js";
import { buildVmx, parseVmx, serializeVmx } from "../../../src/datastore/vmx.js";
import { parseRdmMapping, serializeRdmMapping } from "../../../src/datastore/rdm-mapping.js";

const FLAT = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
isNativeSnapshot="no"
createType="vmfs"

# Extent description
RW 16777216 VMFS "vm1-flat.vmdk"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "1044"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.longContentID = "3b7d6a7c3f0e8c0d4bf5b0b4fffffffe"
ddb.thinProvisioned = "1"
ddb.uuid = "60 00 C2 9b 52 5f 87 4a-3d 2e 4f 8f 1c 60 1e 2a"
ddb.virtualHWVersion = "19"
`;

const RDMP = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=5a4e4201
parentCID=ffffffff
createType="vmfsPassthroughRawDeviceMap"

# Extent description
RW 524288 VMFSRAW "vm1_rdm0-rdmp.vmdk"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.virtualHWVersion = "19"
`;

const VMX = `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "vm1"
guestOS = "other-64"
memSize = "1024"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "vm1.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
# the RDM
scsi0:1.present = "TRUE"
scsi0:1.fileName = "vm1_rdm0.vmdk"
scsi0:1.mode = "independent-persistent"
scsi0:2.present = "FALSE"
scsi0:2.fileName = "old.vmdk"
annotation = "a |22quoted|22 note |7C pipe"
`;

const NAA = "naa.65a4e42" + "0123456789abcdef012345678";

describe("VMDK descriptors", () => {
  it("parses a vmfs (flat) descriptor", () => {
    const d = parseVmdkDescriptor(FLAT);
    expect(d).toMatchObject({ version: 1, cid: 0xfffffffe, parentCid: 0xffffffff, createType: "vmfs" });
    expect(d.extents).toEqual([{ access: "RW", sectors: 16777216, type: "VMFS", fileName: "vm1-flat.vmdk" }]);
    expect(vmdkKind(d)).toBe("flat");
    expect(vmdkCapacity(d)).toBe(8 * 2 ** 30);
    expect(d.header).toEqual([["encoding", "UTF-8"], ["isNativeSnapshot", "no"]]);
    expect(d.ddb.find(([k]) => k === "adapterType")?.[1]).toBe("lsilogic");
  });

  it("parses a physical RDM descriptor", () => {
    const d = parseVmdkDescriptor(RDMP);
    expect(vmdkKind(d)).toBe("rdm-physical");
    expect(d.extents[0]).toEqual({ access: "RW", sectors: 524288, type: "VMFSRAW", fileName: "vm1_rdm0-rdmp.vmdk" });
  });

  it("round trips (serialize ∘ parse is a fixed point; builders parse back)", () => {
    for (const text of [FLAT, RDMP]) {
      const once = serializeVmdkDescriptor(parseVmdkDescriptor(text));
      expect(serializeVmdkDescriptor(parseVmdkDescriptor(once))).toBe(once);
      expect(parseVmdkDescriptor(once)).toEqual(parseVmdkDescriptor(text));
    }
    const flat = buildFlatDescriptor({ name: "vm1", capacityBytes: 8 * 2 ** 30, cid: 0x1234 });
    const text = serializeVmdkDescriptor(flat);
    expect(text).toContain('RW 16777216 VMFS "vm1-flat.vmdk"');
    expect(text).toContain("CID=00001234");
    expect(parseVmdkDescriptor(text)).toEqual(flat);
    const rdm = buildRdmDescriptor({ name: "vm1_rdm0", capacityBytes: 256 * 2 ** 20 });
    expect(serializeVmdkDescriptor(rdm)).toContain('RW 524288 VMFSRAW "vm1_rdm0-rdmp.vmdk"');
    expect(parseVmdkDescriptor(serializeVmdkDescriptor(rdm))).toEqual(rdm);
  });

  it("rejects malformed descriptors with line numbers", () => {
    const bad = (text: string): string => {
      try {
        parseVmdkDescriptor(text, "t.vmdk");
      } catch (e: unknown) {
        expect(e).toMatchObject({ code: "CORRUPT" });
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(bad(FLAT.replace("# Disk DescriptorFile", "hello"))).toMatch(/^t\.vmdk line 1: expected "# Disk DescriptorFile"/);
    expect(bad(FLAT.replace("CID=fffffffe", "CID=xyz"))).toMatch(/line 4: CID must be 8 hex digits/);
    expect(bad(FLAT.replace('RW 16777216 VMFS "vm1-flat.vmdk"', "RW 16777216 VMFS vm1-flat.vmdk"))).toMatch(/line 10: malformed extent line/);
    expect(bad(FLAT.replace('RW 16777216 VMFS "vm1-flat.vmdk"', 'RW 16777216 BOGUS "vm1-flat.vmdk"'))).toMatch(/line 10: unknown extent type "BOGUS"/);
    expect(bad(FLAT.replace('VMFS "vm1-flat.vmdk"', 'VMFSRAW "vm1-flat.vmdk"'))).toMatch(/line 7: createType "vmfs" needs VMFS extents/);
    expect(bad(FLAT.replace('createType="vmfs"', 'createType="twoGbMaxExtentSparse"'))).toMatch(/line 7: unsupported createType/);
    expect(bad(FLAT.replace('ddb.adapterType = "lsilogic"', "ddb.adapterType = lsi logic"))).toMatch(/line 15: value of ddb.adapterType must be quoted/);
    expect(bad(FLAT.replace('ddb.virtualHWVersion = "19"', 'ddb.virtualHWVersion = "19\nversion=2'))).toMatch(/line 22: unterminated quoted value/);
    expect(bad(FLAT.replace("parentCID=ffffffff\n", ""))).toMatch(/missing parentCID/);
    expect(bad(FLAT.replace("version=1", "version=3"))).toMatch(/line 2: unsupported version 3/);
    expect(bad(FLAT + 'CID=1\n')).toMatch(/line 23: header key CID after the extent section/);
    expect(bad(FLAT.replace(/RW .*\n/, ""))).toMatch(/no extent lines/);
  });
});

describe("VMX files", () => {
  it("parses keys, escapes and disks", () => {
    const vmx = parseVmx(VMX);
    expect(vmx.get("displayname")).toBe("vm1");
    expect(vmx.get("annotation")).toBe('a "quoted" note | pipe');
    expect(vmx.disks().map((d) => [d.slot, d.fileName, d.mode])).toEqual([
      ["scsi0:0", "vm1.vmdk", undefined],
      ["scsi0:1", "vm1_rdm0.vmdk", "independent-persistent"],
    ]);
  });

  it("round trips, and builds a VM with its disks on scsi0", () => {
    const vmx = parseVmx(VMX);
    const text = serializeVmx(vmx);
    expect(serializeVmx(parseVmx(text))).toBe(text);
    expect(text).toContain('annotation = "a |22quoted|22 note |7C pipe"');
    const built = buildVmx({ name: "vm2", disks: Array.from({ length: 9 }, (_, i) => ({ fileName: `d${i}.vmdk` })) });
    const disks = parseVmx(serializeVmx(built)).disks();
    expect(disks.map((d) => d.unit)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9]);
    expect(disks[7]?.fileName).toBe("d7.vmdk");
  });

  it("rejects malformed lines with line numbers", () => {
    expect(() => parseVmx('a = "1"\nb = 2\n', "vm.vmx")).toThrow(/^vm\.vmx line 2: value of b must be double-quoted/);
    expect(() => parseVmx('a = "1"\n\nno equals sign\n', "vm.vmx")).toThrow(/line 3: expected key = "value"/);
    expect(() => parseVmx('a = "1"\nA = "2"\n')).toThrow(/line 2: duplicate key A/);
    expect(() => parseVmx('a = "x|2"\n')).toThrow(/line 1: bad escape/);
    expect(() => parseVmx('a b = "x"\n')).toThrow(/line 1: invalid key "a b"/);
    expect(() => parseVmx('a = "x" trailing\n')).toThrow(/line 1: unexpected text/);
  });
});

describe("RDM mapping files", () => {
  it("round trips and names the LUN by NAA id", () => {
    const m = { mode: "physical" as const, naa: NAA, capacity: 256 * 2 ** 20, lun: "db-logs" };
    const text = serializeRdmMapping(m);
    expect(text).toBe(`# sanbox RDM mapping file\nversion=1\nmode="physical"\nnaa="${NAA}"\ncapacity=268435456\nlun="db-logs"\n`);
    expect(parseRdmMapping(text)).toEqual(m);
    expect(parseRdmMapping(text.replace(NAA, NAA.toUpperCase().replace("NAA.", "naa.")))).toEqual(m);
  });

  it("rejects malformed mapping files with line numbers", () => {
    const good = serializeRdmMapping({ mode: "physical", naa: NAA, capacity: 4096 });
    expect(() => parseRdmMapping(good.replace(NAA, "naa.6123"), "m")).toThrow(/^m line 4: naa must be "naa.6" followed by 31 hex digits/);
    expect(() => parseRdmMapping(good.replace("capacity=4096", "capacity=-1"))).toThrow(/line 5: invalid capacity/);
    expect(() => parseRdmMapping(good.replace('mode="physical"', 'mode="weird"'))).toThrow(/line 3: mode must be/);
    expect(() => parseRdmMapping(good + "extra=1\n")).toThrow(/line 6: unknown key extra/);
    expect(() => parseRdmMapping("version=1\n")).toThrow(/line 1: expected "# sanbox RDM mapping file"/);
    expect(() => parseRdmMapping(good.replace(/naa=.*\n/, ""))).toThrow(/missing naa/);
  });
});
