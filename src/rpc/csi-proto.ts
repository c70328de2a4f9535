/**
 * The generated CSI codecs (proto/csi/v1/csi.proto, a subset of CSI v1.13.0)
 * under a short name: `csi.Volume`, `csi.IVolume`. Everything outside src/rpc
 * imports CSI messages from here, never from ./generated directly. int64 fields
 * are plain numbers (scripts/codegen.mjs); the module has its own protobuf root
 * (`sanbox_csi`), so it never shares a namespace with the sanbox contracts.
 */
import { csi as generated, google } from "./generated/csi.js";

export import csi = generated.v1;
export import protobuf = google.protobuf;

/** The CSI spec version whose message definitions proto/csi/v1/csi.proto follows. */
export const CSI_SPEC_VERSION = "1.13.0";
