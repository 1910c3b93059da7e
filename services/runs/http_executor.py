"""Executes endpoint jobs: POST the payload to the job's endpoint_url, measure each phase.

The same engine as device runs: claimed from the queue with a lease, accepted, ended
with an Outcome that the retry policy reads. Any 2xx is success and its JSON body the
result; a 4xx is final; timeouts, connection errors and 5xx are transient (they use
fallback_endpoint_url when the job has one, then the retry policy)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import httpx

from jobline.jobs.v1.jobs_pb2 import Job
from services.common.clock import Clock

from .domain import Outcome
from .engine import RunEngine
from .store import RunRow, RunStore

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 1024 * 1024
LEASE_SECS = 30


class HttpExecutor:
    def __init__(self, engine: RunEngine, store: RunStore, clock: Clock, replica_id: str,
                 concurrency: int = 256, client: httpx.AsyncClient | None = None) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.replica_id = replica_id
        self.concurrency = concurrency
        self.client = client or httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
        self._running: dict[str, asyncio.Task] = {}
        self._wakeup = asyncio.Event()
        engine.dispatchers.append(self)

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        if target_keys is None or "" in target_keys:
            self._wakeup.set()

    def stop_run(self, row: RunRow, force: bool = False) -> None:
        task = self._running.get(row.id)
        if task is not None:
            task.cancel()

    def heartbeats(self) -> dict[str, datetime]:
        """The runs this executor is calling out for right now, alive as of now."""
        now = self.clock.now()
        return {run_id: now for run_id in self._running}

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
            self._wakeup.clear()
            try:
                await self.dispatch()
            except Exception:
                log.exception("HTTP dispatch failed")

    async def dispatch(self) -> None:
        while (room := self.concurrency - len(self._running)) > 0:
            rows = await self.store.queued_for([""], room)
            if not rows:
                return
            now = self.clock.now()
            claimed = await self.store.claim([r.id for r in rows], self.replica_id, now,
                                             now + timedelta(seconds=LEASE_SECS))
            for row in rows:
                if row.id in claimed:
                    task = asyncio.create_task(self._execute(row))
                    self._running[row.id] = task
                    task.add_done_callback(lambda _, run_id=row.id: self._running.pop(run_id, None))
            if len(rows) < room:
                return

    async def _execute(self, row: RunRow) -> None:
        if not await self.engine.accept(row.id, row.attempt, row.timeout_secs):
            return
        job = Job.FromString(row.snapshot)
        outcome, result, timings = await self._call(job.endpoint_url, job, row)
        if outcome.retryable and outcome.status != "completed" and job.fallback_endpoint_url:
            outcome, result, timings = await self._call(job.fallback_endpoint_url, job, row)
        await self.engine.end_attempt(row.id, row.attempt, outcome, result=result, timings=timings)

    async def _call(self, url: str, job: Job, row: RunRow) -> tuple[Outcome, dict | None, dict[str, int]]:
        marks: dict[str, float] = {}

        async def trace(event: str, _info: dict) -> None:
            marks.setdefault(event, time.perf_counter())

        headers = {"X-Run-ID": row.id, "X-Job-ID": row.job_id, "X-Attempt": str(row.attempt)}
        start = time.perf_counter()
        try:
            response = await self.client.post(url, json=row.payload or {}, headers=headers,
                                               timeout=row.timeout_secs or None, extensions={"trace": trace})
        except httpx.TimeoutException:
            return Outcome("timed_out", f"no answer from {url} within {row.timeout_secs}s"), None, _timings(marks, start)
        except httpx.HTTPError as error:
            return Outcome("failed", f"{url}: {error.__class__.__name__}: {error}"), None, _timings(marks, start)
        timings = _timings(marks, start)
        if response.is_success:
            return Outcome("completed", exit_code=None), _result(response), timings
        error = f"{url} answered {response.status_code}"
        return Outcome("failed", error, retryable=response.status_code >= 500 or response.status_code == 429), \
            None, timings


def _timings(marks: dict[str, float], start: float) -> dict[str, int]:
    def ms(a: str, b: str) -> int:
        return int((marks[b] - marks[a]) * 1000) if a in marks and b in marks else 0

    end = max(marks.values(), default=start)
    return {
        "connect_ms": ms("connection.connect_tcp.started", "connection.connect_tcp.complete"),
        "ttfb_ms": ms("http11.send_request_headers.started", "http11.receive_response_headers.complete"),
        "transfer_ms": ms("http11.receive_response_headers.complete", "http11.receive_response_body.complete"),
        "dispatch_ms": int((end - start) * 1000),
    }


def _result(response: httpx.Response) -> dict:
    body = response.content[:MAX_RESULT_BYTES]
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {"body": body.decode("utf-8", errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
