"""The run engine: triggering, reading and canceling runs, and every state change of
an attempt after it started. Timers (delayed runs, retries, heartbeat deadlines) are
rows, advanced by `tick()` against the injectable clock."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf.json_format import MessageToDict

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1.devices_pb2 import DeviceTargets
from jobline.jobs.v1.jobs_pb2 import Job
from jobline.runs.v1 import runs_pb2
from services.common.clock import Clock
from services.common.errors import Conflict, InvalidArgument, NotFound
from services.common.principal import READ, TRIGGER, WRITE, require_scope

from . import domain
from .mapping import chunk_message, run_message, status_word
from .peers import Peers
from .store import ACTIVE, ON_DEVICE, TERMINAL, RunRow, RunStore

log = logging.getLogger(__name__)

MAX_LIST = 1000


class Dispatcher(Protocol):
    """Whoever delivers runs to where they execute: the agent hub (devices) or the HTTP executor."""

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        """Queued runs for these targets (all, for None) may be ready: dispatch them."""

    def stop_run(self, row: RunRow, force: bool = False) -> None:
        """Stops the run where it executes, if it executes here."""


def target_key(tenant_id: str, device_id: str) -> str:
    return f"{tenant_id}/{device_id}"


class RunEngine:
    def __init__(self, store: RunStore, peers: Peers, clock: Clock, heartbeat_timeout_secs: float = 30.0) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock
        self.heartbeat_timeout = timedelta(seconds=heartbeat_timeout_secs)
        self.dispatchers: list[Dispatcher] = []

    # -- the API ---------------------------------------------------------------------------

    async def trigger(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run:
        require_scope(principal, TRIGGER)
        job = await self.peers.job(principal, request.job_id)
        if not job.enabled:
            raise InvalidArgument(f"job {job.id} is disabled")
        payload = MessageToDict(request.payload) if request.HasField("payload") else {}
        now = self.clock.now()
        scheduled = request.scheduled_at.ToDatetime(tzinfo=UTC) if request.HasField("scheduled_at") else None
        status = "delayed" if scheduled and scheduled > now else "queued"
        invocation_id = str(uuid.uuid4())

        def new_run(device_id: str = "", command: str = "") -> RunRow:
            return RunRow(
                id=str(uuid.uuid4()), tenant_id=principal.tenant_id, project_id=job.project_id, job_id=job.id,
                job_version=job.version, job_version_id=job.version_id, invocation_id=invocation_id,
                target_key=target_key(principal.tenant_id, device_id) if device_id else "", device_id=device_id,
                status=status, max_attempts=job.max_attempts or 1, priority=request.priority, command=command,
                timeout_secs=job.timeout_secs, payload=payload, metadata_={**job.default_run_metadata, **request.metadata},
                snapshot=job.SerializeToString(), triggered_by="manual",
                created_by=principal.subject_name or principal.subject_id,
                idempotency_key=request.idempotency_key, created_at=now, scheduled_at=scheduled or now,
                expires_at=now + timedelta(seconds=job.run_ttl_secs) if job.run_ttl_secs else None,
            )

        if job.command:
            command = domain.render_command(job.command, domain.inputs_for(job, payload))
            devices = await self._targets(principal, job, list(request.device_ids))
            rows = [new_run(device_id, command) for device_id in devices]
        else:
            rows = [new_run()]
        if request.dry_run:
            return run_message(rows[0])
        await self.store.insert_runs(rows)
        if status == "queued":
            self._wake({row.target_key for row in rows})
        return run_message(rows[0])

    async def _targets(self, principal: Principal, job: Job, device_ids: list[str]) -> list[str]:
        targets = DeviceTargets(device_ids=device_ids) if device_ids else job.targets
        resolved = await self.peers.resolve(principal, targets)
        if resolved.missing_device_ids:
            raise NotFound(f"device {resolved.missing_device_ids[0]} not found")
        if not resolved.devices:
            raise InvalidArgument("the job has no target devices")
        return [device.id for device in resolved.devices]

    async def _row(self, principal: Principal, run_id: str) -> RunRow:
        row = await self.store.get(principal.tenant_id, run_id)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return row

    async def get(self, principal: Principal, run_id: str) -> runs_pb2.Run:
        require_scope(principal, READ)
        return run_message(await self._row(principal, run_id))

    async def list(self, principal: Principal, request: runs_pb2.ListRunsRequest) -> runs_pb2.ListRunsResponse:
        require_scope(principal, READ)
        limit = request.limit or 50
        if not 1 <= limit <= MAX_LIST:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST}")
        try:
            before = datetime.fromisoformat(request.cursor.replace("Z", "+00:00")) if request.cursor else None
        except ValueError:
            raise InvalidArgument("cursor must be an RFC 3339 timestamp") from None
        rows = await self.store.list(
            principal.tenant_id, project_id=request.project_id,
            status=status_word(request.status) if request.status else "", job_id=request.job_id,
            invocation_id=request.invocation_id, triggered_by=request.triggered_by, before=before, limit=limit,
        )
        next_cursor = rows[-1].created_at.isoformat() if len(rows) == limit else ""
        return runs_pb2.ListRunsResponse(runs=[run_message(r) for r in rows], next_cursor=next_cursor)

    async def cancel(self, principal: Principal, run_id: str) -> runs_pb2.Run:
        require_scope(principal, WRITE)
        row = await self._row(principal, run_id)
        if row.status in TERMINAL:
            raise Conflict(f"run {run_id} is already {row.status}")
        now = self.clock.now()
        if not await self.store.transition(row.id, row.attempt, ACTIVE, status="canceled", finished_at=now,
                                           error="canceled"):
            raise Conflict(f"run {run_id} finished before it could be canceled")
        if row.status in ON_DEVICE:
            self._stop_where_it_runs(row)
        return run_message(await self._row(principal, run_id))

    async def count_active(self, principal: Principal, job_id: str) -> int:
        return await self.store.count_active(principal.tenant_id, job_id)

    async def logs(self, principal: Principal, run_id: str, after: int) -> runs_pb2.ListRunLogsResponse:
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        chunks = await self.store.chunks(row.id, after=after)
        latest = b"".join(c.data for c in chunks if c.attempt == row.attempt)
        return runs_pb2.ListRunLogsResponse(
            chunks=[chunk_message(c) for c in chunks], text=latest.decode("utf-8", errors="replace")
        )

    # -- an attempt's life ---------------------------------------------------------------

    async def accept(self, run_id: str, attempt: int) -> bool:
        now = self.clock.now()
        return await self.store.transition(
            run_id, attempt, ("dequeued",), status="executing", started_at=now, heartbeat_at=now,
            lease_expires_at=None,
        )

    async def end_attempt(self, run_id: str, attempt: int, outcome: domain.Outcome,
                          result: dict | None = None, timings: dict[str, int] | None = None) -> bool:
        """Records how an attempt ended: final status, or a retry per the job's policy."""
        row = await self.store.get_any(run_id)
        if row is None or row.attempt != attempt or row.status not in ON_DEVICE + ("queued",):
            return False
        now = self.clock.now()
        trace = {**_trace(row, now), **(timings or {})}
        if outcome.status == "completed":
            step = domain.NextStep("completed")
        else:
            step = domain.after_failure(Job.FromString(row.snapshot), outcome, attempt, row.max_attempts, now)
        values: dict = dict(error=outcome.error, exit_code=outcome.exit_code, trace=trace, lease_owner="",
                            lease_expires_at=None, result=result)
        if step.retry_at is not None:
            values.update(status="delayed", attempt=attempt + 1, scheduled_at=step.retry_at,
                          next_retry_at=step.retry_at, dequeued_at=None, heartbeat_at=None)
        else:
            values.update(status=step.status, finished_at=now)
        changed = await self.store.transition(run_id, attempt, (row.status,), **values)
        if changed:
            log.info("run %s attempt %d ended %s -> %s", run_id, attempt, outcome.status, values["status"])
        return changed

    async def requeue(self, run_id: str, attempt: int) -> bool:
        """Puts a run that was handed out but never accepted back in the queue, same attempt."""
        return await self.store.transition(run_id, attempt, ("dequeued",), status="queued", lease_owner="",
                                           lease_expires_at=None, dequeued_at=None)

    async def tick(self, heartbeats: dict[str, datetime] | None = None) -> None:
        """Advances every timer that is due: heartbeats, delayed runs, leases, silent runs."""
        now = self.clock.now()
        if heartbeats:
            await self.store.touch_heartbeats(list(heartbeats), now)
        due = await self.store.due_delayed(now)
        if due:
            await self.store.promote([row.id for row in due])
            self._wake({row.target_key for row in due})
        for row in await self.store.stale(now, now - self.heartbeat_timeout):
            if row.status == "dequeued":
                await self.requeue(row.id, row.attempt)
                continue
            if await self.end_attempt(row.id, row.attempt, domain.Outcome("crashed", "heartbeat lost")):
                self._stop_where_it_runs(row, force=True)

    def _wake(self, target_keys: set[str] | None = None) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake(target_keys)

    def _stop_where_it_runs(self, row: RunRow, force: bool = False) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.stop_run(row, force)


def _trace(row: RunRow, now: datetime) -> dict[str, int]:
    def ms(start: datetime | None, end: datetime | None) -> int:
        return int((end - start).total_seconds() * 1000) if start and end else 0

    queued_since = row.scheduled_at or row.created_at
    return {
        "queue_wait_ms": ms(queued_since, row.dequeued_at),
        "dispatch_ms": ms(row.dequeued_at, row.started_at),
        "total_ms": ms(row.created_at, now),
    }
