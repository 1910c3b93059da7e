"""JobService: proto <-> domain mapping only."""

from __future__ import annotations

from google.protobuf import empty_pb2

from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common.principal import from_context

from .domain import Jobs, redacted


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    async def CreateJob(self, request, context):
        return redacted(await self.jobs.create(from_context(context), request.job))

    async def BatchCreateJobs(self, request, context):
        jobs = await self.jobs.batch_create(from_context(context), list(request.jobs))
        return jobs_pb2.BatchCreateJobsResponse(jobs=[redacted(job) for job in jobs])

    async def BatchEnableJobs(self, request, context):
        changed = await self.jobs.set_enabled(from_context(context), list(request.job_ids), True)
        return jobs_pb2.BatchSetJobsEnabledResponse(updated=len(changed), job_ids=changed)

    async def BatchDisableJobs(self, request, context):
        changed = await self.jobs.set_enabled(from_context(context), list(request.job_ids), False)
        return jobs_pb2.BatchSetJobsEnabledResponse(updated=len(changed), job_ids=changed)

    async def CloneJob(self, request, context):
        return redacted(await self.jobs.clone(from_context(context), request.job_id, request.name, request.slug))

    async def GetJob(self, request, context):
        return redacted(await self.jobs.get(from_context(context), request.job_id, request.number))

    async def GetJobSnapshot(self, request, context):
        return await self.jobs.get(from_context(context), request.job_id, request.number)

    async def BatchGetJobSnapshots(self, request, context):
        jobs, dependencies = await self.jobs.snapshots(from_context(context), list(request.job_ids))
        return jobs_pb2.BatchGetJobSnapshotsResponse(jobs=jobs, dependencies=dependencies)

    async def ListJobs(self, request, context):
        if request.job_templates_only:
            jobs = await self.jobs.list_templates(from_context(context), request.job_template_feature,
                                                  request.job_template_search)
            return jobs_pb2.ListJobsResponse(jobs=[redacted(job) for job in jobs])
        jobs, token = await self.jobs.list(
            from_context(context), request.project_id, request.tag_key, request.tag_value,
            request.page_size, request.page_token, request.name, request.missions_only,
        )
        return jobs_pb2.ListJobsResponse(jobs=[redacted(job) for job in jobs], next_page_token=token)

    async def UpdateJob(self, request, context):
        paths = list(request.update_mask.paths) or [f.name for f, _ in request.job.ListFields()]
        return redacted(await self.jobs.update(from_context(context), request.job_id, request.job, paths))

    async def DeleteJob(self, request, context):
        await self.jobs.delete(from_context(context), request.job_id)
        return empty_pb2.Empty()

    async def ListJobVersions(self, request, context):
        versions = await self.jobs.versions(from_context(context), request.job_id)
        return jobs_pb2.ListJobVersionsResponse(versions=[redacted(version) for version in versions])

    async def GetJobVersion(self, request, context):
        return redacted(await self.jobs.version(from_context(context), request.job_id, request.version_id))

    async def GetJobVersionSnapshot(self, request, context):
        return await self.jobs.version(from_context(context), request.job_id, request.version_id)

    async def ListJobDependencies(self, request, context):
        dependencies = await self.jobs.dependencies(from_context(context), request.job_id)
        return jobs_pb2.ListJobDependenciesResponse(dependencies=dependencies)

    async def CreateJobDependency(self, request, context):
        return await self.jobs.add_dependency(
            from_context(context), request.job_id, request.depends_on_job_id, request.condition
        )

    async def DeleteJobDependency(self, request, context):
        await self.jobs.remove_dependency(from_context(context), request.job_id, request.dep_id)
        return empty_pb2.Empty()

    async def CreateJobSchedule(self, request, context):
        return await self.jobs.create_schedule(from_context(context), request.schedule)

    async def GetJobSchedule(self, request, context):
        return await self.jobs.get_schedule(from_context(context), request.schedule_id)

    async def CancelJobSchedule(self, request, context):
        return await self.jobs.cancel_schedule(from_context(context), request.schedule_id)
