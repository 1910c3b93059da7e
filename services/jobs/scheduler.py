"""Cron: the jobs service fires enabled jobs that have a `cron`, on time, in their `timezone`.

Each such job has one row in `jobs_schedules` holding `next_fire_at` (computed with croniter in
the job's timezone, stored in UTC). Creating, updating, enabling, disabling, cloning or deleting
a job keeps that row in step, in the same transaction as the job (a row whose cron and timezone
did not change keeps its pending tick).

`Scheduler.tick()` fires what is due: it leases due rows with a compare-and-set (on PostgreSQL,
read `FOR UPDATE SKIP LOCKED`), so of several replicas exactly one fires a given tick; it triggers
each as the job's tenant (subject "scheduler", named "cron", scope TRIGGER) with the idempotency key
`cron:{job_id}:{tick}` (tick in UTC ISO 8601), so a fire that is retried after a crash or a lost
answer never makes a second run; then it moves the row to the next tick. The triggers of a tick go in
one `RunService.TriggerJobs` call per tenant project (answered per request: one refused or failed
never holds back the others); a runs service without that RPC gets them as TriggerJob calls. A fire that fails for a transient reason keeps the tick due and is retried after
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

A tick leases every due row with one UPDATE ... RETURNING (a batch of BATCH at a time), fires the
batch's triggers (one call per tenant project, concurrently), then writes every outcome of the batch
in one transaction (one UPDATE per distinct next tick, so a hundred jobs on the same cron move on in
one statement).

The loop (`run()`) sleeps until PREPARE_SECS before the next claimable moment (the earliest
next_fire_at, or the end of a lease or backoff), then ticks with that lead: it leases the rows due
within it and builds their requests ahead, sleeps until their tick and only then sends them, so a run
is never made before its tick and the tick's work between the moment and the call is nothing. Stopped
while waiting, it hands the rows back at once (not at the end of their lease). A schedule added or re-timed in this process wakes it at once
(`JobStore.on_schedules_added`); one changed through another replica is seen within IDLE_SECS, the
longest sleep. Tests call `tick()` themselves with a FakeClock, or run the loop and `wake()` it
after moving the clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.runs.v1 import runs_pb2
from services.common.clock import Clock, as_utc
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.eventloop import wait_event
from services.common.principal import TRIGGER

from .peers import Runs
from .store import FireDone, JobStore, ScheduleRow

log = logging.getLogger(__name__)

IDLE_SECS = 5.0  # the longest sleep: how late a schedule added through another replica can be seen
MIN_PAUSE_SECS = 0.01  # a due row another replica is claiming right now: look again this soon
ERROR_PAUSE_SECS = 1.0
LEASE_SECS = 60.0
RETRY_SECS = 5.0
BATCH = 100  # schedules leased, and triggers in flight, at once
# The loop leases the rows of a tick this long before it and prepares their trigger requests, then sleeps
# until the tick and sends them (one TriggerJobs call per tenant project): runs are never made early.
PREPARE_SECS = 1.0
AHEAD_BATCHES = 10  # with the lead, batches leased before a tick (then fired at once, a call of BATCH each)
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


@functools.lru_cache(maxsize=BATCH)
def fire_moments(expression: str, timezone: str, due: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The tick to fire at `now` for a row due at `due` (the catch-up rule: only the latest tick at or
    before now, never earlier than the due one), and the tick after it. Cached: the rows of a batch on
    the same cron share one computation."""
    return max(as_utc(due), latest_tick(expression, timezone, now)), next_tick(expression, timezone, now)


def cron_principal(row: ScheduleRow) -> Principal:
    return Principal(tenant_id=row.tenant_id, project_id=row.project_id, subject_id="scheduler",
                     subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="cron", scopes=[TRIGGER])


def idempotency_key(job_id: str, tick: datetime) -> str:
    return f"cron:{job_id}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class Fired:
    """What became of one leased schedule's tick: moved on (`done`) or to be retried (`done` None)."""

    job_id: str
    fired: bool
    done: FireDone | None


