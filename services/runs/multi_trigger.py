"""TriggerJobs: many TriggerJob requests, of any jobs, in one call — the cron scheduler's tick.

One call to the jobs service fetches every job with its dependencies (BatchGetJobSnapshots); each
request's runs are then made by TriggerJob's own code (RunEngine._checked_payload, _new_runs), and the
runs of all of them are
stored in one insert (`RunStore.insert_runs`, so one group commit). Each request is answered on its
own: a refusal (job gone or disabled, invalid payload, no target devices) is that request's answer
and never fails the others.

Idempotency is optimistic: a cron tick's key is new on its first fire, so the keys are not read
first; the unique index on (tenant, job, idempotency key) refuses the insert when a key was used
already (a retried tick), and then every request of that insert goes through TriggerJob's own path,
which answers the run the key made. Requests that need more than the common case (a job invocation's
occurrence, a pinned version, a name, a parent run, a dry run, a job with a dedup window) take that
path from the start, concurrently, with the jobs already fetched in the cache it reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from jobline.auth.v1.auth_pb2 import Principal
from jobline.jobs.v1.jobs_pb2 import Job, JobDependency
from jobline.runs.v1 import runs_pb2
from services.common.errors import DomainError, InvalidArgument, NotFound
from services.common.principal import TRIGGER, require_scope

from .mapping import run_message
from .store import IntegrityError, RunRow

if TYPE_CHECKING:
    from .engine import RunEngine

log = logging.getLogger(__name__)

MAX_REQUESTS = 1000  # requests one TriggerJobs call may carry

Outcome = runs_pb2.Run | DomainError


def _common(request: runs_pb2.TriggerJobRequest) -> bool:
    """Whether the request asks only for what the batched path does (else TriggerJob's own path)."""
    return not (request.HasField("job_invocation") or request.job_version_id or request.name
                or request.parent_run_id or request.dry_run)


async def trigger_many(engine: RunEngine, principal: Principal,
                       requests: Sequence[runs_pb2.TriggerJobRequest]) -> list[Outcome]:
    """Each request's run (or idempotency hit), or the DomainError that refused it, in request order."""
    require_scope(principal, TRIGGER)
    if len(requests) > MAX_REQUESTS:
        raise InvalidArgument(f"at most {MAX_REQUESTS} requests per call")
    outcomes: list[Outcome | None] = [None] * len(requests)
    job_ids = list(dict.fromkeys(r.job_id for r in requests if r.job_id))
    fetched = await engine.peers.jobs_with_dependencies(principal, job_ids) if job_ids else {}
    now = engine.clock.now()
    slow: list[int] = []
    preparing: dict[int, asyncio.Future[list[RunRow]]] = {}
    for index, request in enumerate(requests):
        found = fetched.get(request.job_id) if fetched is not None else None
        if fetched is None or not _common(request) or (found is not None and found[0].dedup_window_secs):
            slow.append(index)
        else:
            preparing[index] = asyncio.ensure_future(_runs_of(engine, principal, request, found, now))
    slow_task = asyncio.ensure_future(_each(engine, principal, requests, slow))  # meanwhile
    batched: list[int] = []  # the requests whose runs go in the one insert
    rows_of: dict[int, list[RunRow]] = {}
    for index, preparation in preparing.items():
        try:
            rows_of[index] = await preparation
            batched.append(index)
        except DomainError as error:
            outcomes[index] = error
        except Exception:
            log.exception("trigger of job %s failed", requests[index].job_id)
            outcomes[index] = DomainError("internal error")
    stored, slowed = await asyncio.gather(_store(engine, principal, requests, batched, rows_of), slow_task,
                                          return_exceptions=True)
    if isinstance(stored, BaseException):  # the insert failed as a whole (not a key or name taken): so does the call
        raise stored
    if isinstance(slowed, BaseException):
        raise slowed
    for index, outcome in [*zip(batched, stored, strict=True), *zip(slow, slowed, strict=True)]:
        outcomes[index] = outcome
    return [outcome if outcome is not None else DomainError("not triggered") for outcome in outcomes]


async def _runs_of(engine: RunEngine, principal: Principal, request: runs_pb2.TriggerJobRequest,
                   found: tuple[Job, list[JobDependency]] | None, now: datetime) -> list[RunRow]:
    """The request's runs as TriggerJob makes them, from the job the batch fetched (its dependencies are in
    the cache that fetch filled)."""
    from .engine import _request_digest  # the engine imports this module lazily, in turn

    if found is None:
        raise NotFound(f"job {request.job_id} not found")
    job = found[0]
    if job.HasField("enabled") and not job.enabled:
        raise InvalidArgument(f"job {job.id} is disabled")
    payload = engine._checked_payload(job, request)
    return await engine._new_runs(principal, request, job, payload, _request_digest(request, payload), now)


async def _store(engine: RunEngine, principal: Principal, requests: Sequence[runs_pb2.TriggerJobRequest],
                 batched: list[int], rows_of: dict[int, list[RunRow]]) -> list[Outcome]:
    """The runs of the batched requests in one insert; when a key or a generated name was taken already (a
    retried tick), each of those requests through TriggerJob's own path instead."""
    rows = [row for index in batched for row in rows_of[index]]
    try:
        await engine._store_runs(rows)
    except IntegrityError:
        return await _each(engine, principal, requests, batched)
    engine._wake({row.target_key for row in rows if row.status == "queued"})
    return [run_message(rows_of[index][0]) for index in batched]


async def _each(engine: RunEngine, principal: Principal, requests: Sequence[runs_pb2.TriggerJobRequest],
                indexes: list[int]) -> list[Outcome]:
    """These requests through TriggerJob's own path, concurrently, each answered on its own."""
    async def one(request: runs_pb2.TriggerJobRequest) -> Outcome:
        try:
            return await engine.trigger(principal, request)
        except DomainError as error:
            return error
        except Exception:
            log.exception("trigger of job %s failed", request.job_id)
            return DomainError("internal error")

    return list(await asyncio.gather(*(one(requests[i]) for i in indexes)))

