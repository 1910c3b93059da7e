"""Executes endpoint jobs: POST the payload to the job's endpoint_url, measure each phase.

The same engine as device runs: claimed from the queue straight into executing (the claim
is the start: its lease is the execution deadline), ended with an Outcome that the retry
policy reads (the endings of calls that finish meanwhile are written together). Any 2xx is success and its JSON body the
result; a 4xx is final; timeouts, connection errors and 5xx are transient (they use
fallback_endpoint_url when the job has one, then the retry policy)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from jobline.jobs.v1.jobs_pb2 import Job
from services.common.clock import Clock
from services.common.eventloop import wait_event

from .domain import Outcome
from .endpoint_client import Answer, EndpointClient, EndpointError
from .engine import EXECUTION_SLACK_SECS, Ending, RunEngine
from .store import Queued, RunRow, RunStore

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 1024 * 1024
LEASE_SECS = 30


class HttpExecutor:
    def __init__(self, engine: RunEngine, store: RunStore, clock: Clock, replica_id: str,
                 concurrency: int = 256, client: EndpointClient | None = None) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.replica_id = replica_id
        self.concurrency = concurrency
        # Pooled keep-alive connections; at most `concurrency` calls at once (dispatch claims no more).
        self.client = client or EndpointClient(max_idle_per_origin=concurrency, max_body_bytes=MAX_RESULT_BYTES)
        self._running: dict[str, asyncio.Task] = {}
        self._wakeup = asyncio.Event()
        # Calls that ended, waiting for the next write of endings (one engine.end_attempts for all of them).
        self._endings: list[tuple[Ending, asyncio.Future[None]]] = []
        self._ended = asyncio.Event()
        self._writer: asyncio.Task | None = None
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
            await wait_event(self._wakeup, 1.0)
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
            now = self.clock.now()  # claimed straight into executing: nothing stands between claim and call
            claimed = await self.store.claim([r.id for r in rows], self.replica_id, now,
                                             now + timedelta(seconds=LEASE_SECS), start_slack=EXECUTION_SLACK_SECS)
            for row in rows:
                if row.id in claimed:
                    task = asyncio.create_task(self._execute(row))
                    self._running[row.id] = task
                    task.add_done_callback(lambda _, run_id=row.id: self._running.pop(run_id, None))
            if len(rows) < room:
                return

    async def _execute(self, row: Queued) -> None:
        job = Job.FromString(row.snapshot)
        outcome, result, timings = await self._call(job.endpoint_url, job, row)
        if outcome.retryable and outcome.status != "completed" and job.fallback_endpoint_url:
            outcome, result, timings = await self._call(job.fallback_endpoint_url, job, row)
        await self._end(Ending(row.id, row.attempt, outcome, result, timings))

    async def _end(self, ending: Ending) -> None:
        """Records how a call ended together with every other call that ended meanwhile; returns once it is
        stored (the run holds its slot until then)."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._endings.append((ending, stored))
        self._ended.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_endings())
        await stored

    async def _write_endings(self) -> None:
        while True:
            await self._ended.wait()
            self._ended.clear()
            batch, self._endings = self._endings, []
            try:
                answers = await self.engine.end_attempts([ending for ending, _ in batch])
            except Exception as error:  # the whole write failed: each run's lease or heartbeat recovers it
                answers = [error] * len(batch)
            for (ending, stored), answer in zip(batch, answers):
                if isinstance(answer, BaseException):
                    log.error("recording the end of run %s failed", ending.run_id, exc_info=answer)
                if not stored.done():
                    stored.set_result(None)

    async def _call(self, url: str, job: Job, row: Queued) -> tuple[Outcome, dict | None, dict[str, int]]:
        headers = {"X-Run-ID": row.id, "X-Job-ID": row.job_id, "X-Attempt": str(row.attempt)}
        body = json.dumps(row.payload or {}, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(row.timeout_secs or None):
                answer = await self.client.post(url, body, headers)
        except TimeoutError:
            return Outcome("timed_out", f"no answer from {url} within {row.timeout_secs}s"), None, _timings(None, start)
        except EndpointError as error:
            return Outcome("failed", f"{url}: {error}"), None, _timings(None, start)
        timings = _timings(answer, start)
        if answer.is_success:
            return Outcome("completed", exit_code=None), _result(answer.body), timings
        error = f"{url} answered {answer.status}"
        return Outcome("failed", error, retryable=answer.status >= 500 or answer.status == 429), None, timings


def _timings(answer: Answer | None, start: float) -> dict[str, int]:
    """The phases measured by the client (0 for those not reached), and the call's whole time."""
    measured = answer.timings if answer is not None else {}
    return {"connect_ms": measured.get("connect_ms", 0), "ttfb_ms": measured.get("ttfb_ms", 0),
            "transfer_ms": measured.get("transfer_ms", 0), "dispatch_ms": int((time.perf_counter() - start) * 1000)}


def _result(body: bytes) -> dict:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {"body": body.decode("utf-8", errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
