/** The datastore file system, its block devices, and the VM files it holds. See docs/datastore-format.md. */
export { type BlockDevice, type WriteOptions, checkDeviceRange } from "../block-device.js";
export { NbdDevice } from "../nbd/nbd-device.js";
export { MemoryBackend } from "../nbd/backends/memory-backend.js";
export { FileBackend } from "../nbd/backends/file-backend.js";
export { openBlockDevice, isNbdUri } from "./open-device.js";
export { Datastore, type DirEntry, type FormatOptions, type OpenOptions, splitPath, joinPath } from "./datastore.js";
export { type FileExtent, type InodeKind, DEFAULT_BLOCK_SIZE } from "./format.js";
export { fsck, type FsckReport } from "./fsck.js";
export { DatastoreFileDevice } from "./file-device.js";
export { fileRangesOnLun, holes, mappedRanges } from "./extent-map.js";
export { Vmx, type VmxDisk, parseVmx, serializeVmx, buildVmx } from "./vmx.js";
export { type VmdkDescriptor, type VmdkExtent, type VmdkKind, parseVmdkDescriptor, serializeVmdkDescriptor, buildFlatDescriptor, buildRdmDescriptor, vmdkCapacity, vmdkKind } from "./vmdk-descriptor.js";
export { type RdmMapping, parseRdmMapping, serializeRdmMapping, isNaa6 } from "./rdm-mapping.js";
export { type VmSpec, type VmDiskSpec, type VmInfo, type VmDiskInfo, createVm, readVm, listVms, growVmdk } from "./vm-files.js";
