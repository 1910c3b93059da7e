"""API keys: 401 without a valid one, cached answers, scopes, and the principal carried to services."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.auth import Authenticator, credential, scope_for
from services.common.channels import Channels
from services.common.errors import Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE

from .conftest import ADMIN_KEY, KEYS, Fakes


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer "},
                                     {"Authorization": f"Basic {ADMIN_KEY}"}, {"Authorization": "Bearer nope"},
                                     {"X-API-Key": "nope"}])
async def test_requests_without_a_valid_key_get_401(client: httpx.AsyncClient, fakes: Fakes, headers: dict) -> None:
    client.headers.pop("Authorization")
    response = await client.get("/v1/jobs/job-1", headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert fakes.recorder.calls == []


async def test_x_api_key_is_accepted(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/v1/jobs/job-1", headers={"X-API-Key": ADMIN_KEY})).status_code == 200


async def test_answers_are_cached_good_and_bad(client: httpx.AsyncClient, fakes: Fakes) -> None:
    for _ in range(3):
        assert (await client.get("/v1/jobs/job-1")).status_code == 200
    for _ in range(3):
        assert (await client.get("/v1/jobs/job-1", headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert fakes.auth.asked == [ADMIN_KEY, "wrong"]


async def test_the_principal_reaches_the_service(client: httpx.AsyncClient, fakes: Fakes) -> None:
    await client.post("/v1/jobs/job-1/trigger", json={})
    await client.get("/v1/devices/d1")
    for call in fakes.recorder.calls:
        assert call.principal == KEYS[ADMIN_KEY]


@pytest.mark.parametrize(("key", "method", "path", "allowed"), [
    ("jl_read_key", "GET", "/v1/jobs/job-1", True),
    ("jl_read_key", "POST", "/v1/jobs", False),
    ("jl_read_key", "POST", "/v1/jobs/job-1/trigger", False),
    ("jl_read_key", "DELETE", "/v1/runs/run-1", False),
    ("jl_trigger_key", "POST", "/v1/jobs/job-1/trigger", True),
    ("jl_trigger_key", "POST", "/v1/runs/run-1:cancel", False),
    ("jl_trigger_key", "PATCH", "/v1/jobs/job-1", False),
    ("jl_write_key", "PATCH", "/v1/jobs/job-1", True),
    ("jl_write_key", "DELETE", "/v1/devices/d1", True),
    ("jl_write_key", "POST", "/v1/jobs/job-1/trigger", False),
    (ADMIN_KEY, "POST", "/v1/jobs/job-1/trigger", True),
    (ADMIN_KEY, "POST", "/v1/runs/run-1:cancel", True),
])
async def test_scopes(client: httpx.AsyncClient, fakes: Fakes, key: str, method: str, path: str,
                      allowed: bool) -> None:
    response = await client.request(method, path, json={} if method in ("POST", "PATCH") else None,
                                    headers={"Authorization": f"Bearer {key}"})
    if allowed:
        assert response.status_code < 300, response.text
        assert fakes.recorder.last.principal.subject_id == KEYS[key].subject_id
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert fakes.recorder.calls == []


async def test_health_needs_no_key(client: httpx.AsyncClient, fakes: Fakes) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/health")).status_code == 200
    assert fakes.auth.asked == []


def test_credentials_and_scopes_from_requests() -> None:
    assert credential({"authorization": "Bearer k1"}) == "k1"
    assert credential({"authorization": "bearer  k1 "}) == "k1"
    assert credential({"authorization": "Basic abc", "x-api-key": "k2"}) == "k2"
    assert credential({}) is None
    assert scope_for("GET", "/v1/jobs/{job_id}/trigger") == READ
    assert scope_for("POST", "/v1/jobs/{job_id}/trigger") == TRIGGER
    assert scope_for("POST", "/v1/jobs/{job_id}/trigger/bulk") == TRIGGER
    assert scope_for("POST", "/v1/runs/{run_id}:cancel") == WRITE
    assert scope_for("DELETE", "/v1/jobs/{job_id}") == WRITE


async def test_the_cache_expires_is_bounded_and_never_holds_keys(fakes: Fakes) -> None:
    now = [0.0]
    channels = Channels()
    auth = Authenticator(channels, fakes.settings.peers["auth"], ttl=5, max_entries=2, clock=lambda: now[0])
    try:
        await auth.authenticate(ADMIN_KEY)
        now[0] = 4.9
        await auth.authenticate(ADMIN_KEY)
        assert fakes.auth.asked == [ADMIN_KEY]
        now[0] = 5.1
        await auth.authenticate(ADMIN_KEY)
        assert fakes.auth.asked == [ADMIN_KEY, ADMIN_KEY]

        with pytest.raises(Unauthenticated):
            await auth.authenticate("wrong")
        await auth.authenticate("jl_read_key")  # evicts the least recently used: ADMIN_KEY
        assert len(auth._cache) == 2
        assert all(len(digest) == 32 for digest in auth._cache)
        assert not any(key.encode() in digest for digest in auth._cache for key in (*KEYS, "wrong"))
        await auth.authenticate(ADMIN_KEY)
        assert fakes.auth.asked[-1] == ADMIN_KEY and len(fakes.auth.asked) == 5
    finally:
        await channels.close()


async def test_an_unreachable_auth_service_is_503_and_not_cached(client: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.auth.unavailable = True
    response = await client.get("/v1/jobs/job-1")
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    assert "database" not in response.text
    fakes.auth.unavailable = False
    assert (await client.get("/v1/jobs/job-1")).status_code == 200
    assert fakes.auth.asked == [ADMIN_KEY, ADMIN_KEY]


async def test_concurrent_requests_with_a_cold_cache_ask_the_auth_service_once(
        client: httpx.AsyncClient, fakes: Fakes) -> None:
    answers = await asyncio.gather(*(client.get("/v1/jobs/job-1") for _ in range(20)),
                                   *(client.get("/v1/jobs/job-1", headers={"Authorization": "Bearer wrong"})
                                     for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 20 + [401] * 5
    assert sorted(fakes.auth.asked) == sorted([ADMIN_KEY, "wrong"])


async def test_a_failed_question_is_raised_to_every_request_that_shared_it(
        client: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.auth.unavailable = True
    answers = await asyncio.gather(*(client.get("/v1/jobs/job-1") for _ in range(5)))
    assert [a.status_code for a in answers] == [503] * 5 and fakes.auth.asked == [ADMIN_KEY]
    fakes.auth.unavailable = False
    assert (await client.get("/v1/jobs/job-1")).status_code == 200  # not cached: asked again
    assert fakes.auth.asked == [ADMIN_KEY, ADMIN_KEY]
