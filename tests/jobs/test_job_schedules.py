"""Schedules that carry their own trigger request (a recurring job invocation), fired by the one scheduler with
its lease and catch-up rule: iterations, max_iteration, end_time, cancel; and job templates' rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2

from jobline.jobs.v1.jobs_pb2 import Job, JobSchedule, JobTemplateInput, JobTemplateSpec
from jobline.runs.v1 import runs_pb2
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from .test_scheduler import ALICE, START, clock, replicas, runs  # noqa: F401


def ts(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def template(service, name: str = "Echo") -> Job:
    return await service.jobs.create(ALICE, Job(project_id="default", name=name, command="echo <%= input('m') %>",
                                                job_template=JobTemplateSpec(job_category="Commands", inputs=[
                                                    JobTemplateInput(name="m", default_value="x")])))


def trigger(job: Job) -> bytes:
    spec = runs_pb2.JobInvocationSpec(targeting_type="dynamic_query", search_query="name ~ web",
                                      recurrence_id="rec-00000001")
    return runs_pb2.TriggerJobRequest(job_id=job.id, job_invocation=spec).SerializeToString()


async def test_a_schedule_fires_its_trigger_request_until_max_iteration(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await template(service)
    schedule = await service.jobs.create_schedule(ALICE, JobSchedule(
        id="rec-00000001", job_id=job.id, cron="*/10 * * * *", max_iteration=2, trigger_request=trigger(job)))
    assert (schedule.state, schedule.iteration, schedule.number > 0) == ("active", 0, True)
    assert schedule.next_fire_at.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=10)

    clock.advance(600)
    assert await service.scheduler.tick() == 1
    first = runs.requests[-1]
    assert first.idempotency_key == "cron:rec-00000001:2026-01-01T12:10:00+00:00"
    assert first.job_invocation.search_query == "name ~ web"
    assert first.job_invocation.next_occurrence.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=20)
    assert runs.triggers[-1][0].subject_name == "cron"

    clock.advance(3600)  # downtime: one catch-up, the latest tick, and it is the last
    assert await service.scheduler.tick() == 1
    last = runs.requests[-1]
    assert last.idempotency_key == "cron:rec-00000001:2026-01-01T13:10:00+00:00"
    assert not last.job_invocation.HasField("next_occurrence")
    done = await service.jobs.get_schedule(ALICE, "rec-00000001")
    assert (done.state, done.iteration) == ("finished", 2)
    clock.advance(3600)
    assert await service.scheduler.tick() == 0


async def test_end_time_and_cancel_end_a_schedule(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await template(service)
    with pytest.raises(InvalidArgument, match="end_time"):
        await service.jobs.create_schedule(ALICE, JobSchedule(job_id=job.id, cron="0 * * * *",
                                                              end_time=ts(START + timedelta(minutes=30)),
                                                              trigger_request=trigger(job)))
    with pytest.raises(InvalidArgument, match="cron_line"):
        await service.jobs.create_schedule(ALICE, JobSchedule(job_id=job.id, cron="whenever",
                                                              trigger_request=trigger(job)))
    schedule = await service.jobs.create_schedule(ALICE, JobSchedule(
        job_id=job.id, cron="0 * * * *", end_time=ts(START + timedelta(hours=1, minutes=30)),
        trigger_request=trigger(job)))
    clock.advance(3600)
    assert await service.scheduler.tick() == 1
    assert (await service.jobs.get_schedule(ALICE, schedule.id)).state == "finished"  # 14:00 > end_time

    other = await service.jobs.create_schedule(ALICE, JobSchedule(job_id=job.id, cron="*/5 * * * *",
                                                                  trigger_request=trigger(job)))
    assert (await service.jobs.cancel_schedule(ALICE, other.id)).state == "cancelled"
    clock.advance(600)
    assert await service.scheduler.tick() == 0
    bob = ALICE.__class__(tenant_id="t-bob", project_id="default", subject_id="u2", scopes=ALICE.scopes)
    with pytest.raises(NotFound):
        await service.jobs.get_schedule(bob, other.id)


async def test_job_templates_are_numbered_validated_unique_and_locked(replicas, clock, runs) -> None:
    service = await replicas.start()
    first, second = await template(service, "A"), await template(service, "B")
    assert 0 < first.number < second.number and first.slug == f"job-template-{first.number}"
    assert (first.timeout_secs, first.max_attempts, first.job_template.provider_type) == (86400, 1, "script")
    assert first.job_template.inputs[0].id == 1 and first.job_template.effective_user.value == "root"
    assert (await service.jobs.get(ALICE, "", number=second.number)).id == second.id
    assert [j.name for j in await service.jobs.list_templates(ALICE, search="name = B or id < 0")] == ["B"]
    with pytest.raises(AlreadyExists, match="name: has already been taken"):
        await template(service, "A")
    with pytest.raises(InvalidArgument, match="template: uses the unsupported ERB tag"):
        await service.jobs.create(ALICE, Job(project_id="default", name="C", command="<%= @host.name %>",
                                             job_template=JobTemplateSpec(job_category="x")))
    locked = Job(job_template=JobTemplateSpec(locked=True))
    await service.jobs.update(ALICE, first.id, locked, ["job_template.locked"])
    with pytest.raises(FailedPrecondition, match="locked"):
        await service.jobs.update(ALICE, first.id, Job(command="reboot"), ["command"])
    with pytest.raises(FailedPrecondition, match="locked"):
        await service.jobs.delete(ALICE, first.id)
    unlocked = await service.jobs.update(ALICE, first.id, Job(job_template=JobTemplateSpec(locked=False)),
                                         ["job_template.locked"])
    assert unlocked.job_template.locked is False and unlocked.job_template.job_category == "Commands"
    with pytest.raises(InvalidArgument, match="cannot become or stop being a job template"):
        await service.jobs.update(ALICE, first.id, Job(), ["job_template"])
