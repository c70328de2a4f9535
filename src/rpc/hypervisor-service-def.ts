/**
 * The HypervisorService (proto/sanbox/hypervisor/v1/hypervisor.proto) as a
 * method table, all unary, plus the hypervisor's server and client wrappers.
 * Everything else is the generic layer (service.ts, server.ts, client.ts): the
 * bearer-token check, endpoint syntax and the error <-> status mapping are the
 * array's, so a client branches on the same `SanboxError.code` whichever daemon
 * it called.
 *
 * The hypervisor serves no TLS of its own: TCP only with `insecure`.
 */
import { InvalidArgumentError } from "../errors.js";
import { createLogger } from "../log.js";
import { connect, type ServiceClient } from "./client.js";
import type { RpcEndpoint } from "./endpoint.js";
import { HYPERVISOR_SERVICE_NAME, hv1 } from "./hypervisor-proto.js";
import { implement, serve, type RpcServerOptions, type RunningRpcServer } from "./server.js";
import { defineService, unary, type Api, type Impl } from "./service.js";

export const HYPERVISOR_METHODS = {
  listVms: unary("ListVms", hv1.ListVmsRequest, hv1.ListVmsResponse),
  getVm: unary("GetVm", hv1.GetVmRequest, hv1.Vm),
  createVm: unary("CreateVm", hv1.CreateVmRequest, hv1.Vm),
  deleteVm: unary("DeleteVm", hv1.DeleteVmRequest, hv1.DeleteVmResponse),
  startWorkload: unary("StartWorkload", hv1.StartWorkloadRequest, hv1.WorkloadStatus),
  stopWorkload: unary("StopWorkload", hv1.StopWorkloadRequest, hv1.WorkloadStatus),
  getWorkloadStatus: unary("GetWorkloadStatus", hv1.GetWorkloadStatusRequest, hv1.WorkloadStatus),
  quiesceVm: unary("QuiesceVm", hv1.QuiesceVmRequest, hv1.WorkloadStatus),
  resumeVm: unary("ResumeVm", hv1.ResumeVmRequest, hv1.WorkloadStatus),
} as const;

export const HYPERVISOR_SERVICE = defineService(HYPERVISOR_SERVICE_NAME, HYPERVISOR_METHODS, { protoFile: "sanbox/hypervisor/v1/hypervisor.proto" });

export type HypervisorService = typeof HYPERVISOR_SERVICE;

/** What the simulator implements: decoded request in, response object out; throw SanboxErrors. */
export type HypervisorServiceImpl = Impl<HypervisorService>;

/** What a client offers: plain request objects in, decoded messages out. */
export type HypervisorApi = Api<HypervisorService>;

export type HypervisorClient = ServiceClient<HypervisorService>;

/** Serves HypervisorService alone; the options are the array's without TLS. */
export async function serveHypervisor(impl: HypervisorServiceImpl, options: Omit<RpcServerOptions, "tls">): Promise<RunningRpcServer> {
  // Checked before serve's own rule, which would ask for a certificate the hypervisor cannot use.
  if (options.endpoint.kind === "tcp" && options.insecure !== true) throw new InvalidArgumentError("the hypervisor serves gRPC over TCP only with --insecure (use a unix: endpoint)");
  return serve([implement(HYPERVISOR_SERVICE, impl)], { ...options, log: options.log ?? createLogger("hypervisor/rpc") });
}

/** Connects lazily (the first call opens the channel). */
export function connectHypervisor(options: { endpoint: string | RpcEndpoint; token?: string }): HypervisorClient {
  return connect(HYPERVISOR_SERVICE, { startHint: "sanbox hypervisor serve", ...options });
}
