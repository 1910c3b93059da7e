"""Surface C's documented per-caller trigger limits (10 / min for trigger, 30 / min for bulk trigger),
through the gateway on fake services, time on a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from services.common.channels import Channels
from services.common.config import Settings

from .conftest import ADMIN_KEY, Fakes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Limited:
    http: httpx.AsyncClient
    clock: Clock


async def limited_client(fakes: Fakes, **limits: int) -> AsyncIterator[Limited]:
    settings = dataclasses.replace(fakes.settings, **limits)
    channels = Channels()
    app = create_app(settings, channels)
    clock = Clock()
    app.state.rate_limiter.clock = clock
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        yield Limited(http, clock)
    await channels.close()


@pytest.fixture
async def documented(fakes: Fakes) -> AsyncIterator[Limited]:
    """The gateway with the documented defaults, as Settings.load() gives them with nothing set."""
    defaults = Settings(service="gateway", listen_addr="", database_url="")
    async for limited in limited_client(fakes, trigger_rate_limit_per_min=defaults.trigger_rate_limit_per_min,
                                        bulk_trigger_rate_limit_per_min=defaults.bulk_trigger_rate_limit_per_min):
        yield limited


def test_the_documented_defaults_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN", raising=False)
    monkeypatch.delenv("JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN", raising=False)
    loaded = Settings.load("gateway")
    assert (loaded.trigger_rate_limit_per_min, loaded.bulk_trigger_rate_limit_per_min) == (10, 30)
    monkeypatch.setenv("JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN", "0")
    monkeypatch.setenv("JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN", "500")
    loaded = Settings.load("gateway")
    assert (loaded.trigger_rate_limit_per_min, loaded.bulk_trigger_rate_limit_per_min) == (0, 500)


async def test_the_eleventh_trigger_in_a_minute_is_refused_with_retry_after(documented: Limited,
                                                                             fakes: Fakes) -> None:
    http, clock = documented.http, documented.clock
    for i in range(10):
        assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
        clock.now += 3  # ten requests over 27 s
    refused = await http.post("/v1/jobs/job-1/trigger", json={})
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"error"} and body["error"]["code"] == "rate_limited"
    assert body["error"]["message"].startswith("rate limit exceeded") and body["error"]["details"] == []
    # The first trigger was at t=1000; now is t=1030: it leaves the window in 30 s.
    assert refused.headers["Retry-After"] == "30"
    triggers = [c for c in fakes.recorder.calls if c.method == "TriggerJob"]
    assert len(triggers) == 10  # the refused one never reached the runs service

    # Another job of the same caller shares the caller's limit; other routes are not limited.
    assert (await http.post("/v1/jobs/job-2/trigger", json={})).status_code == 429
    assert (await http.get("/v1/runs/run-1")).status_code == 200

    clock.now += 30  # the first trigger left the window: one more is admitted, then refused again
    assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
    again = await http.post("/v1/jobs/job-1/trigger", json={})
    assert again.status_code == 429 and again.headers["Retry-After"] == "3"


async def test_each_caller_has_its_own_limit(documented: Limited) -> None:
    http = documented.http
    for _ in range(10):
        assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
    assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 429
    other = {"Authorization": "Bearer jl_trigger_key"}
    assert (await http.post("/v1/jobs/job-1/trigger", json={}, headers=other)).status_code == 202


async def test_bulk_trigger_allows_thirty_a_minute(documented: Limited) -> None:
    http = documented.http
    for _ in range(30):
        response = await http.post("/v1/jobs/job-1/trigger/bulk", json={"items": [{}]})
        assert response.status_code == 201, response.text
    refused = await http.post("/v1/jobs/job-1/trigger/bulk", json={"items": [{}]})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "60"
    # The two limits are separate.
    assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202


async def test_zero_turns_a_limit_off(fakes: Fakes) -> None:
    async for limited in limited_client(fakes, trigger_rate_limit_per_min=0, bulk_trigger_rate_limit_per_min=2):
        for _ in range(50):
            assert (await limited.http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
        for _ in range(2):
            assert (await limited.http.post("/v1/jobs/job-1/trigger/bulk", json={"items": [{}]})).status_code == 201
        assert (await limited.http.post("/v1/jobs/job-1/trigger/bulk", json={"items": [{}]})).status_code == 429


async def test_an_unauthenticated_trigger_is_401_not_counted(documented: Limited) -> None:
    http = documented.http
    for _ in range(9):
        assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
    for _ in range(3):
        response = await http.post("/v1/jobs/job-1/trigger", json={}, headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401
    assert (await http.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
