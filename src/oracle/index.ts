/** The dependent-write workload (stamps, generator, journal) and the consistency oracle. */
export { STAMP_SIZE, type DiskKind, type WorkloadDisk, type WorkloadSpec, type Stamp, type BlockContent, encodeStamp, classifyBlock, encodeDescriptor, decodeDescriptor } from "./stamp.js";
export { Workload, Journal, expectedAt, type WorkloadOp, type ExpectedDisk } from "./workload.js";
export { applyOp, type DiskTarget } from "./apply-op.js";
export { verifyConsistency, verifyScans, scanImage, describeViolation, type ImageSource, type NamedImage, type ConsistencyReport, type Violation, type Found, type VerifyOptions } from "./verify.js";
export { Prng } from "./prng.js";