class Scheduler:
    def __init__(self, store: JobStore, runs: Runs, clock: Clock, replica_id: str | None = None) -> None:
        self.store = store
        self.runs = runs
        self.clock = clock
        self.replica_id = replica_id or uuid.uuid4().hex
        self._woken = asyncio.Event()
        store.on_schedules_added(self.wake)

    def wake(self) -> None:
        """Ends the loop's current sleep: a schedule may be due sooner than it was sleeping for."""
        self._woken.set()

    async def tick(self, ahead: float = 0.0) -> int:
        """Fires every due schedule this replica can lease; returns how many fired. With `ahead` (seconds), it
        also leases and prepares those due within that time, and fires each at its tick, never before."""
        fired = 0
        while True:
            now = self.clock.now()
            rows: list[ScheduleRow] = []
            while True:  # with a lead, the batches of the coming tick are all leased before it (AHEAD_BATCHES)
                claimed = await self.store.claim_due(now, self.replica_id, now + timedelta(seconds=LEASE_SECS),
                                                     BATCH, due_by=now + timedelta(seconds=ahead))
                rows += claimed
                if len(claimed) < BATCH or not ahead or len(rows) >= AHEAD_BATCHES * BATCH:
                    break
            if rows:
                try:
                    outcomes = await self._fire_batch(rows, now)
                except asyncio.CancelledError:  # stopped (while waiting for the tick): hand the rows back now
                    await asyncio.shield(self.store.finish_fires(self.replica_id, [], [r.job_id for r in rows],
                                                                 self.clock.now()))
                    raise
                await self.store.finish_fires(self.replica_id, [o.done for o in outcomes if o.done is not None],
                                              [o.job_id for o in outcomes if o.done is None],
                                              self.clock.now() + timedelta(seconds=RETRY_SECS))
                fired += sum(o.fired for o in outcomes)
            if len(claimed) < BATCH:
                return fired

    async def _fire_batch(self, rows: list[ScheduleRow], now: datetime) -> list[Fired]:
        """Fires the leased rows, each at its moment (its tick, or now for one already due): those of a moment
        and tenant project in one TriggerJobs call (of at most BATCH); the moments and calls concurrently."""
        groups: dict[tuple[datetime, str, str], list[ScheduleRow]] = {}
        for row in rows:
            moment = max(now, as_utc(row.next_fire_at))
            groups.setdefault((moment, row.tenant_id, row.project_id), []).append(row)
        answers = await asyncio.gather(*(self._fire_group(moment, group[i:i + BATCH])
                                         for (moment, _, _), group in groups.items()
                                         for i in range(0, len(group), BATCH)))
        return [fired for answer in answers for fired in answer]

    async def _fire_group(self, moment: datetime, rows: list[ScheduleRow]) -> list[Fired]:
        """Prepares the rows' trigger requests, sleeps until `moment`, then sends them in one call."""
        prepared = [self._prepare(row, moment) for row in rows]
        await self._until(moment)
        try:
            answers = await self.runs.trigger_many(cron_principal(rows[0]), [request for _, request, _ in prepared])
        except (DomainError, OSError, asyncio.TimeoutError) as error:
            answers = [error] * len(rows)
        return [self._outcome(row, tick, answer, done)
                for row, (tick, _, done), answer in zip(rows, prepared, answers, strict=True)]

    async def _until(self, moment: datetime) -> None:
        """Sleeps until the clock reads `moment` (a FakeClock not moved: until it is)."""
        while (seconds := (moment - self.clock.now()).total_seconds()) > 0:
            await asyncio.sleep(seconds)

    def _prepare(self, row: ScheduleRow, at: datetime) -> tuple[datetime, runs_pb2.TriggerJobRequest, FireDone]:
        """The tick `row` fires at `at` (the catch-up rule), its trigger request, and how the row moves on."""
        tick, following = fire_moments(row.cron, row.timezone, row.next_fire_at, at)
        ends: dict[str, int | str] = {}
        if row.trigger_request is not None:  # a schedule that carries its own trigger request
            done = bool(row.max_iteration and row.iteration + 1 >= row.max_iteration) or \
                (row.end_time is not None and following > as_utc(row.end_time))
            ends = {"iteration": row.iteration + 1, **({"state": "finished"} if done else {})}
            request = runs_pb2.TriggerJobRequest.FromString(row.trigger_request)
            request.idempotency_key = idempotency_key(row.job_id, tick)
            if request.HasField("job_invocation") and not ends.get("state"):
                request.job_invocation.next_occurrence.FromDatetime(following)
        else:
            request = runs_pb2.TriggerJobRequest(job_id=row.job_id, idempotency_key=idempotency_key(row.job_id, tick))
        return tick, request, FireDone(row.job_id, row.next_fire_at, tick, following, tuple(sorted(ends.items())))

    @staticmethod
    def _outcome(row: ScheduleRow, tick: datetime, answer: runs_pb2.Run | BaseException, done: FireDone) -> Fired:
        if isinstance(answer, PERMANENT):
            log.warning("cron tick %s of job %s skipped: %s", tick.isoformat(), row.job_id, answer.message)
            return Fired(row.job_id, False, done)
        if isinstance(answer, BaseException):
            log.warning("cron tick %s of job %s failed, retrying: %s", tick.isoformat(), row.job_id, answer)
            return Fired(row.job_id, False, None)
        return Fired(row.job_id, True, done)

    async def seconds_until_due(self, ahead: float = 0.0) -> float:
        """How long the loop may sleep: until the next claimable moment (`ahead` of a tick, for one not leased),
        at most IDLE_SECS."""
        now = self.clock.now()
        free, leased = await self.store.next_claimable(now)
        moments = ([as_utc(free) - timedelta(seconds=ahead)] if free is not None else []) + \
            ([as_utc(leased)] if leased is not None else [])
        if not moments:
            return IDLE_SECS
        seconds = (min(moments) - now).total_seconds()
        return min(IDLE_SECS, seconds if seconds > 0 else MIN_PAUSE_SECS)

    async def run(self) -> None:
        """Ticks, then sleeps until the next tick is due (or it is woken), until cancelled."""
        while True:
            self._woken.clear()  # before reading the schedules: a change from now on ends the sleep
            try:
                await self.tick(PREPARE_SECS)
                pause = await self.seconds_until_due(PREPARE_SECS)
            except Exception:
                log.exception("scheduler tick failed")
                pause = ERROR_PAUSE_SECS
            await wait_event(self._woken, pause)
