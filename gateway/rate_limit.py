"""Surface C's documented per-caller request limits: "Trigger a job run — rate limited to 10 requests
per minute", "Trigger multiple runs — rate limited to 30 requests per minute" (C-scheduler-openapi.yaml).

A caller is one credential (API key, personal access token or JWT id) of one tenant. Each limited RPC
keeps, per caller, the times of its admitted requests in the last window (a sliding log: at most N
in any window, never a burst at a window's edge); a request over the limit is refused with 429
`rate_limited` and `Retry-After` (seconds until the oldest admitted request leaves the window),
before anything reaches a service. Refused requests do not count.

The counts live in this gateway's memory: with several gateway replicas each enforces the limit on
its own, so a caller spread across R replicas is held to at most R x the limit. Where a fleet-wide
bound matters, enforce it at the edge (Envoy's global rate limit service, keyed by the
Authorization header) or divide the configured limits by the replica count.

Limits come from JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN and JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN
(see services/common/config.py); 0 turns a limit off."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jobline.auth.v1.auth_pb2 import Principal
from jobline.runs.v1 import runs_pb2
from services.common.config import Settings

from .auth import RateLimited

_RUNS = runs_pb2.DESCRIPTOR.services_by_name["RunService"]
TRIGGER_RPC = _RUNS.methods_by_name["TriggerJob"].full_name
BULK_TRIGGER_RPC = _RUNS.methods_by_name["BulkTriggerJob"].full_name


@dataclass(frozen=True)
class Limit:
    requests: int
    window_secs: float = 60.0


def limits_from(settings: Settings) -> dict[str, Limit]:
    """The limited RPCs of the native API and their limits (those set to 0 are left out)."""
    limits = {TRIGGER_RPC: Limit(settings.trigger_rate_limit_per_min),
              BULK_TRIGGER_RPC: Limit(settings.bulk_trigger_rate_limit_per_min)}
    return {rpc: limit for rpc, limit in limits.items() if limit.requests > 0}


class CallerRateLimiter:
    """Sliding-log request limits per (RPC, caller). Remembers at most `max_callers` callers per RPC,
    dropping the least recently seen first."""

    def __init__(self, limits: Mapping[str, Limit], *, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = 100_000) -> None:
        self.limits = dict(limits)
        self.clock = clock
        self.max_callers = max_callers
        self._logs: dict[str, OrderedDict[str, deque[float]]] = {rpc: OrderedDict() for rpc in self.limits}

    def admit(self, rpc: str, principal: Principal) -> None:
        """Counts one request of this caller to `rpc`; raises RateLimited (429) when it is over the limit."""
        limit = self.limits.get(rpc)
        if limit is None:
            return
        caller = f"{principal.tenant_id}/{principal.credential_id or principal.subject_id}"
        logs = self._logs[rpc]
        now = self.clock()
        log = logs.get(caller)
        if log is None:
            log = logs[caller] = deque()
            while len(logs) > self.max_callers:
                logs.popitem(last=False)
        else:
            logs.move_to_end(caller)
        while log and log[0] <= now - limit.window_secs:
            log.popleft()
        if len(log) >= limit.requests:
            retry_after = max(1, math.ceil(log[0] + limit.window_secs - now))
            raise RateLimited(f"rate limit exceeded: at most {limit.requests} requests per "
                              f"{limit.window_secs:g} s; retry in {retry_after} s", retry_after)
        log.append(now)
