"""RunService and AgentService: proto <-> engine mapping only."""

from __future__ import annotations

from google.protobuf import empty_pb2

from jobline.runs.v1 import agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common.errors import DomainError, bounded
from services.common.principal import from_context

from .engine import RunEngine
from .hub import AgentHub


class RunServicer(runs_pb2_grpc.RunServiceServicer):
    def __init__(self, engine: RunEngine, hub: AgentHub) -> None:
        self.engine = engine
        self.hub = hub

    async def TriggerJob(self, request, context):
        return await self.engine.trigger(from_context(context), request)

    async def TriggerJobs(self, request, context):
        outcomes = await self.engine.trigger_many(from_context(context), list(request.requests))
        return runs_pb2.TriggerJobsResponse(results=[
            runs_pb2.TriggerJobsResult(run=outcome) if isinstance(outcome, runs_pb2.Run) else
            runs_pb2.TriggerJobsResult(error_code=outcome.status.value[0], error_message=bounded(outcome.message))
            for outcome in outcomes])

    async def BulkTriggerJob(self, request, context):
        return await self.engine.bulk_trigger(from_context(context), request)

    async def GetJobHealth(self, request, context):
        return await self.engine.health(from_context(context), request)

    async def GetRun(self, request, context):
        if request.number:
            return await self.engine.get_by_number(from_context(context), request.number)
        if request.name:
            return await self.engine.get_by_name(from_context(context), request.job_id, request.name)
        return await self.engine.get(from_context(context), request.run_id)

    async def ListRuns(self, request, context):
        return await self.engine.list(from_context(context), request)

    async def ListDeadLetterRuns(self, request, context):
        return await self.engine.list_dead_letter(from_context(context), request)

    async def CancelRun(self, request, context):
        return await self.engine.cancel(from_context(context), request.run_id, request.job_id, request.name,
                                        only_if_not_started=request.only_if_not_started)

    async def DeleteRun(self, request, context):
        await self.engine.cancel(from_context(context), request.run_id, request.job_id, request.name)
        return empty_pb2.Empty()

    async def PurgeRun(self, request, context):
        await self.engine.purge(from_context(context), request.run_id, request.job_id, request.name)
        return empty_pb2.Empty()

    async def BulkCancelRuns(self, request, context):
        return await self.engine.bulk_cancel(from_context(context), list(request.run_ids))

    async def BulkCancelAllRuns(self, request, context):
        return await self.engine.bulk_cancel_all(from_context(context), request)

    async def ReplayRun(self, request, context):
        return await self.engine.replay(from_context(context), request.run_id)

    async def ReplayDeadLetterRun(self, request, context):
        return await self.engine.replay(from_context(context), request.run_id, dead_letter_only=True)

    async def BulkReplayDeadLetterRuns(self, request, context):
        return await self.engine.bulk_replay_dead_letter(from_context(context), request)

    async def BulkReplayRuns(self, request, context):
        runs = await self.engine.bulk_replay(from_context(context), list(request.run_ids))
        return runs_pb2.ListRunsResponse(runs=runs)

    async def ListChildRuns(self, request, context):
        return await self.engine.children(from_context(context), request.run_id)

    async def ListRunLineage(self, request, context):
        return await self.engine.lineage(from_context(context), request.run_id)

    async def ListRunEvents(self, request, context):
        return await self.engine.events(from_context(context), request)

    async def ListRunOutputs(self, request, context):
        return await self.engine.outputs(from_context(context), request.run_id)

    async def GetRunDependencyStatus(self, request, context):
        return await self.engine.dependency_status(from_context(context), request.run_id)

    async def ResetIdempotencyKey(self, request, context):
        return await self.engine.reset_idempotency_key(from_context(context), request.run_id)

    async def RescheduleRun(self, request, context):
        return await self.engine.reschedule(from_context(context), request)

    async def WatchRun(self, request, context):
        async for message in self.engine.watch(from_context(context), request.run_id):
            yield message

    async def CountActiveRuns(self, request, context):
        count = await self.engine.count_active(from_context(context), request.job_id)
        return runs_pb2.CountActiveRunsResponse(count=count)

    async def ListRunLogs(self, request, context):
        return await self.engine.logs(from_context(context), request.run_id, request.after_sequence)

    async def GetStats(self, request, context):
        # Internal, for operators' metrics: no principal (the service credential guards it), every tenant.
        reply = runs_pb2.GetStatsResponse(runs_by_status=await self.engine.store.count_by_status())
        latency = self.hub.dispatch_latency
        reply.agent_streams_connected = len(self.hub.sessions)
        reply.dispatch_latency_bucket_bounds_secs.extend(latency.bounds)
        reply.dispatch_latency_bucket_counts.extend(latency.cumulative())
        reply.dispatch_latency_count = latency.count
        reply.dispatch_latency_sum_secs = latency.sum
        return reply


    # -- job invocations (services/runs/invocations.py) --

    async def CreateJobInvocation(self, request, context):
        return await self.engine.job_invocations.create(from_context(context), request)

    async def GetJobInvocation(self, request, context):
        return await self.engine.job_invocations.get(from_context(context), request)

    async def ListJobInvocations(self, request, context):
        return await self.engine.job_invocations.list(from_context(context), request)

    async def CancelJobInvocation(self, request, context):
        return await self.engine.job_invocations.cancel(from_context(context), request)

    async def RerunJobInvocation(self, request, context):
        return await self.engine.job_invocations.rerun(from_context(context), request)

    async def ListJobInvocationOutputs(self, request, context):
        return await self.engine.job_invocations.outputs(from_context(context), request)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: AgentHub) -> None:
        self.hub = hub

    async def Connect(self, request_iterator, context):
        try:
            async for message in self.hub.connect(request_iterator):
                yield message
        except DomainError as error:
            await context.abort(error.status, bounded(error.message))
