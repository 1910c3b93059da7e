"""The scheduler's loop and its batches: it sleeps until the next claimable moment (woken early by a
schedule added in this process), claims and moves on a whole batch in a statement each, and fires the
batch's triggers concurrently (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from jobline.auth.v1.auth_pb2 import Principal
from jobline.jobs.v1.jobs_pb2 import Job
from jobline.runs.v1 import runs_pb2
from services.common.clock import Clock
from services.common.errors import DomainError
from services.jobs.scheduler import IDLE_SECS, LEASE_SECS, RETRY_SECS, Scheduler

from .fakes import FakeRuns
from .test_scheduler import ALICE, START, Replicas, clock, cron_job, key, replicas, runs  # noqa: F401


class ShiftedClock(Clock):
    """The real clock moved so that it reads `at` now: it runs at real speed (the loop really sleeps)."""

    def __init__(self, at: datetime) -> None:
        self.shift_to(at)

    def shift_to(self, at: datetime) -> None:
        self._offset = at - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class TimedRuns(FakeRuns):
    """FakeRuns noting the clock's time of every trigger call and how many were in flight at once."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.called_at: list[datetime] = []
        self.in_flight = self.most_in_flight = 0

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run:
        self.called_at.append(self.clock.now())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().trigger(principal, job_id, idempotency_key)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def looping(scheduler: Scheduler):
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(condition, bound: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + bound
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.005)


async def test_the_loop_sleeps_until_the_tick_and_fires_on_time(database_url) -> None:
    clock = ShiftedClock(START - timedelta(seconds=30))
    runs = TimedRuns(clock)
    replicas = Replicas(database_url, clock, runs)
    service = await replicas.start()
    try:
        job = await service.jobs.create(ALICE, cron_job("* * * * *"))
        clock.shift_to(START - timedelta(seconds=0.3))  # 11:59:59.7, the tick 0.3 s away
        async with looping(service.scheduler):
            await eventually(lambda: runs.triggers)
        assert runs.keys() == [key(job, "2026-01-01T12:00:00+00:00")]
        assert START <= runs.called_at[0] < START + timedelta(seconds=1)  # never early; not a poll late
    finally:
        await replicas.stop(service)


async def test_a_sleeping_loop_is_woken_when_a_schedule_is_added_and_by_wake(replicas, clock, runs) -> None:
    service = await replicas.start()
    scheduler = service.scheduler
    async with looping(scheduler):
        await asyncio.sleep(0.05)  # asleep: no schedule, for IDLE_SECS
        assert not scheduler._woken.is_set()
        job = await service.jobs.create(ALICE, cron_job("* * * * *"))
        assert scheduler._woken.is_set()  # the creation ended the sleep: the loop looks at the new tick
        await eventually(lambda: not scheduler._woken.is_set())
        clock.advance(60)  # the tick is due; the loop sleeps on the real clock until woken
        scheduler.wake()
        await eventually(lambda: runs.triggers)
    assert runs.keys() == [key(job, "2026-01-01T12:01:00+00:00")]


async def test_schedule_changes_that_can_bring_a_tick_closer_wake_the_scheduler(replicas, clock, runs) -> None:
    service = await replicas.start()
    wakes: list[int] = []
    service.store.on_schedules_added(lambda: wakes.append(1))
    job = await service.jobs.create(ALICE, cron_job("0 * * * *"))
    plain = await service.jobs.create(ALICE, Job(project_id="default", name="Plain", slug="plain",
                                                 endpoint_url="https://example.test/hook"))
    assert len(wakes) == 1  # the job without a cron has no schedule
    await service.jobs.update(ALICE, job.id, Job(cron="*/5 * * * *"), ["cron"])
    await service.jobs.set_enabled(ALICE, [job.id], False)
    await service.jobs.set_enabled(ALICE, [job.id], True)
    assert len(wakes) == 3
    await service.jobs.update(ALICE, plain.id, Job(name="Renamed"), ["name"])
    assert len(wakes) == 3


async def test_the_next_claimable_moment_is_the_earliest_tick_or_the_end_of_a_lease(replicas, clock, runs) -> None:
    service = await replicas.start()
    assert await service.store.next_due() is None
    assert await service.scheduler.seconds_until_due() == IDLE_SECS
    await service.jobs.create(ALICE, cron_job("*/5 * * * *", slug="five"))
    await service.jobs.create(ALICE, cron_job("0 * * * *", slug="hourly"))
    assert await service.store.next_due() == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    clock.advance(298)
    assert await service.scheduler.seconds_until_due() == 2.0
    clock.advance(2)
    runs.fail_with = DomainError("runs service unavailable")
    assert await service.scheduler.tick() == 0  # backing off: claimable again after RETRY_SECS
    assert await service.store.next_due() == clock.now() + timedelta(seconds=RETRY_SECS)
    runs.fail_with = None
    clock.advance(RETRY_SECS)
    assert await service.scheduler.tick() == 1
    assert await service.store.next_due() == datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    ten = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    lease_end = ten + timedelta(seconds=LEASE_SECS)
    assert len(await service.store.claim_due(ten, "another-replica", lease_end, 10)) == 1
    assert await service.store.next_due() == lease_end  # its tick is being fired: claimable if the lease ends


async def test_a_batch_is_claimed_and_moved_on_in_one_statement_each(replicas, clock, runs) -> None:
    service = await replicas.start()
    for i in range(30):
        await service.jobs.create(ALICE, cron_job("* * * * *", slug=f"job-{i}"))
    updates: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(service.db.engine.sync_engine, "before_cursor_execute", note)
    clock.advance(60)
    assert await service.scheduler.tick() == 30
    assert len(updates) == 2  # the claim, and every schedule moved on to 12:02
    assert {(await service.store.schedule(job_id)).next_fire_at for job_id in {t[1] for t in runs.triggers}} \
        in ({datetime(2026, 1, 1, 12, 2)}, {datetime(2026, 1, 1, 12, 2, tzinfo=UTC)})


async def test_a_batch_fires_concurrently_and_more_than_a_batch_fires_in_one_tick(replicas, clock) -> None:
    timed = TimedRuns(clock)
    replicas.runs = timed
    service = await replicas.start()
    jobs = [*await service.jobs.batch_create(ALICE, [cron_job("* * * * *", slug=f"a-{i}") for i in range(100)]),
            *await service.jobs.batch_create(ALICE, [cron_job("* * * * *", slug=f"b-{i}") for i in range(20)])]
    clock.advance(60)
    assert await service.scheduler.tick() == 120  # a batch of 100, then one of 20
    assert timed.most_in_flight == 100
    assert sorted(timed.keys()) == sorted(key(job, "2026-01-01T12:01:00+00:00") for job in jobs)


async def test_replicas_ticking_at_the_same_moment_never_fire_a_tick_twice(replicas, clock, runs) -> None:
    first, second = await replicas.start(), await replicas.start()
    created = [await first.jobs.create(ALICE, cron_job("* * * * *", slug=f"job-{i}")) for i in range(20)]
    for _ in range(2):
        clock.advance(60)
        assert sum(await asyncio.gather(first.scheduler.tick(), second.scheduler.tick())) == 20
    assert sorted(runs.keys()) == sorted(key(job, f"2026-01-01T12:0{m}:00+00:00") for job in created for m in (1, 2))
