"""RunService and AgentService: proto <-> engine mapping only."""

from __future__ import annotations

from jobline.runs.v1 import agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common.errors import DomainError
from services.common.principal import from_context

from .engine import RunEngine
from .hub import AgentHub


class RunServicer(runs_pb2_grpc.RunServiceServicer):
    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine

    async def TriggerJob(self, request, context):
        return await self.engine.trigger(from_context(context), request)

    async def GetRun(self, request, context):
        return await self.engine.get(from_context(context), request.run_id)

    async def ListRuns(self, request, context):
        return await self.engine.list(from_context(context), request)

    async def CancelRun(self, request, context):
        return await self.engine.cancel(from_context(context), request.run_id)

    async def CountActiveRuns(self, request, context):
        count = await self.engine.count_active(from_context(context), request.job_id)
        return runs_pb2.CountActiveRunsResponse(count=count)

    async def ListRunLogs(self, request, context):
        return await self.engine.logs(from_context(context), request.run_id, request.after_sequence)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: AgentHub) -> None:
        self.hub = hub

    async def Connect(self, request_iterator, context):
        try:
            async for message in self.hub.connect(request_iterator):
                yield message
        except DomainError as error:
            await context.abort(error.status, error.message)
