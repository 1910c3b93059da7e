"""The jobs service's view of the runs service: active-run counts (delete) and triggers (cron)."""

from __future__ import annotations

from typing import Protocol

import grpc

from jobline.auth.v1.auth_pb2 import Principal
from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.channels import Channels
from services.common.errors import from_rpc_error
from services.common.principal import to_metadata

RPC_TIMEOUT_SECS = 20.0


class Runs(Protocol):
    async def count_active(self, principal: Principal, job_id: str) -> int: ...

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run: ...

    async def trigger_request(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run: ...


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
