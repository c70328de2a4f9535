/**
 * The request limits table (src/rpc/limits.ts) covers every string, bytes and
 * repeated field of every request of both .proto files, docs/contract.md
 * states exactly that table, and the check names the field and its limit
 * without quoting the value.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { checkRequestLimits, limitsMarkdown, NAME_BYTES, REQUEST_LIMITS, type FieldLimits } from "../../../src/rpc/limits.js";
import { packageRoot } from "../../../src/package-root.js";

interface Proto {
  service: string;
  rpcs: Map<string, string>;
  messages: Map<string, { type: string; name: string; repeated: boolean }[]>;
}

function parseProto(file: string): Proto {
  const text = readFileSync(join(packageRoot(), "proto", file), "utf8").replace(/\/\/.*$/gm, "");
  const pkg = /^package ([\w.]+);/m.exec(text)?.[1] ?? "";
  const svc = /service (\w+) \{/.exec(text)?.[1] ?? "";
  const rpcs = new Map([...text.matchAll(/rpc (\w+)\((\w+)\)/g)].map((m) => [m[1] ?? "", m[2] ?? ""]));
  const messages = new Map<string, { type: string; name: string; repeated: boolean }[]>();
  for (const m of text.matchAll(/message (\w+) \{([^}]*)\}/g)) {
    const fields = [...(m[2] ?? "").matchAll(/^\s*(repeated |optional )?([\w.]+) (\w+) = \d+;/gm)].map((f) => ({ repeated: f[1] === "repeated ", type: f[2] ?? "", name: f[3] ?? "" }));
    messages.set(m[1] ?? "", fields);
  }
  return { service: `${pkg}.${svc}`, rpcs, messages };
}

/** Fields that need a bound, as paths the table must name ("disks[].lun" for a repeated message's field). */
function boundedFields(p: Proto, message: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const f of p.messages.get(message) ?? []) {
    const nested = p.messages.has(f.type);
    if (f.type === "string" || f.type === "bytes" || f.repeated) out.push(prefix + f.name);
    if (nested) out.push(...boundedFields(p, f.type, `${prefix}${f.name}${f.repeated ? "[]" : ""}.`));
  }
  return out;
}

function tablePaths(fields: FieldLimits, prefix = ""): string[] {
  return Object.entries(fields).flatMap(([name, l]) => [prefix + name, ...tablePaths(Object.fromEntries(Object.entries(l.each ?? {}).filter(([k]) => k !== "")), `${prefix}${name}[].`)]);
}

describe("request limits", () => {
  for (const file of ["sanbox/array/v1/array.proto", "sanbox/hypervisor/v1/hypervisor.proto"]) {
    it(`cover every string, bytes and repeated request field of ${file}`, () => {
      const p = parseProto(file);
      const table = REQUEST_LIMITS[p.service];
      expect(table, p.service).toBeDefined();
      expect(Object.keys(table ?? {}).sort()).toEqual([...p.rpcs.keys()].sort());
      for (const [rpc, request] of p.rpcs) {
        expect(tablePaths(table?.[rpc] ?? {}).sort(), `${rpc}(${request})`).toEqual(boundedFields(p, request).sort());
      }
    });
  }

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
    // A field no row names still has the default bound.
    expect(() => checkRequestLimits("some.Other", "Call", { anything: "z".repeat(5000) })).toThrow("anything is 5000 bytes; the limit is 1024 bytes");
    expect(() => checkRequestLimits("sanbox.array.v1.ArrayService", "CreateLun", { name: "x".repeat(NAME_BYTES), sizeBytes: 1 })).not.toThrow();
  });
});
