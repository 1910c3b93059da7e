"""The runs service's view of its peers: jobs (with a short-lived cache) and devices."""

from __future__ import annotations

import time

import grpc

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common.channels import Channels
from services.common.errors import from_rpc_error
from services.common.errors import NotFound
from services.common.principal import reaches_project, to_metadata

JOB_CACHE_SECS = 2.0
JOB_CACHE_SIZE = 10_000


class Peers:
    def __init__(self, channels: Channels, peers: dict[str, str]) -> None:
        self._jobs = jobs_pb2_grpc.JobServiceStub(channels.get(peers["jobs"]))
        self._devices = devices_pb2_grpc.DeviceServiceStub(channels.get(peers["devices"]))
        self._job_cache: dict[tuple[str, str], tuple[float, jobs_pb2.Job]] = {}
        self._deps_cache: dict[tuple[str, str], tuple[float, list[jobs_pb2.JobDependency]]] = {}

    async def job(self, principal: Principal, job_id: str) -> jobs_pb2.Job:
        """The job's current definition, at most JOB_CACHE_SECS stale (cached per tenant: whether the
        principal reaches the job's project is checked on every call)."""
        key = (principal.tenant_id, job_id)
        cached = self._job_cache.get(key)
        if cached and cached[0] > time.monotonic():
            if not reaches_project(principal, cached[1].project_id):
                raise NotFound(f"job {job_id} not found")
            return cached[1]
        try:
            job = await self._jobs.GetJobSnapshot(jobs_pb2.GetJobRequest(job_id=job_id), metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        if len(self._job_cache) >= JOB_CACHE_SIZE:
            self._job_cache.clear()
        self._job_cache[key] = (time.monotonic() + JOB_CACHE_SECS, job)
        return job

    async def dependencies(self, principal: Principal, job_id: str) -> list[jobs_pb2.JobDependency]:
        """The jobs this job depends on; none while the jobs service does not answer the RPC yet."""
        key = (principal.tenant_id, job_id)
        cached = self._deps_cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            reply = await self._jobs.ListJobDependencies(jobs_pb2.ListJobDependenciesRequest(job_id=job_id),
                                                         metadata=to_metadata(principal))
            deps = list(reply.dependencies)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise from_rpc_error(error) from None
            deps = []
        if len(self._deps_cache) >= JOB_CACHE_SIZE:
            self._deps_cache.clear()
        self._deps_cache[key] = (time.monotonic() + JOB_CACHE_SECS, deps)
        return deps

    async def resolve(self, principal: Principal, targets: devices_pb2.DeviceTargets) -> devices_pb2.ResolveTargetsResponse:
        try:
            return await self._devices.ResolveTargets(
                devices_pb2.ResolveTargetsRequest(targets=targets), metadata=to_metadata(principal)
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def authenticate_agent(self, device_id: str, credential: str) -> devices_pb2.Device:
        try:
            return await self._devices.AuthenticateAgent(
                devices_pb2.AuthenticateAgentRequest(device_id=device_id, credential=credential)
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def enroll_device(self, request: devices_pb2.EnrollDeviceRequest) -> devices_pb2.Device:
        try:
            return await self._devices.EnrollDevice(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def invalid_agents(self, agents: list[devices_pb2.AgentCredential]) -> list[devices_pb2.AgentCredential]:
        """Those of the agents whose credential no longer holds (revoked, rotated, device deleted)."""
        answer = await self._devices.ValidateAgents(devices_pb2.ValidateAgentsRequest(agents=agents))
        return list(answer.invalid)

    async def report_presence(self, changes: list[devices_pb2.PresenceChange], *, replica_id: str = "",
                              lease_secs: int = 0, release: bool = False) -> bool:
        """Reports presence changes and renews the replica's lease; answers whether to report every stream again."""
        answer = await self._devices.ReportPresence(devices_pb2.ReportPresenceRequest(
            changes=changes, replica_id=replica_id, lease_secs=lease_secs, release=release))
        return answer.resync
