"""JobService: proto <-> domain mapping only."""

from __future__ import annotations

from google.protobuf import empty_pb2

from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common.principal import from_context

from .domain import Jobs


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    async def CreateJob(self, request, context):
        return await self.jobs.create(from_context(context), request.job)

    async def GetJob(self, request, context):
        return await self.jobs.get(from_context(context), request.job_id)

    async def ListJobs(self, request, context):
        jobs, token = await self.jobs.list(
            from_context(context), request.project_id, request.tag_key, request.tag_value,
            request.page_size, request.page_token,
        )
        return jobs_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def UpdateJob(self, request, context):
        paths = list(request.update_mask.paths) or [f.name for f, _ in request.job.ListFields()]
        return await self.jobs.update(from_context(context), request.job_id, request.job, paths)

    async def DeleteJob(self, request, context):
        await self.jobs.delete(from_context(context), request.job_id)
        return empty_pb2.Empty()

    async def ListJobVersions(self, request, context):
        versions = await self.jobs.versions(from_context(context), request.job_id)
        return jobs_pb2.ListJobVersionsResponse(versions=versions)

    async def GetJobVersion(self, request, context):
        return await self.jobs.version(from_context(context), request.job_id, request.version_id)
