"""version_policy when a run waited before it was queued (scheduled_at, a retry, dependencies): `latest`
runs the job's current version, `minor` the current version when it is backwards compatible, `pin` the
version it was triggered with. Real gRPC, time on a fake clock."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import field_mask_pb2, timestamp_pb2

from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2 as Q

from .test_runs_service import ADMIN_CALL, Platform, platform  # noqa: F401 - the fixture


async def job_with(platform: Platform, slug: str, policy: str) -> jobs_pb2.Job:
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name=slug, slug=slug, endpoint_url="http://127.0.0.1:9/v1", version_policy=policy)),
        metadata=ADMIN_CALL)


async def update(platform: Platform, job_id: str, **fields) -> jobs_pb2.Job:
    return await platform.jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=job_id, job=jobs_pb2.Job(**fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields))),
        metadata=ADMIN_CALL)


async def scheduled_run(platform: Platform, job_id: str) -> Q.Run:
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(platform.clock.now() + timedelta(seconds=10))
    return await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job_id, scheduled_at=at), metadata=ADMIN_CALL)


async def test_delayed_runs_follow_their_jobs_version_policy(platform: Platform) -> None:
    platform.service.http.concurrency = 0  # keep runs in the queue
    latest, minor, pinned = (await job_with(platform, "latest", "latest"), await job_with(platform, "minor", "minor"),
                             await job_with(platform, "pin", "pin"))
    runs = {job.slug: await scheduled_run(platform, job.id) for job in (latest, minor, pinned)}
    assert {run.job_version for run in runs.values()} == {1}
    for job in (latest, minor, pinned):
        await update(platform, job.id, endpoint_url="http://127.0.0.1:9/v2", timeout_secs=42)
    # A minor policy takes a new version only when that version says it is backwards compatible:
    # here version 2 is not; the run stays on version 1.
    platform.clock.advance(11)
    await platform.service.tick()
    got = {slug: await platform.runs.GetRun(Q.GetRunRequest(run_id=run.id), metadata=ADMIN_CALL)
           for slug, run in runs.items()}
    assert {slug: (r.status, r.job_version) for slug, r in got.items()} == {
        "latest": (Q.RUN_STATUS_QUEUED, 2), "minor": (Q.RUN_STATUS_QUEUED, 1), "pin": (Q.RUN_STATUS_QUEUED, 1)}
    row = await platform.service.store.get("t1", runs["latest"].id)
    assert (row.timeout_secs, jobs_pb2.Job.FromString(row.snapshot).endpoint_url) == (42, "http://127.0.0.1:9/v2")
    assert got["latest"].job_version_id == (await platform.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=latest.id), metadata=ADMIN_CALL)).version_id

    compatible = await update(platform, minor.id, endpoint_url="http://127.0.0.1:9/v3", backwards_compatible=True)
    later = await scheduled_run(platform, minor.id)
    await update(platform, minor.id, description="still compatible", backwards_compatible=True)
    platform.clock.advance(11)
    await platform.service.tick()
    moved = await platform.runs.GetRun(Q.GetRunRequest(run_id=later.id), metadata=ADMIN_CALL)
    # (The trigger may have used the runs service's copy of the job, up to 2 s old.)
    assert later.job_version <= compatible.version and moved.job_version == compatible.version + 1
