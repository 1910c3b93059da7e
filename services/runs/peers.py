"""The runs service's view of its peers: jobs (with a short-lived cache) and devices."""

from __future__ import annotations

import asyncio
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
RESOLVE_BATCH_IDS = 2000  # device ids of concurrent resolves sent in one ResolveTargets call at most


class _IdsWanted:
    """Resolves of device ids only, by one principal, waiting for the next ResolveTargets call."""

    __slots__ = ("principal", "waiting")

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.waiting: list[tuple[list[str], asyncio.Future[devices_pb2.ResolveTargetsResponse]]] = []


class Peers:
    def __init__(self, channels: Channels, peers: dict[str, str]) -> None:
        self._jobs = jobs_pb2_grpc.JobServiceStub(channels.get(peers["jobs"]))
        self._devices = devices_pb2_grpc.DeviceServiceStub(channels.get(peers["devices"]))
        self._job_cache: dict[tuple[str, str], tuple[float, jobs_pb2.Job]] = {}
        self._deps_cache: dict[tuple[str, str], tuple[float, list[jobs_pb2.JobDependency]]] = {}
        self._version_cache: dict[tuple[str, str, str], tuple[float, jobs_pb2.JobVersion]] = {}
        self._ids_wanted: dict[bytes, _IdsWanted] = {}  # principal (serialized) -> its waiting resolves
        self._ids_resolving: set[bytes] = set()
        self._resolvers: set[asyncio.Task] = set()  # the tasks sending them (held: the loop keeps weak references)

    async def job(self, principal: Principal, job_id: str, fresh: bool = False) -> jobs_pb2.Job:
        """The job's current definition, at most JOB_CACHE_SECS stale (`fresh`: as of now). Cached per
        tenant: whether the principal reaches the job's project is checked on every call."""
        key = (principal.tenant_id, job_id)
        cached = self._job_cache.get(key)
        if cached and cached[0] > time.monotonic() and not fresh:
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

    async def jobs_with_dependencies(self, principal: Principal, job_ids: list[str]
                                     ) -> dict[str, tuple[jobs_pb2.Job, list[jobs_pb2.JobDependency]]] | None:
        """Many jobs as of now, each with what it depends on, in one call (a job missing or out of reach is
        left out); they refresh the caches `job` and `dependencies` read. None while the jobs service does
        not answer the RPC yet."""
        try:
            reply = await self._jobs.BatchGetJobSnapshots(jobs_pb2.BatchGetJobSnapshotsRequest(job_ids=job_ids),
                                                          metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise from_rpc_error(error) from None
        found: dict[str, tuple[jobs_pb2.Job, list[jobs_pb2.JobDependency]]] = {job.id: (job, []) for job in reply.jobs}
        for dependency in reply.dependencies:
            if dependency.job_id in found:
                found[dependency.job_id][1].append(dependency)
        if len(self._job_cache) + len(found) > JOB_CACHE_SIZE:
            self._job_cache.clear()
        if len(self._deps_cache) + len(found) > JOB_CACHE_SIZE:
            self._deps_cache.clear()
        until = time.monotonic() + JOB_CACHE_SECS
        for job_id, (job, deps) in found.items():
            self._job_cache[(principal.tenant_id, job_id)] = (until, job)
            self._deps_cache[(principal.tenant_id, job_id)] = (until, deps)
        return found

    async def job_version(self, principal: Principal, job_id: str, version_id: str) -> jobs_pb2.JobVersion:
        """One immutable version of a job, with its snapshot (job_id may be empty), at most
        JOB_CACHE_SECS stale (a deleted job's versions stop being found)."""
        key = (principal.tenant_id, job_id, version_id)
        cached = self._version_cache.get(key)
        if cached and cached[0] > time.monotonic():
            if not reaches_project(principal, cached[1].snapshot.project_id):
                raise NotFound(f"version {version_id} not found")
            return cached[1]
        try:
            version = await self._jobs.GetJobVersionSnapshot(
                jobs_pb2.GetJobVersionRequest(job_id=job_id, version_id=version_id), metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        if len(self._version_cache) >= JOB_CACHE_SIZE:
            self._version_cache.clear()
        self._version_cache[key] = (time.monotonic() + JOB_CACHE_SECS, version)
        return version

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

    async def create_schedule(self, principal: Principal, schedule: jobs_pb2.JobSchedule) -> jobs_pb2.JobSchedule:
        """A jobs-service schedule carrying a trigger request (a recurring job invocation)."""
        try:
            return await self._jobs.CreateJobSchedule(jobs_pb2.CreateJobScheduleRequest(schedule=schedule),
                                                      metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def get_schedule(self, principal: Principal, schedule_id: str) -> jobs_pb2.JobSchedule:
        try:
            return await self._jobs.GetJobSchedule(jobs_pb2.GetJobScheduleRequest(schedule_id=schedule_id),
                                                   metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def cancel_schedule(self, principal: Principal, schedule_id: str) -> jobs_pb2.JobSchedule:
        try:
            return await self._jobs.CancelJobSchedule(jobs_pb2.GetJobScheduleRequest(schedule_id=schedule_id),
                                                      metadata=to_metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def resolve(self, principal: Principal, targets: devices_pb2.DeviceTargets, pick_count: int = 1, *,
                      pool_members: bool = False, max_pool_members: int = 0) -> devices_pb2.ResolveTargetsResponse:
        if pick_count <= 1 and not pool_members and _ids_only(targets):
            return await self._resolve_ids(principal, list(targets.device_ids))
        return await self._resolve(principal, targets, pick_count, pool_members=pool_members,
                                   max_pool_members=max_pool_members)

    async def _resolve_ids(self, principal: Principal, ids: list[str]) -> devices_pb2.ResolveTargetsResponse:
        """A resolve of device ids only (a trigger naming its devices): the resolves of one principal made
        while its previous call is out go in one call together, each answered with its own devices (in its
        order) and missing ids."""
        key = principal.SerializeToString(deterministic=True)
        wanted = self._ids_wanted.get(key)
        if wanted is None:
            wanted = self._ids_wanted[key] = _IdsWanted(principal)
        future: asyncio.Future[devices_pb2.ResolveTargetsResponse] = asyncio.get_running_loop().create_future()
        wanted.waiting.append((ids, future))
        if key not in self._ids_resolving:
            self._ids_resolving.add(key)
            self._start_resolver(key)
        return await future

    def _start_resolver(self, key: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._resolve_wanted(key))
        self._resolvers.add(task)
        task.add_done_callback(self._resolvers.discard)

    async def _resolve_wanted(self, key: bytes) -> None:
        try:
            while (wanted := self._ids_wanted.pop(key, None)) is not None:
                waiting = wanted.waiting
                while waiting:
                    batch, count = [], 0
                    while waiting and (not batch or count + len(waiting[0][0]) <= RESOLVE_BATCH_IDS):
                        batch.append(waiting.pop(0))
                        count += len(batch[-1][0])
                    await self._answer_ids(wanted.principal, batch)
        finally:
            self._ids_resolving.discard(key)
            if key in self._ids_wanted:  # (only when this task was canceled)
                self._ids_resolving.add(key)
                self._start_resolver(key)

    async def _answer_ids(self, principal: Principal, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        if len(batch) == 1:
            ids, future = batch[0]
            try:
                answer = await self._resolve(principal, devices_pb2.DeviceTargets(device_ids=ids))
            except Exception as error:
                if not future.done():
                    future.set_exception(error)
                return
            if not future.done():
                future.set_result(answer)
            return
        every = list(dict.fromkeys(i for ids, _ in batch for i in ids))
        try:
            answer = await self._resolve(principal, devices_pb2.DeviceTargets(device_ids=every))
        except Exception:  # one request's ids may be what failed: each alone tells
            await asyncio.gather(*(self._answer_ids(principal, [item]) for item in batch))
            return
        found = {device.id: device for device in answer.devices}
        for ids, future in batch:
            if not future.done():
                unique = list(dict.fromkeys(ids))
                future.set_result(devices_pb2.ResolveTargetsResponse(
                    devices=[found[i] for i in unique if i in found],
                    missing_device_ids=[i for i in unique if i not in found]))

    async def _resolve(self, principal: Principal, targets: devices_pb2.DeviceTargets, pick_count: int = 1, *,
                       pool_members: bool = False, max_pool_members: int = 0) -> devices_pb2.ResolveTargetsResponse:
        try:
            return await self._devices.ResolveTargets(
                devices_pb2.ResolveTargetsRequest(targets=targets, pick_count=pick_count if pick_count > 1 else 0,
                                                  pool_members=pool_members, max_pool_members=max_pool_members),
                metadata=to_metadata(principal)
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

    async def invalid_agents(self, agents: list[devices_pb2.AgentCredential]
                             ) -> tuple[list[devices_pb2.AgentCredential], int]:
        """Those of the agents whose credential no longer holds (revoked, rotated, device deleted), and the
        credential revision they were checked at (with no agents: just the revision)."""
        answer = await self._devices.ValidateAgents(devices_pb2.ValidateAgentsRequest(agents=agents))
        return list(answer.invalid), answer.revision

    async def report_presence(self, changes: list[devices_pb2.PresenceChange], *, replica_id: str = "",
                              lease_secs: int = 0, release: bool = False) -> bool:
        """Reports presence changes and renews the replica's lease; answers whether to report every stream again."""
        answer = await self._devices.ReportPresence(devices_pb2.ReportPresenceRequest(
            changes=changes, replica_id=replica_id, lease_secs=lease_secs, release=release))
        return answer.resync


def _ids_only(targets: devices_pb2.DeviceTargets) -> bool:
    """Targets that name device ids and nothing else (no group, query, numbers, search, pick)."""
    return bool(targets.device_ids) and not (targets.group or targets.query or targets.any_available
                                             or targets.device_numbers or targets.device_ids_within_group
                                             or targets.saved_search_id or targets.query_dialect)
