/**
 * The generated ArrayService codecs under a short name. Everything outside
 * src/rpc imports message types from here (`v1.Lun`, `v1.ILun`), never from
 * ./generated directly. int64 fields are plain numbers (see scripts/codegen.mjs).
 */
import { sanbox } from "./generated/array.js";

export import v1 = sanbox.array.v1;

/** The contract version this code implements (semver; proto/README.md). */
export const CONTRACT_VERSION = "1.0.0";
export const SERVICE_NAME = "sanbox.array.v1.ArrayService";
