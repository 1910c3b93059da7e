"""A tick's triggers in one TriggerJobs call per tenant project, each answered on its own, and a tick
leased and prepared ahead of its moment but fired never before it (FakeClock; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from jobline.auth.v1.auth_pb2 import Principal
from jobline.runs.v1 import runs_pb2
from services.common.clock import as_utc
from services.common.errors import DomainError, InvalidArgument
from services.common.principal import ADMIN
from services.jobs.scheduler import LEASE_SECS, PREPARE_SECS, RETRY_SECS

from .fakes import FakeRuns
from .test_scheduler import ALICE, START, Replicas, clock, cron_job, key, replicas, runs  # noqa: F401

BOB = Principal(tenant_id="t-bob", project_id="default", subject_id="u2", subject_name="bob", scopes=[ADMIN])


def waiting_for_the_tick(scheduler) -> asyncio.Event:
    """Set once the scheduler has leased and prepared a tick's rows and waits for its moment."""
    waiting = asyncio.Event()
    original = scheduler._until

    async def until(moment):
        waiting.set()
        await original(moment)

    scheduler._until = until
    return waiting


class BatchRuns(FakeRuns):
    """FakeRuns noting every trigger_many call (its principal and request count); refuses or fails the jobs
    named in `refuse` / `fail` only."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Principal, int]] = []
        self.refuse: set[str] = set()
        self.fail: set[str] = set()

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run:
        if job_id in self.refuse:
            raise InvalidArgument(f"job {job_id} is disabled")
        if job_id in self.fail:
            raise DomainError("runs service overloaded")
        return await super().trigger(principal, job_id, idempotency_key)

    async def trigger_many(self, principal: Principal, requests: list[runs_pb2.TriggerJobRequest]):
        self.calls.append((principal, len(requests)))
        return await super().trigger_many(principal, requests)


async def test_a_tick_is_one_call_per_tenant_project_and_each_job_is_answered_on_its_own(replicas, clock) -> None:
    batch = BatchRuns()
    replicas.runs = batch
    service = await replicas.start()
    alices = await service.jobs.batch_create(ALICE, [cron_job("* * * * *", slug=f"a-{i}") for i in range(30)])
    bobs = await service.jobs.batch_create(BOB, [cron_job("* * * * *", slug=f"b-{i}") for i in range(5)])
    refused, failed = alices[0], alices[1]
    batch.refuse, batch.fail = {refused.id}, {failed.id}
    clock.advance(60)
    assert await service.scheduler.tick() == 33
    assert sorted((p.tenant_id, p.subject_name, n) for p, n in batch.calls) == [("t-alice", "cron", 30),
                                                                                ("t-bob", "cron", 5)]
    tick = "2026-01-01T12:01:00+00:00"
    assert sorted(batch.keys()) == sorted(key(job, tick) for job in [*alices[2:], *bobs])
    refused_row = await service.store.schedule(refused.id)  # refused for good: skipped
    assert as_utc(refused_row.next_fire_at) == START + timedelta(seconds=120)
    failed_row = await service.store.schedule(failed.id)  # failed: the same tick again after the backoff
    assert as_utc(failed_row.next_fire_at) == START + timedelta(seconds=60)
    batch.fail = set()
    clock.advance(RETRY_SECS)
    assert await service.scheduler.tick() == 1
    assert batch.keys(failed.id) == [key(failed, tick)]


async def test_a_tick_is_leased_ahead_of_its_moment_and_fired_not_before_it(replicas, clock, runs) -> None:
    first, second = await replicas.start(), await replicas.start()
    job = await first.jobs.create(ALICE, cron_job("* * * * *"))
    clock.advance(60 - PREPARE_SECS / 2)  # 12:00:59.5, the tick half the lead away
    waiting = waiting_for_the_tick(first.scheduler)
    ticking = asyncio.create_task(first.scheduler.tick(PREPARE_SECS))
    await asyncio.wait_for(waiting.wait(), 30)
    assert not ticking.done() and not runs.triggers  # leased and prepared, waiting for the tick
    assert await second.scheduler.tick(PREPARE_SECS) == 0  # the other replica finds it leased
    assert await second.scheduler.seconds_until_due(PREPARE_SECS) > PREPARE_SECS  # until the lease ends
    clock.advance(PREPARE_SECS / 2)  # 12:01:00
    assert await ticking == 1
    assert runs.keys() == [key(job, "2026-01-01T12:01:00+00:00")]
    assert await second.scheduler.tick(PREPARE_SECS) == 0 and await first.scheduler.tick() == 0


async def test_the_loop_wakes_ahead_of_a_tick_by_the_lead(replicas, clock, runs) -> None:
    service = await replicas.start()
    await service.jobs.create(ALICE, cron_job("* * * * *"))
    clock.advance(57)  # 12:00:57
    assert await service.scheduler.seconds_until_due() == 3.0
    assert await service.scheduler.seconds_until_due(PREPARE_SECS) == 3.0 - PREPARE_SECS


async def test_stopped_while_waiting_for_a_tick_it_hands_the_rows_back_at_once(replicas, clock, runs) -> None:
    first, second = await replicas.start(), await replicas.start()
    job = await first.jobs.create(ALICE, cron_job("* * * * *"))
    clock.advance(60 - PREPARE_SECS / 2)
    waiting = waiting_for_the_tick(first.scheduler)
    ticking = asyncio.create_task(first.scheduler.tick(PREPARE_SECS))
    await asyncio.wait_for(waiting.wait(), 30)
    assert (await first.store.schedule(job.id)).lease_owner == first.scheduler.replica_id
    ticking.cancel()
    await asyncio.gather(ticking, return_exceptions=True)
    row = await first.store.schedule(job.id)
    assert row.lease_owner == "" and as_utc(row.lease_until) <= clock.now() < START + timedelta(seconds=LEASE_SECS)
    clock.advance(PREPARE_SECS / 2)
    assert await second.scheduler.tick() == 1  # not a lease's length later
    assert runs.keys() == [key(job, "2026-01-01T12:01:00+00:00")]


async def test_with_the_lead_every_batch_of_a_tick_is_leased_before_it_and_sent_at_once(replicas, clock) -> None:
    batch = BatchRuns()
    replicas.runs = batch
    service = await replicas.start()
    jobs = [job for part in range(5) for job in await service.jobs.batch_create(
        ALICE, [cron_job("* * * * *", slug=f"j-{part}-{i}") for i in range(50)])]
    clock.advance(60 - PREPARE_SECS / 2)
    waiting = waiting_for_the_tick(service.scheduler)
    ticking = asyncio.create_task(service.scheduler.tick(PREPARE_SECS))
    await asyncio.wait_for(waiting.wait(), 30)
    assert not batch.calls
    owners = {(await service.store.schedule(job.id)).lease_owner for job in jobs}
    assert owners == {service.scheduler.replica_id}  # all three batches leased ahead of the tick
    clock.advance(PREPARE_SECS / 2)
    assert await ticking == 250
    assert sorted(n for _, n in batch.calls) == [50, 100, 100]
    assert sorted(batch.keys()) == sorted(key(job, "2026-01-01T12:01:00+00:00") for job in jobs)
