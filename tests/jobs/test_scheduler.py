"""Cron in the jobs service with a FakeClock: on time, in the job's timezone, once per tick,
one catch-up after downtime, and never twice across replicas (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.jobs.v1.jobs_pb2 import Job
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import DomainError, InvalidArgument
from services.common.principal import ADMIN
from services.jobs.app import JobsService
from services.jobs.scheduler import latest_tick, next_tick

from .fakes import FakeRuns

ALICE = Principal(tenant_id="t-alice", project_id="default", subject_id="u1", subject_name="alice", scopes=[ADMIN])
START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # a Thursday


class Replicas:
    """Jobs service replicas on one database, started and stopped at will."""

    def __init__(self, url: str, clock: FakeClock, runs: FakeRuns) -> None:
        self.url, self.clock, self.runs = url, clock, runs
        self.running: list[JobsService] = []

    async def start(self) -> JobsService:
        service = JobsService(Settings(service="jobs", listen_addr="", database_url=self.url), self.clock, self.runs)
        await service.start(ticking=False)
        self.running.append(service)
        return service

    async def stop(self, service: JobsService) -> None:
        self.running.remove(service)
        await service.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


@pytest.fixture
async def replicas(database_url: str, clock: FakeClock, runs: FakeRuns):
    replicas = Replicas(database_url, clock, runs)
    yield replicas
    for service in list(replicas.running):
        await replicas.stop(service)


def cron_job(cron: str, **fields) -> Job:
    return Job(project_id="default", name="Cron", slug=fields.pop("slug", "cron"),
               endpoint_url="https://example.test/hook", cron=cron, **fields)


def key(job: Job, at: str) -> str:
    return f"cron:{job.id}:{at}"


def test_ticks_are_computed_in_the_jobs_timezone() -> None:
    assert next_tick("0 9 * * *", "America/New_York", START) == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    assert next_tick("0 9 * * *", "America/New_York", datetime(2026, 7, 1, 12, tzinfo=UTC)) \
        == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)  # daylight saving time
    assert next_tick("*/5 * * * *", "UTC", START) == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert latest_tick("*/5 * * * *", "UTC", START) == START
    assert latest_tick("*/5 * * * *", "UTC", datetime(2026, 1, 1, 12, 9, 59, tzinfo=UTC)) \
        == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


async def test_a_cron_job_fires_once_per_tick_as_the_cron_service_account(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("*/5 * * * *"))
    assert await service.scheduler.tick() == 0
    clock.advance(299)
    assert await service.scheduler.tick() == 0
    clock.advance(1)
    assert await service.scheduler.tick() == 1
    assert await service.scheduler.tick() == 0
    clock.advance(299)
    assert await service.scheduler.tick() == 0
    clock.advance(1)
    assert await service.scheduler.tick() == 1
    assert runs.keys() == [key(job, "2026-01-01T12:05:00+00:00"), key(job, "2026-01-01T12:10:00+00:00")]
    principal = runs.triggers[0][0]
    assert principal == Principal(tenant_id="t-alice", project_id="default", subject_id="scheduler",
                                  subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="cron", scopes=["TRIGGER"])


async def test_a_cron_fires_at_the_local_time_of_its_timezone(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("0 9 * * *", timezone="Asia/Tokyo"))
    clock.advance(12 * 3600 - 1)  # 2026-01-01 23:59:59 UTC = 08:59:59 in Tokyo
    assert await service.scheduler.tick() == 0
    clock.advance(1)
    assert await service.scheduler.tick() == 1
    assert runs.keys() == [key(job, "2026-01-02T00:00:00+00:00")]


async def test_after_downtime_only_the_latest_missed_tick_fires_then_the_schedule_goes_on(
        replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("*/5 * * * *"))
    clock.advance(300)
    await service.scheduler.tick()
    await replicas.stop(service)
    clock.advance(3600 + 30)  # down for an hour: twelve ticks missed, now 13:05:30
    service = await replicas.start()
    assert await service.scheduler.tick() == 1
    assert await service.scheduler.tick() == 0
    clock.advance(270)  # 13:10:00
    assert await service.scheduler.tick() == 1
    assert runs.keys() == [key(job, "2026-01-01T12:05:00+00:00"), key(job, "2026-01-01T13:05:00+00:00"),
                           key(job, "2026-01-01T13:10:00+00:00")]


async def test_replicas_never_fire_a_tick_twice(replicas, clock, runs) -> None:
    first, second = await replicas.start(), await replicas.start()
    created = [await first.jobs.create(ALICE, cron_job("* * * * *", slug=f"job-{i}")) for i in range(5)]
    for _ in range(3):
        clock.advance(60)
        fired = [await first.scheduler.tick(), await second.scheduler.tick(),
                 await second.scheduler.tick(), await first.scheduler.tick()]
        assert sum(fired) == 5
    assert sorted(runs.keys()) == sorted(key(job, f"2026-01-01T12:0{m}:00+00:00") for job in created for m in (1, 2, 3))


async def test_disabling_enabling_and_editing_keep_the_schedule_in_step(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("0 * * * *"))
    assert (await service.store.schedule(job.id)).next_fire_at == datetime(2026, 1, 1, 13, tzinfo=UTC)
    await service.jobs.set_enabled(ALICE, [job.id], False)
    assert await service.store.schedule(job.id) is None
    clock.advance(3 * 3600)  # 15:00: disabled ticks never fire, not even on re-enabling
    assert await service.scheduler.tick() == 0
    await service.jobs.set_enabled(ALICE, [job.id], True)
    assert (await service.store.schedule(job.id)).next_fire_at == datetime(2026, 1, 1, 16, tzinfo=UTC)
    await service.jobs.update(ALICE, job.id, Job(cron="30 * * * *"), ["cron"])
    assert (await service.store.schedule(job.id)).next_fire_at == datetime(2026, 1, 1, 15, 30, tzinfo=UTC)
    clock.advance(1800)  # 15:30: due; a rename meanwhile keeps the due tick
    await service.jobs.update(ALICE, job.id, Job(name="Renamed"), ["name"])
    assert await service.scheduler.tick() == 1
    await service.jobs.update(ALICE, job.id, Job(cron=""), ["cron"])
    assert await service.store.schedule(job.id) is None
    clock.advance(3600)
    assert await service.scheduler.tick() == 0
    assert runs.keys() == [key(job, "2026-01-01T15:30:00+00:00")]


async def test_a_failed_fire_is_retried_with_the_same_key_and_a_refused_one_is_skipped(
        replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("*/5 * * * *"))
    clock.advance(300)
    runs.fail_with = DomainError("runs service unavailable")
    assert await service.scheduler.tick() == 0
    runs.fail_with = None
    assert await service.scheduler.tick() == 0  # backing off
    clock.advance(5)
    assert await service.scheduler.tick() == 1
    assert runs.keys() == [key(job, "2026-01-01T12:05:00+00:00")]
    clock.advance(295)
    runs.fail_with = InvalidArgument("job is disabled")
    assert await service.scheduler.tick() == 0
    runs.fail_with = None
    clock.advance(5)
    assert await service.scheduler.tick() == 0  # skipped for good; the next tick is 12:15
    assert (await service.store.schedule(job.id)).next_fire_at == datetime(2026, 1, 1, 12, 15, tzinfo=UTC)


async def test_deleting_a_job_drops_its_schedule(replicas, clock, runs) -> None:
    service = await replicas.start()
    job = await service.jobs.create(ALICE, cron_job("* * * * *"))
    await service.jobs.delete(ALICE, job.id)
    clock.advance(120)
    assert await service.scheduler.tick() == 0
    assert await service.store.schedule(job.id) is None
