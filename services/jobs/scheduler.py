"""Cron: the jobs service fires enabled jobs that have a `cron`, on time, in their `timezone`.

Each such job has one row in `jobs_schedules` holding `next_fire_at` (computed with croniter in
the job's timezone, stored in UTC). Creating, updating, enabling, disabling, cloning or deleting
a job keeps that row in step, in the same transaction as the job (a row whose cron and timezone
did not change keeps its pending tick).

`Scheduler.tick()` fires what is due: it leases due rows with a compare-and-set (on PostgreSQL,
read `FOR UPDATE SKIP LOCKED`), so of several replicas exactly one fires a given tick; it triggers
each through `RunService.TriggerJob` as the job's tenant (subject "scheduler", named "cron", scope
TRIGGER) with the idempotency key `cron:{job_id}:{tick}` (tick in UTC ISO 8601), so a fire that is
retried after a crash or a lost answer never makes a second run; then it moves the row to the next
tick. A fire that fails for a transient reason keeps the tick due and is retried after
RETRY_SECS; one the runs service refuses for good (job disabled, gone, no targets) is skipped.

Catch-up rule: after downtime (or when the runs service was unreachable across several ticks),
a job fires AT MOST ONE missed tick — the most recent one at or before now — and then continues
from the first tick after now. Every tick fires exactly once or (when missed by more than one)
not at all; never a burst of the backlog.

Schedules with their own trigger request (JobSchedule: a recurring job invocation of the runs
service) are rows of the same table, leased and fired the same way under the same catch-up rule,
with the key `cron:{schedule_id}:{tick}`; the scheduler sends their stored TriggerJobRequest (an
invocation's is told the next occurrence, if any), counts the iterations, and ends the schedule
(state "finished") once max_iteration ticks fired or the next tick would be after end_time.

The loop (`run()`) calls `tick()` every TICK_SECS with the injected clock; tests call `tick()`
themselves with a FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.runs.v1 import runs_pb2
from services.common.clock import Clock, as_utc
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.principal import TRIGGER

from .peers import Runs
from .store import JobStore, ScheduleRow

log = logging.getLogger(__name__)

TICK_SECS = 0.25
LEASE_SECS = 60.0
RETRY_SECS = 5.0
BATCH = 100
PARALLEL_FIRES = 8  # below the database pool size
# The runs service's answer that no retry will change: the tick is skipped.
PERMANENT = (InvalidArgument, NotFound, PermissionDenied, FailedPrecondition)


def is_valid_cron(expression: str) -> bool:
    return len(expression.split()) == 5 and croniter.is_valid(expression)


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`, in UTC."""
    local = after.astimezone(ZoneInfo(timezone or "UTC"))
    return croniter(expression, local).get_next(datetime).astimezone(UTC)


def latest_tick(expression: str, timezone: str, at: datetime) -> datetime:
    """The most recent tick at or before `at`, in UTC."""
    local = at.astimezone(ZoneInfo(timezone or "UTC"))
    previous = croniter(expression, local).get_prev(datetime)
    following = croniter(expression, previous).get_next(datetime)
    return (following if following <= local else previous).astimezone(UTC)


def cron_principal(row: ScheduleRow) -> Principal:
    return Principal(tenant_id=row.tenant_id, project_id=row.project_id, subject_id="scheduler",
                     subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="cron", scopes=[TRIGGER])


def idempotency_key(job_id: str, tick: datetime) -> str:
    return f"cron:{job_id}:{tick.astimezone(UTC).isoformat()}"


class Scheduler:
    def __init__(self, store: JobStore, runs: Runs, clock: Clock, replica_id: str | None = None) -> None:
        self.store = store
        self.runs = runs
        self.clock = clock
        self.replica_id = replica_id or uuid.uuid4().hex
        self._parallel = asyncio.Semaphore(PARALLEL_FIRES)

    async def tick(self) -> int:
        """Fires every due schedule this replica can lease; returns how many fired."""
        fired = 0
        while True:
            now = self.clock.now()
            rows = await self.store.claim_due(now, self.replica_id, now + timedelta(seconds=LEASE_SECS), BATCH)
            # Concurrently: the whole batch finishes well within its lease even when the runs service is slow.
            fired += sum(await asyncio.gather(*(self._fire(row, now) for row in rows)))
            if len(rows) < BATCH:
                return fired

    async def _fire(self, row: ScheduleRow, now: datetime) -> int:
        async with self._parallel:
            return await self._fire_one(row, now)

    async def _fire_one(self, row: ScheduleRow, now: datetime) -> int:
        # The catch-up rule: only the latest tick at or before now (never earlier than the due one).
        tick = max(as_utc(row.next_fire_at), latest_tick(row.cron, row.timezone, now))
        following = next_tick(row.cron, row.timezone, now)
        ends = {}
        if row.trigger_request is not None:  # a schedule that carries its own trigger request
            done = bool(row.max_iteration and row.iteration + 1 >= row.max_iteration) or \
                (row.end_time is not None and following > as_utc(row.end_time))
            ends = {"iteration": row.iteration + 1, **({"state": "finished"} if done else {})}
        try:
            if row.trigger_request is not None:
                request = runs_pb2.TriggerJobRequest.FromString(row.trigger_request)
                request.idempotency_key = idempotency_key(row.job_id, tick)
                if request.HasField("job_invocation") and not ends.get("state"):
                    request.job_invocation.next_occurrence.FromDatetime(following)
                await self.runs.trigger_request(cron_principal(row), request)
            else:
                await self.runs.trigger(cron_principal(row), row.job_id, idempotency_key(row.job_id, tick))
        except PERMANENT as error:
            log.warning("cron tick %s of job %s skipped: %s", tick.isoformat(), row.job_id, error.message)
            fired = 0
        except (DomainError, OSError, asyncio.TimeoutError) as error:
            log.warning("cron tick %s of job %s failed, retrying: %s", tick.isoformat(), row.job_id, error)
            await self.store.retry_later(row, self.replica_id, now + timedelta(seconds=RETRY_SECS))
            return 0
        else:
            fired = 1
        await self.store.complete_fire(row, self.replica_id, tick, following, **ends)
        return fired

    async def run(self) -> None:
        """Ticks every TICK_SECS until cancelled."""
        while True:
            await asyncio.sleep(TICK_SECS)
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
