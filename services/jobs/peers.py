"""The jobs service's view of the runs service: active-run counts (delete) and triggers (cron)."""

from __future__ import annotations

import asyncio
from typing import Protocol

import grpc

from jobline.auth.v1.auth_pb2 import Principal
from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.channels import Channels
from services.common.errors import (AlreadyExists, Conflict, DomainError, FailedPrecondition, InvalidArgument,
                                    NotFound, PermissionDenied, ResourceExhausted, Unauthenticated, from_rpc_error)
from services.common.principal import to_metadata

RPC_TIMEOUT_SECS = 20.0
# A TriggerJobs item's error_code (a grpc status code's number) as the domain error it stands for.
_BY_CODE = {cls.status.value[0]: cls for cls in (InvalidArgument, NotFound, AlreadyExists, Conflict,
                                                  FailedPrecondition, Unauthenticated, PermissionDenied,
                                                  ResourceExhausted)}


class Runs(Protocol):
    async def count_active(self, principal: Principal, job_id: str) -> int: ...

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run: ...

    async def trigger_request(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run: ...

    async def trigger_many(self, principal: Principal, requests: list[runs_pb2.TriggerJobRequest]
                           ) -> list[runs_pb2.Run | DomainError]:
        """Each request's run, or the error that refused it (one refused never fails the others); raises
        only when the call as a whole failed."""
        ...


class RunsPeer:
    """RunService over gRPC, the caller's principal forwarded; refusals become domain errors."""

    def __init__(self, channels: Channels, addr: str) -> None:
        self._runs = runs_pb2_grpc.RunServiceStub(channels.get(addr))

    async def count_active(self, principal: Principal, job_id: str) -> int:
        try:
            reply = await self._runs.CountActiveRuns(
                runs_pb2.CountActiveRunsRequest(job_id=job_id), metadata=to_metadata(principal),
                timeout=RPC_TIMEOUT_SECS,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return reply.count

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run:
        return await self.trigger_request(principal, runs_pb2.TriggerJobRequest(job_id=job_id,
                                                                                idempotency_key=idempotency_key))

    async def trigger_request(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run:
        """TriggerJob with a whole request (a schedule that carries its own)."""
        try:
            return await self._runs.TriggerJob(request, metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def trigger_many(self, principal: Principal, requests: list[runs_pb2.TriggerJobRequest]
                           ) -> list[runs_pb2.Run | DomainError]:
        """TriggerJobs: every request in one call; a runs service that does not answer it yet gets them as
        concurrent TriggerJob calls."""
        try:
            reply = await self._runs.TriggerJobs(runs_pb2.TriggerJobsRequest(requests=requests),
                                                 metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise from_rpc_error(error) from None
            return list(await asyncio.gather(*(self._one(principal, request) for request in requests)))
        if len(reply.results) != len(requests):
            raise DomainError(f"TriggerJobs answered {len(reply.results)} results for {len(requests)} requests")
        return [result.run if not result.error_code else
                _BY_CODE.get(result.error_code, DomainError)(result.error_message or "refused")
                for result in reply.results]

    async def _one(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run | DomainError:
        try:
            return await self.trigger_request(principal, request)
        except DomainError as error:
            return error
