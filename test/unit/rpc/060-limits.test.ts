/**
 * The request limits table (src/rpc/limits.ts) covers every string, bytes, map
 * and repeated field of every request of the three .proto files (read with
 * protobufjs's parser, so nested messages and maps count), docs/contract.md
 * states exactly that table, and the check names the field and its limit
 * without quoting the value.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { checkRequestLimits, limitsMarkdown, NAME_BYTES, REQUEST_LIMITS, type FieldLimits } from "../../../src/rpc/limits.js";
import { packageRoot } from "../../../src/package-root.js";

/** The .proto files, read by protobufjs's own parser (nested messages, maps and oneofs included). */
function loadRoot(file: string): protobuf.Root {
  const root = new protobuf.Root();
  // google/protobuf/* are protobufjs's bundled common types; the rest is under proto/.
  root.resolvePath = (_origin, target) => (target.startsWith("google/protobuf/") ? target : join(packageRoot(), "proto", target));
  root.loadSync(file, { keepCase: true });
  root.resolveAll();
  return root;
}

/**
 * Fields that need a bound, as paths the table must name: every string,
 * bytes, map and repeated field, and every message field that holds one
 * ("disks[].lun" below a repeated message, "volume_content_source.snapshot.snapshot_id" below a single one).
 */
function boundedFields(type: protobuf.Type, prefix = "", depth = 0): string[] {
  if (depth > 8) throw new Error(`${type.fullName}: nesting deeper than 8 (a recursive message needs a rule of its own)`);
  const out: string[] = [];
  for (const f of type.fieldsArray) {
    const path = prefix + f.name;
    if (f.map) {
      out.push(path);
      continue;
    }
    const inner = f.resolvedType instanceof protobuf.Type ? boundedFields(f.resolvedType, `${path}${f.repeated ? "[]" : ""}.`, depth + 1) : [];
    if (f.type === "string" || f.type === "bytes" || f.repeated || inner.length > 0) out.push(path);
    out.push(...inner);
  }
  return out;
}

function tablePaths(fields: FieldLimits, prefix = ""): string[] {
  return Object.entries(fields)
    .filter(([name]) => name !== "")
    .flatMap(([name, l]) => [prefix + name, ...tablePaths(l.each ?? {}, `${prefix}${name}${l.items !== undefined ? "[]" : ""}.`)]);
}

const SERVICES: readonly [file: string, services: readonly string[]][] = [
  ["sanbox/array/v1/array.proto", ["sanbox.array.v1.ArrayService"]],
  ["sanbox/hypervisor/v1/hypervisor.proto", ["sanbox.hypervisor.v1.HypervisorService"]],
  ["csi/v1/csi.proto", ["csi.v1.Identity", "csi.v1.Controller", "csi.v1.GroupController", "csi.v1.SnapshotMetadata"]],
];

describe("request limits", () => {
  for (const [file, services] of SERVICES) {
    const root = loadRoot(file);
    for (const name of services) {
      it(`cover every string, bytes, map and repeated request field of ${name} (${file})`, () => {
        const service = root.lookupService(name);
        const table = REQUEST_LIMITS[name];
        expect(table, name).toBeDefined();
        expect(Object.keys(table ?? {}).sort()).toEqual(Object.keys(service.methods).sort());
        for (const [rpc, method] of Object.entries(service.methods)) {
          const request = root.lookupType(method.requestType);
          expect(tablePaths(table?.[rpc] ?? {}).sort(), `${rpc}(${method.requestType})`).toEqual(boundedFields(request).sort());
        }
      });
    }
  }

  it("the proto reader sees what the checker needs: a map, a nested single message, a repeated message", () => {
    const create = loadRoot("csi/v1/csi.proto").lookupType("csi.v1.CreateVolumeRequest");
    const paths = boundedFields(create);
    expect(paths).toContain("secrets");
    expect(paths).toContain("volume_content_source.snapshot.snapshot_id");
    expect(paths).toContain("volume_capabilities[].mount.mount_flags");
    expect(paths).toContain("accessibility_requirements.requisite[].segments");
    expect(paths).not.toContain("capacity_range");
  });

  it("docs/contract.md states the table the server checks", () => {
    const docs = readFileSync(join(packageRoot(), "docs", "contract.md"), "utf8");
    expect(docs).toContain(limitsMarkdown());
  });

  it("names the field and the limit, never the value", () => {
    const long = "y".repeat(80_000);
    const err = (() => {
      try {
        checkRequestLimits("sanbox.array.v1.ArrayService", "CreateLun", { name: long, sizeBytes: 1 });
      } catch (e: unknown) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(SanboxError);
    expect((err as SanboxError).code).toBe("INVALID_ARGUMENT");
    expect((err as SanboxError).message).toBe(`name is 80000 bytes; the limit is ${NAME_BYTES} bytes`);
    expect(() => checkRequestLimits("sanbox.array.v1.ArrayService", "CreateSnapshot", { name: "g", lunIds: Array.from({ length: 65 }, (_, i) => `l${i}`) })).toThrow("lun_ids has 65 entries; the limit is 64");
    expect(() => checkRequestLimits("sanbox.array.v1.ArrayService", "CreateSnapshot", { name: "g", lunIds: ["a", "x".repeat(129)] })).toThrow("lun_ids[1] is 129 bytes; the limit is 128 bytes");
    expect(() => checkRequestLimits("sanbox.hypervisor.v1.HypervisorService", "CreateVm", { name: "v", disks: [{ lun: "é".repeat(65) }] })).toThrow("disks[0].lun is 130 bytes");
    // CSI: a map is bounded as a whole (spec "Size Limits": 4 KiB), and its keys and values are never quoted.
    const secrets = { password: "s3cret".repeat(700) };
    expect(() => checkRequestLimits("csi.v1.Controller", "DeleteVolume", { volumeId: "v", secrets })).toThrow(/^secrets holds 4208 bytes of keys and values; the limit is 4096 bytes$/);
    expect(() => checkRequestLimits("csi.v1.Controller", "CreateVolume", { name: "v", volumeCapabilities: [{ mount: { mountFlags: ["ro", "z".repeat(129)] } }] })).toThrow("volume_capabilities[0].mount.mount_flags[1] is 129 bytes; the limit is 128 bytes");
    expect(() => checkRequestLimits("csi.v1.Controller", "CreateVolume", { name: "v", volumeContentSource: { snapshot: { snapshotId: "s".repeat(200) } } })).toThrow("volume_content_source.snapshot.snapshot_id is 200 bytes");
    expect(() => checkRequestLimits("csi.v1.GroupController", "CreateVolumeGroupSnapshot", { name: "g", sourceVolumeIds: Array.from({ length: 65 }, (_, i) => `v${i}`) })).toThrow("source_volume_ids has 65 entries; the limit is 64");
    expect(() => checkRequestLimits("csi.v1.Controller", "DeleteVolume", { volumeId: "v", secrets: { password: "s".repeat(4000) } })).not.toThrow();
    // A field no row names still has the default bound.
    expect(() => checkRequestLimits("some.Other", "Call", { anything: "z".repeat(5000) })).toThrow("anything is 5000 bytes; the limit is 1024 bytes");
    expect(() => checkRequestLimits("sanbox.array.v1.ArrayService", "CreateLun", { name: "x".repeat(NAME_BYTES), sizeBytes: 1 })).not.toThrow();
  });
});
