"""A delayed run (scheduled_at, a retry, a reschedule) that comes due while its job's execution window
is closed waits for the window's next opening instead of being queued; time on a fake clock.

The fake clock starts at 2026-01-01 12:00 UTC = 13:00 in Paris; the window is 14:00-14:59 Paris time
(13:00-13:59 UTC), so the next day's opening is 2026-01-02 13:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2
from jobline.runs.v1 import runs_pb2 as Q

from .test_runs_service import ADMIN_CALL, Platform, ScriptedAgent, platform  # noqa: F401 - the fixture

WINDOW = dict(execution_window_cron="* 14 * * *", timezone="Europe/Paris")
NEXT_OPENING = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


def until(platform: Platform, at: datetime) -> None:
    platform.clock.advance((at - platform.clock.now()).total_seconds())


async def run_of(platform: Platform, run_id: str) -> Q.Run:
    return await platform.runs.GetRun(Q.GetRunRequest(run_id=run_id), metadata=ADMIN_CALL)


async def endpoint_job(platform: Platform, **fields) -> jobs_pb2.Job:
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="windowed", slug="windowed", endpoint_url="http://127.0.0.1:9/none", **fields)),
        metadata=ADMIN_CALL)


async def test_a_scheduled_run_due_after_the_window_closed_waits_for_the_next_opening(platform: Platform) -> None:
    platform.service.http.concurrency = 0  # keep runs in the queue
    job = await endpoint_job(platform, **WINDOW)
    inside = datetime(2026, 1, 1, 13, 30, tzinfo=UTC)  # 14:30 in Paris
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, scheduled_at=ts(inside)),
                                         metadata=ADMIN_CALL)
    assert run.status == Q.RUN_STATUS_DELAYED and run.scheduled_at.ToDatetime(tzinfo=UTC) == inside

    until(platform, datetime(2026, 1, 1, 14, 10, tzinfo=UTC))  # the replica was busy or down past 15:00 Paris
    await platform.service.tick()
    moved = await run_of(platform, run.id)
    assert moved.status == Q.RUN_STATUS_DELAYED
    assert moved.scheduled_at.ToDatetime(tzinfo=UTC) == NEXT_OPENING
    events = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert events.events[-1].message == "outside the execution window; delayed until 2026-01-02T13:00:00Z"

    until(platform, NEXT_OPENING - timedelta(seconds=1))
    await platform.service.tick()
    assert (await run_of(platform, run.id)).status == Q.RUN_STATUS_DELAYED
    until(platform, NEXT_OPENING)
    await platform.service.tick()
    assert (await run_of(platform, run.id)).status == Q.RUN_STATUS_QUEUED


async def test_a_run_due_inside_the_window_is_queued(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform, **WINDOW)
    inside = datetime(2026, 1, 1, 13, 30, tzinfo=UTC)
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id, scheduled_at=ts(inside)),
                                         metadata=ADMIN_CALL)
    until(platform, inside + timedelta(minutes=5))
    await platform.service.tick()
    assert (await run_of(platform, run.id)).status == Q.RUN_STATUS_QUEUED


async def test_a_retry_due_outside_the_window_waits_for_the_next_opening(platform: Platform) -> None:
    device = await platform.devices.CreateDevice(devices_pb2.CreateDeviceRequest(
        device=devices_pb2.Device(id="phone-1")), metadata=ADMIN_CALL)
    job = await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name="probe", slug="probe", command="probe", max_attempts=2,
        retry_strategy="fixed", retry_delays_secs=[1800],
        targets=devices_pb2.DeviceTargets(device_ids=["phone-1"]), **WINDOW)), metadata=ADMIN_CALL)
    until(platform, datetime(2026, 1, 1, 13, 50, tzinfo=UTC))  # 14:50 Paris: open
    agent = ScriptedAgent(platform, device.credential)
    try:
        await agent.receive("welcome")
        run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
        assert run.status == Q.RUN_STATUS_QUEUED
        ref = (await agent.receive("assign")).assign.run
        agent.send(accept=agent_pb2.Accept(run=ref))
        agent.send(finished=agent_pb2.Finished(run=ref, exit_code=1))
        assert (await agent.receive("ack")).ack.finished
        retry = await run_of(platform, run.id)
        assert (retry.status, retry.attempt) == (Q.RUN_STATUS_DELAYED, 2)
        retry_at = retry.next_retry_at.ToDatetime(tzinfo=UTC)
        assert retry_at > datetime(2026, 1, 1, 14, 0, tzinfo=UTC)  # 30 min +-20 %: after the window closed

        until(platform, retry_at + timedelta(seconds=1))
        await platform.service.tick()
        waiting = await run_of(platform, run.id)
        assert waiting.status == Q.RUN_STATUS_DELAYED and waiting.attempt == 2
        assert waiting.scheduled_at.ToDatetime(tzinfo=UTC) == NEXT_OPENING

        until(platform, NEXT_OPENING)
        await platform.service.tick()
        assign = (await agent.receive("assign")).assign
        assert (assign.run.run_id, assign.run.attempt) == (run.id, 2)
    finally:
        agent.close()


async def test_rescheduling_to_now_outside_the_window_waits_for_it(platform: Platform) -> None:
    platform.service.http.concurrency = 0
    job = await endpoint_job(platform, **WINDOW)
    run = await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job.id), metadata=ADMIN_CALL)
    assert run.status == Q.RUN_STATUS_DELAYED  # 13:00 Paris: the window opens at 14:00
    moved = await platform.runs.RescheduleRun(Q.RescheduleRunRequest(run_id=run.id, scheduled_at=ts(
        platform.clock.now())), metadata=ADMIN_CALL)
    assert moved.status == Q.RUN_STATUS_DELAYED
    assert moved.scheduled_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
