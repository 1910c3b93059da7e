"""Each credential kind on each surface that accepts it, through the gateway: its happy path, expiry,
revocation and a missing scope, each answered with that surface's documented refusal.

    API key               X-API-Key on A (native and AndroMate `amk_live_` keys), Bearer on B, C and E
    JWT (/v3/auth/token)  Bearer on B, C and E; revoked by revoking its service account
    personal access token HTTP Basic (login + token) on D

(test_credentials.py has the native API's finer points: rotation, grace periods, signing-key rotation.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from gateway.auth import FailureLimiter
from jobline.auth.v1 import auth_pb2

from .conftest import BOOTSTRAP_KEY, Stack
from .surfaces import basic, bearer

ADMIN = bearer(BOOTSTRAP_KEY)
FULL = ["READ", "TRIGGER", "WRITE"]


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: Any = None


# surface -> (a read its READ-only credential may make, a call needing a scope that credential lacks)
CALLS: dict[str, tuple[Call, Call]] = {
    "A": (Call("GET", "/job/api/jobs/executions/{execution}"),
          Call("POST", "/job/api/jobs/execute", {"jobName": "probe", "deviceIds": ["phone-1"]})),
    "B": (Call("GET", "/api/svc/v1/jobs/{job}/runs"),
          Call("POST", "/api/svc/v1/jobs/trigger", {"applicationId": "{job}"})),
    "C": (Call("GET", "/v1/jobs"), Call("POST", "/v1/jobs", {"project_id": "default", "name": "n", "slug": "n",
                                                             "endpoint_url": "http://x.test/"})),
    "D": (Call("GET", "/api/hosts"), Call("POST", "/api/job_templates", {"job_template": {"name": "t"}})),
    "E": (Call("GET", "/v3/jobs"), Call("POST", "/v3/jobs/create", {"name": "m", "deviceGroupId": "dock-1"})),
}

# (surface, credential kind) -> what the surface answers: expired, revoked, missing scope (status, body).
A_REFUSALS = {
    "expired": (403, {"code": "J-803", "message": "API key is expired", "status": 403}),
    "revoked": (403, {"code": "J-802", "message": "Invalid API key", "status": 403}),
    "scope": (403, {"code": "J-804", "message": "API key does not have the required permission: TRIGGER",
                    "status": 403}),
}
B_REFUSALS = {
    "expired": (401, {"statusCode": 401, "message": "Unauthorized: the token has expired", "code": "UNAUTHORIZED"}),
    "revoked": (401, {"statusCode": 401, "message": "Unauthorized: invalid token", "code": "UNAUTHORIZED"}),
    "scope": (403, {"statusCode": 403, "message": "Forbidden: the API key lacks the TRIGGER permission",
                    "code": "FORBIDDEN"}),
}


def c_refusal(message: str, status: int = 401) -> tuple[int, dict]:
    return status, {"error": {"code": "unauthorized" if status == 401 else "forbidden", "message": message,
                              "details": []}}


E_REFUSALS = {
    "expired": (401, {"success": False, "error": "invalid_token", "message": "The access token expired"}),
    "revoked": (401, {"success": False, "error": "invalid_token", "message": "The access token is invalid"}),
    "scope": (403, {"success": False, "error": "insufficient_scope",
                    "message": "The access token lacks the WRITE scope"}),
}
D_UNAUTHENTICATED = (401, {"error": {"message": "Unable to authenticate user admin"}})

TABLE: dict[tuple[str, str], dict[str, tuple[int, Any]]] = {
    ("A", "api_key"): A_REFUSALS,
    ("A", "device_jobs_key"): A_REFUSALS,
    ("B", "api_key"): B_REFUSALS,
    ("B", "jwt"): B_REFUSALS,
    ("C", "api_key"): {"expired": c_refusal("API key expired"), "revoked": c_refusal("API key revoked"),
                       "scope": c_refusal("missing scope WRITE", 403)},
    ("C", "jwt"): {"expired": c_refusal("token expired"), "revoked": c_refusal("invalid token"),
                   "scope": c_refusal("missing scope WRITE", 403)},
    ("D", "pat"): {"expired": D_UNAUTHENTICATED, "revoked": D_UNAUTHENTICATED,
                   "scope": (403, {"error": {"message": "Access denied", "details":
                                             "Missing one of the required permissions: create_job_templates",
                                             "missing_permissions": ["create_job_templates"]}})},
    ("E", "api_key"): E_REFUSALS,
    ("E", "jwt"): E_REFUSALS,
}


@dataclass
class Credential:
    kind: str
    secret: str
    revoke_id: str  # what RevokeCredential takes (the key's id, or the JWT's service account)

    def headers(self, surface: str) -> dict[str, str]:
        if self.kind == "pat":
            return basic("admin", self.secret)
        return {"X-API-Key": self.secret} if surface == "A" else bearer(self.secret)


async def issue(stack: Stack, client: httpx.AsyncClient, tenant: str, kind: str, scopes: list[str],
                expires_in: timedelta = timedelta(hours=1)) -> Credential:
    """A new credential of `kind`; API keys and PATs expire in `expires_in`, a JWT in its one hour."""
    if kind == "jwt":
        account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tenant, project_id="default", name="sa", scopes=scopes))
        issued = await client.post("/v3/auth/token", json={
            "grant_type": "client_credentials", "client_id": account.client_id,
            "client_secret": account.client_secret})
        assert issued.status_code == 200, issued.text
        return Credential(kind, issued.json()["access_token"], account.id)
    key_kind = {"api_key": auth_pb2.KEY_KIND_NATIVE, "device_jobs_key": auth_pb2.KEY_KIND_DEVICE_JOBS,
                "pat": auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN}[kind]
    key = await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
        tenant=tenant, user_login="admin", name=kind, scopes=scopes, kind=key_kind,
        expires_at=stack.clock.now() + expires_in))
    return Credential(kind, key.key, key.id)


def render(text: Any, values: dict[str, str]) -> Any:
    if isinstance(text, str):
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text
    if isinstance(text, dict):
        return {k: render(v, values) for k, v in text.items()}
    return text


async def ask(client: httpx.AsyncClient, call: Call, surface: str, credential: Credential,
              values: dict[str, str]) -> tuple[int, Any]:
    response = await client.request(call.method, render(call.url, values), headers=credential.headers(surface),
                                    json=render(call.body, values))
    return response.status_code, response.json()


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    """A device job and one execution of it (to be read back), with the bootstrap admin key."""
    assert (await client.post("/v1/devices", headers=ADMIN, json={"id": "phone-1"})).status_code == 201
    job = await client.post("/v1/jobs", headers=ADMIN, json={
        "project_id": "default", "name": "probe", "slug": "probe", "command": "true",
        "targets": {"device_ids": ["phone-1"]}})
    assert job.status_code == 201, job.text
    executed = await client.post("/job/api/jobs/execute", headers={"X-API-Key": BOOTSTRAP_KEY},
                                 json={"jobName": "probe", "deviceIds": ["phone-1"]})
    assert executed.status_code == 201, executed.text
    return {"job": job.json()["id"], "execution": str(executed.json()[0]["jobExecutionId"])}


async def test_every_credential_kind_on_every_surface_that_takes_it(stack: Stack) -> None:
    tenant = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal.tenant_id
    # Many refusals from one address: this test is about each answer, not about the failure limiter.
    async with stack.client() as client, stack.client(cache_secs=5) as cached:
        for gateway in (client, cached):
            gateway.app.state.authenticator.limiter = FailureLimiter(slow_after=1000, refuse_after=1000)
        values = await seed(client)
        wrong: list[str] = []

        def check(cell: tuple[str, str], what: str, answer: tuple[int, Any], expected: tuple[int, Any]) -> None:
            if answer != expected and not (expected[0] == 200 and answer[0] == 200):
                wrong.append(f"{cell} {what}: {answer} (expected {expected})")

        expiring: dict[tuple[str, str], Credential] = {}
        for cell, refusals in TABLE.items():
            surface, kind = cell
            read, needs_scope = CALLS[surface]
            good = await issue(stack, client, tenant, kind, FULL)
            check(cell, "happy path", await ask(client, read, surface, good, values), (200, None))
            reader = await issue(stack, client, tenant, kind, ["READ"])
            check(cell, "READ only", await ask(client, read, surface, reader, values), (200, None))
            check(cell, "missing scope", await ask(client, needs_scope, surface, reader, values), refusals["scope"])
            # Revocation: API keys through the native API, at once even on a gateway that cached the key.
            revoked = await issue(stack, client, tenant, kind, FULL)
            gateway = cached if kind.endswith("key") else client
            check(cell, "before revocation", await ask(gateway, read, surface, revoked, values), (200, None))
            if kind.endswith("key"):
                assert (await cached.delete(f"/v1/api-keys/{revoked.revoke_id}", headers=ADMIN)).status_code == 204
            else:
                await stack.admin.RevokeCredential(auth_pb2.RevokeCredentialRequest(tenant=tenant,
                                                                                    id=revoked.revoke_id))
            check(cell, "revoked", await ask(gateway, read, surface, revoked, values), refusals["revoked"])
            expiring[cell] = await issue(stack, client, tenant, kind, FULL, expires_in=timedelta(minutes=30))
            check(cell, "before expiry", await ask(client, read, surface, expiring[cell], values), (200, None))
        stack.clock.advance(3601)  # past the keys' half hour and the JWTs' hour
        for cell, credential in expiring.items():
            surface, _ = cell
            check(cell, "expired", await ask(client, CALLS[surface][0], surface, credential, values),
                  TABLE[cell]["expired"])
        assert not wrong, "\n".join(wrong)
