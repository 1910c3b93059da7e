"""A stand-in for the runs service, as the jobs service sees it (services.jobs.peers.Runs)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from jobline.auth.v1.auth_pb2 import Principal
from jobline.runs.v1 import runs_pb2
from services.common.errors import DomainError


@dataclass
class FakeRuns:
    active: dict[str, int] = field(default_factory=dict)
    # (principal, job_id, idempotency_key) of every trigger that made a run; repeats of a key do not.
    triggers: list[tuple[Principal, str, str]] = field(default_factory=list)
    count_calls: list[tuple[Principal, str]] = field(default_factory=list)
    fail_with: DomainError | None = None
    requests: list[runs_pb2.TriggerJobRequest] = field(default_factory=list)

    async def count_active(self, principal: Principal, job_id: str) -> int:
        self.count_calls.append((principal, job_id))
        return self.active.get(job_id, 0)

    async def trigger(self, principal: Principal, job_id: str, idempotency_key: str) -> runs_pb2.Run:
        if self.fail_with is not None:
            raise self.fail_with
        if all(key != idempotency_key for _, _, key in self.triggers):
            self.triggers.append((principal, job_id, idempotency_key))
        return runs_pb2.Run(id=f"run-{len(self.triggers)}", job_id=job_id, idempotency_key=idempotency_key)

    async def trigger_request(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run:
        """A schedule's own trigger request: recorded whole in `requests` (repeats of a key are not)."""
        run = await self.trigger(principal, request.job_id, request.idempotency_key)
        if all(r.idempotency_key != request.idempotency_key for r in self.requests):
            self.requests.append(request)
        return run

    async def trigger_many(self, principal: Principal, requests: list[runs_pb2.TriggerJobRequest]
                           ) -> list[runs_pb2.Run | DomainError]:
        """Each request as `trigger` (a job's cron) or `trigger_request` (a schedule's own), concurrently."""
        async def one(request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run | DomainError:
            try:
                if request == runs_pb2.TriggerJobRequest(job_id=request.job_id, idempotency_key=request.idempotency_key):
                    return await self.trigger(principal, request.job_id, request.idempotency_key)
                return await self.trigger_request(principal, request)
            except DomainError as error:
                return error

        return list(await asyncio.gather(*(one(request) for request in requests)))

    def keys(self, job_id: str | None = None) -> list[str]:
        return [key for _, job, key in self.triggers if job_id in (None, job)]
