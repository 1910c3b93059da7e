"""Every credential kind through the gateway: happy path, expiry, revocation, wrong scope; keys API; abuse."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import httpx
import pytest

from gateway.auth import FailureLimiter
from jobline.auth.v1 import auth_pb2

from .conftest import BOOTSTRAP_KEY, Stack

ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(login: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()}


async def tenant_id(stack: Stack) -> str:
    return (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal.tenant_id


# --- /v1/api-keys as surface C documents it --------------------------------------------------------------------


async def test_api_keys_endpoints_create_list_rotate_revoke(stack: Stack) -> None:
    async with stack.client(cache_secs=5) as client:
        created = await client.post("/v1/api-keys", headers=ADMIN, json={"project_id": "default", "name": "ci"})
        assert created.status_code == 201, created.text
        key = created.json()
        assert re.fullmatch(r"jl_live_[A-Za-z0-9_-]{40}", key["key"]) and key["key"].startswith(key["key_prefix"])
        assert key["scopes"] == ["READ", "TRIGGER", "WRITE"] and key["project_id"] == "default"
        device_key = (await client.post("/v1/api-keys", headers=ADMIN, json={
            "name": "phones", "kind": "device_jobs", "scopes": ["READ", "TRIGGER"]})).json()
        assert device_key["key"].startswith("amk_live_")

        listed = await client.get("/v1/api-keys", headers=ADMIN, params={"project_id": "default"})
        assert listed.status_code == 200 and isinstance(listed.json(), list)
        assert {k["id"] for k in listed.json()} >= {key["id"], device_key["id"]}
        assert not any(k.get("key") for k in listed.json())  # shown once
        assert (await client.get("/v1/jobs", headers=bearer(key["key"]))).status_code == 200

        rotated = await client.post(f"/v1/api-keys/{key['id']}/rotate", headers=ADMIN,
                                    json={"grace_period_minutes": 5})
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()
        assert new["old_key_id"] == key["id"] and new["key"] != key["key"] and new["grace_expires_at"]
        assert (await client.get("/v1/jobs", headers=bearer(new["key"]))).status_code == 200
        assert (await client.get("/v1/jobs", headers=bearer(key["key"]))).status_code == 200  # within the grace
        stack.clock.advance(5 * 60 + 1)
        async with stack.client() as fresh:  # another gateway, no cache
            assert (await fresh.get("/v1/jobs", headers=bearer(key["key"]))).status_code == 401

        # Revocation: at once on the gateway that served it, despite its 5 s cache.
        assert (await client.get("/v1/jobs", headers=bearer(new["key"]))).status_code == 200
        revoked = await client.delete(f"/v1/api-keys/{new['new_key_id']}", headers=ADMIN)
        assert revoked.status_code == 204 and revoked.content == b""
        assert (await client.get("/v1/jobs", headers=bearer(new["key"]))).status_code == 401
        assert (await client.delete("/v1/api-keys/no-such-key", headers=ADMIN)).status_code == 404
        bad = await client.post(f"/v1/api-keys/{device_key['id']}/rotate", headers=ADMIN,
                                json={"grace_period_minutes": 10081})
        assert bad.status_code == 400


async def test_key_management_needs_admin(stack: Stack) -> None:
    async with stack.client() as client:
        writer = (await client.post("/v1/api-keys", headers=ADMIN, json={"name": "w", "scopes": ["WRITE", "READ"]}))
        headers = bearer(writer.json()["key"])
        assert (await client.post("/v1/api-keys", headers=headers, json={"name": "x"})).status_code == 403
        assert (await client.delete(f"/v1/api-keys/{writer.json()['id']}", headers=headers)).status_code == 403


# --- each credential kind: happy path, expiry, revocation, wrong scope -----------------------------------------


async def test_api_key_expiry_revocation_and_scope(stack: Stack) -> None:
    tid = await tenant_id(stack)
    expires = stack.clock.now() + timedelta(minutes=1)
    key = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
        tenant=tid, user_login="admin", name="reader", scopes=["READ"], expires_at=expires))
    async with stack.client() as client:
        assert (await client.get("/v1/jobs", headers={"X-API-Key": key.key})).status_code == 200
        forbidden = await client.post("/v1/jobs", headers=bearer(key.key), json={})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
        stack.clock.advance(61)
        expired = await client.get("/v1/jobs", headers=bearer(key.key))
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        other = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tid, user_login="admin", name="other", scopes=["ADMIN"]))
        assert (await client.post("/v1/jobs/none/trigger", headers=bearer(other.key), json={})).status_code == 404
        await stack.admin.RevokeCredential(auth_pb2.RevokeCredentialRequest(tenant=tid, id=other.id))
        assert (await client.get("/v1/jobs", headers=bearer(other.key))).status_code == 401


async def test_service_account_jwt_expiry_signature_scope_and_key_rotation(stack: Stack) -> None:
    tid = await tenant_id(stack)
    account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
        tenant=tid, project_id="default", name="drone-planner", scopes=["READ"]))
    assert account.client_id.startswith("jlsa_") and account.client_secret.startswith("jlcs_")
    with pytest.raises(Exception):
        await stack.auth.IssueToken(auth_pb2.IssueTokenRequest(client_id=account.client_id, client_secret="wrong"))
    issued = await stack.auth.IssueToken(auth_pb2.IssueTokenRequest(client_id=account.client_id,
                                                                    client_secret=account.client_secret))
    assert issued.token_type == "Bearer" and issued.expires_in == 3600 and issued.access_token.startswith("eyJ")
    async with stack.client() as client:
        assert (await client.get("/v1/jobs", headers=bearer(issued.access_token))).status_code == 200
        assert (await client.post("/v1/jobs", headers=bearer(issued.access_token), json={})).status_code == 403
        head, payload, signature = issued.access_token.split(".")
        forged = f"{head}.{payload}.{signature[:-4]}AAAA"
        assert (await client.get("/v1/jobs", headers=bearer(forged))).status_code == 401
        # Rotating the signing key keeps earlier tokens valid until they expire.
        await stack.admin.RotateSigningKey(auth_pb2.RotateSigningKeyRequest())
        assert (await client.get("/v1/jobs", headers=bearer(issued.access_token))).status_code == 200
        second = await stack.auth.IssueToken(auth_pb2.IssueTokenRequest(client_id=account.client_id,
                                                                        client_secret=account.client_secret))
        stack.clock.advance(3601)
        assert (await client.get("/v1/jobs", headers=bearer(issued.access_token))).status_code == 401
        expired = await client.get("/v1/jobs", headers=bearer(second.access_token))  # its key still verifies
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


async def test_basic_login_with_a_personal_access_token(stack: Stack) -> None:
    tid = await tenant_id(stack)
    await stack.admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tid, login="alice"))
    pat = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
        tenant=tid, user_login="alice", name="foreman", scopes=["READ"],
        kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN, expires_at=stack.clock.now() + timedelta(hours=1)))
    assert pat.key.startswith("jlp_")
    async with stack.client() as client:
        assert (await client.get("/v1/jobs", headers=basic("alice", pat.key))).status_code == 200
        assert (await client.get("/v1/jobs", headers=basic("admin", pat.key))).status_code == 401  # not hers
        assert (await client.get("/v1/jobs", headers=bearer(pat.key))).status_code == 401  # Basic only
        assert (await client.post("/v1/jobs", headers=basic("alice", pat.key), json={})).status_code == 403
        assert (await client.get("/v1/jobs", headers=basic("alice", BOOTSTRAP_KEY))).status_code == 401
        stack.clock.advance(3601)
        assert (await client.get("/v1/jobs", headers=basic("alice", pat.key))).status_code == 401
        fresh = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tid, user_login="alice", name="second", kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))
        assert (await client.get("/v1/jobs", headers=basic("alice", fresh.key))).status_code == 200
        await stack.admin.RevokeCredential(auth_pb2.RevokeCredentialRequest(tenant=tid, id=fresh.id))
        assert (await client.get("/v1/jobs", headers=basic("alice", fresh.key))).status_code == 401


# --- abuse -------------------------------------------------------------------------------------------------------


async def test_repeated_failures_from_one_address_are_slowed_then_refused_not_others(stack: Stack) -> None:
    now = [0.0]
    app_client = stack.client()
    limiter = FailureLimiter(slow_after=3, refuse_after=6, half_life=60, max_delay=0.01, clock=lambda: now[0])
    app_client.app.state.authenticator.limiter = limiter  # type: ignore[attr-defined]
    attacker = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_client.app, client=("10.0.0.66", 1234)),
                                 base_url="http://gateway")
    honest = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_client.app, client=("10.0.0.7", 1234)),
                               base_url="http://gateway")
    async with app_client, attacker, honest:
        codes = [(await attacker.get("/v1/jobs", headers=bearer(f"jl_live_guess{i}"))).status_code for i in range(8)]
        assert codes[:6] == [401] * 6 and codes[6:] == [429, 429]
        refused = await attacker.get("/v1/jobs", headers=ADMIN)  # even a good key, while refused
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        assert (await honest.get("/v1/jobs", headers=ADMIN)).status_code == 200  # others unaffected
        now[0] += 120  # the score decays
        assert (await attacker.get("/v1/jobs", headers=ADMIN)).status_code == 200
    assert limiter.failed("x") == 0.0 and len(limiter._scores) <= limiter.max_sources


def test_the_failure_limiter_is_bounded_and_slows_down() -> None:
    now = [0.0]
    limiter = FailureLimiter(slow_after=2, refuse_after=100, max_delay=1.0, max_sources=3, clock=lambda: now[0])
    delays = [limiter.failed("a") for _ in range(6)]
    assert delays[:2] == [0.0, 0.0] and delays[2] > 0 and delays == sorted(delays) and delays[-1] <= 1.0
    for source in "bcdef":
        limiter.failed(source)
    assert len(limiter._scores) == 3 and limiter.score("a") == 0.0


async def test_bodies_over_one_mebibyte_are_413(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/jobs", headers=ADMIN, content=b"{" + b" " * (1024 * 1024 + 1) + b"}")
        assert response.status_code == 413
