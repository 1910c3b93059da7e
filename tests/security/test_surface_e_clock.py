"""Surface E against the real services in-process with a fake clock: a token's one hour, and a mission's
scheduledAt, both through the gateway, with the fleet simulator holding real agent streams as drones."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from agent.fleet import Fleet
from jobline.auth.v1 import auth_pb2

from .conftest import BOOTSTRAP_KEY, Stack

ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}


async def tenant_id(stack: Stack) -> str:
    return (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal.tenant_id


async def pilot_token(stack: Stack, client: httpx.AsyncClient, scopes: list[str] | None = None) -> str:
    account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
        tenant=await tenant_id(stack), project_id="default", name="pilot",
        scopes=scopes or ["READ", "TRIGGER", "WRITE"]))
    response = await client.post("/v3/auth/token", json={
        "grant_type": "client_credentials", "client_id": account.client_id, "client_secret": account.client_secret})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def eventually(check, what: str, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.05)
    return value


async def test_a_token_is_good_for_one_hour_then_refused_as_expired(stack: Stack) -> None:
    async with stack.client() as client:
        token = await pilot_token(stack, client)
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/v3/jobs", headers=headers)).status_code == 200
        stack.clock.advance(3599)
        assert (await client.get("/v3/jobs", headers=headers)).status_code == 200
        stack.clock.advance(2)
        response = await client.get("/v3/jobs", headers=headers)
        assert response.status_code == 401, response.text
        assert response.json() == {"success": False, "error": "invalid_token", "message": "The access token expired"}
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        # A new token from the same credentials works again.
        fresh = await pilot_token(stack, client)
        assert (await client.get("/v3/jobs", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200


async def test_a_scheduled_mission_is_pending_until_its_time_then_a_drone_flies_it(stack: Stack) -> None:
    runs = stack.running["runs"].registration.handle
    async with stack.client() as client:
        assert (await client.post("/v1/device-groups", headers=ADMIN, json={"id": "dock-1"})).status_code == 201
        drones = []
        for name in ("d1", "d2"):
            created = await client.post("/v1/devices", headers=ADMIN, json={"id": name, "groups": ["dock-1"]})
            assert created.status_code == 201, created.text
            drones.append((name, created.json()["credential"]))
        fleet = Fleet(stack.peers["runs"], drones, handlers=["mission"])
        flying = asyncio.create_task(fleet.run())
        try:
            async def both_online():
                listed = (await client.get("/v1/devices", headers=ADMIN, params={"group": "dock-1"})).json()
                return all(device["online"] for device in listed["devices"]) and len(listed["devices"]) == 2

            await eventually(both_online, "the drones")
            headers = {"Authorization": f"Bearer {await pilot_token(stack, client)}"}
            at = stack.clock.now() + timedelta(minutes=30)  # within the token's hour
            response = await client.post("/v3/jobs/create", headers=headers, json={
                "name": "Dawn survey", "missionId": "survey-7", "deviceGroupId": "dock-1", "priority": 7,
                "scheduledAt": at.isoformat().replace("+00:00", "Z"), "metadata": {"altitude": 120, "zones": [1, 2]}})
            assert response.status_code == 201, response.text
            job = response.json()["job"]
            assert job["status"] == "PENDING" and job["priority"] == 7

            async def view():
                answer = await client.get(f"/v3/jobs/{job['jobId']}", headers=headers)
                assert answer.status_code == 200, answer.text
                return answer.json()["job"]

            await runs.tick()
            await asyncio.sleep(0.3)
            seen = await view()
            assert seen["status"] == "PENDING" and seen["scheduledAt"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert seen["metadata"] == {"altitude": 120, "zones": [1, 2]}
            assert seen["deviceId"] is None  # a drone of the group takes it when it is due
            assert fleet.assigned == 0

            stack.clock.advance(30 * 60 + 1)
            await runs.tick()
            done = await eventually(lambda: _status(view, {"COMPLETED", "FAILED"}), "the flight")
            assert done["status"] == "COMPLETED" and fleet.completed == 1 and done["deviceId"] in {"d1", "d2"}
            assert done["startedAt"] and done["completedAt"]
            logs = (await client.get(f"/v1/runs?job_id={job['jobId']}", headers=ADMIN)).json()
            text = (await client.get(f"/v1/runs/{logs[0]['id']}/logs", headers=ADMIN)).json()["text"]
            assert '"metadata": "{\\"altitude\\":120,\\"zones\\":[1,2]}"' in text and '"missionId": "survey-7"' in text
        finally:
            await fleet.stop()
            flying.cancel()


async def _status(view, statuses: set[str]):
    job = await view()
    return job if job["status"] in statuses else None
