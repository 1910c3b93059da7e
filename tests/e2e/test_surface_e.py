"""Surface E (IDI-FLY V3 drone missions) end to end: real processes, tokens from /v3/auth/token, real agent
processes flying missions through their `mission` handler, the fleet simulator as a group of drones."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.channels import Channels

from .conftest import ADMIN_KEY, Client

pytestmark = pytest.mark.e2e

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SUMMARY_KEYS = {"jobId", "name", "status", "priority", "createdAt"}
DETAIL_KEYS = {"jobId", "name", "description", "missionId", "deviceId", "deviceGroupId", "status", "priority",
               "createdAt", "metadata"}
# The drones' mission handler: missionId `long-*` flies for a minute, `fail-*` crashes, others report and land.
HANDLER = ('case "$JOBLINE_INPUT_MISSIONID" in long*) echo "taking off"; sleep 60;; '
           'fail*) echo "motor failure" >&2; exit 3;; '
           '*) echo "flew $JOBLINE_INPUT_MISSIONID with $JOBLINE_INPUT_METADATA";; esac')
GROUP, DRONE = "group-uuid-789", "drone-uuid-456"  # the document's ids


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def admin_call(platform, call):
    """Runs `call(admin_stub, tenant_id)` against the auth service's admin RPC (with the service credential)."""

    async def go():
        channels = Channels(service_token=(platform.data_dir / "service-token").read_text().strip())
        try:
            auth = auth_pb2_grpc.AuthServiceStub(channels.get(platform.addr("auth")))
            tenant_id = (await auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=ADMIN_KEY))).principal.tenant_id
            return await call(auth_pb2_grpc.AuthAdminServiceStub(channels.get(platform.addr("auth"))), tenant_id)
        finally:
            await channels.close()

    return asyncio.run(go())


def service_account(platform, scopes: list[str], tenant: str = "") -> auth_pb2.ServiceAccount:
    async def create(admin, tenant_id):
        return await admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tenant or tenant_id, project_id="default", name=unique("sa"), scopes=scopes))

    return admin_call(platform, create)


def other_tenant(platform) -> tuple[str, str]:
    """A new tenant: (its ADMIN API key, its tenant id)."""

    async def create(admin, _):
        tenant = await admin.CreateTenant(auth_pb2.CreateTenantRequest(name=unique("t")))
        await admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="admin"))
        key = await admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, project_id="default", user_login="admin", name="admin", scopes=["ADMIN"]))
        return key.key, tenant.id

    return admin_call(platform, create)


def issue(e: httpx.Client, account: auth_pb2.ServiceAccount) -> str:
    response = e.post("/v3/auth/token", json={"grant_type": "client_credentials", "client_id": account.client_id,
                                              "client_secret": account.client_secret})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, error: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "message"} and body["success"] is False, body
    assert body["error"] == error, body
    if message is not None:
        assert body["message"] == message, body


@pytest.fixture(scope="module")
def e(platform) -> httpx.Client:
    return httpx.Client(base_url=platform.base_url, timeout=15)


@pytest.fixture(scope="module")
def pilot(platform) -> auth_pb2.ServiceAccount:
    return service_account(platform, ["READ", "TRIGGER", "WRITE"])


@pytest.fixture(scope="module")
def token(e: httpx.Client, pilot) -> str:
    return issue(e, pilot)


@pytest.fixture(scope="module")
def h(token: str) -> dict[str, str]:
    return bearer(token)


def new_group(client: Client, group_id: str | None = None) -> str:
    group_id = group_id or unique("hangar")
    response = client.http.post("/v1/device-groups", json={"id": group_id, "name": group_id})
    assert response.status_code == 201, response.text
    return group_id


def new_drone(client: Client, group: str, drone_id: str | None = None) -> tuple[str, str]:
    drone_id = drone_id or unique("drone")
    response = client.http.post("/v1/devices", json={"id": drone_id, "name": drone_id, "groups": [group]})
    assert response.status_code == 201, response.text
    return drone_id, response.json()["credential"]


def online(client: Client, device_id: str) -> bool:
    return client.http.get(f"/v1/devices/{device_id}").json()["online"]


@pytest.fixture(scope="module")
def drone(client: Client):
    """The document's drone in the document's group, its agent (capacity 1) flying with the mission handler."""
    new_group(client, GROUP)
    drone_id, credential = new_drone(client, GROUP, DRONE)
    agent = client.start_agent(drone_id, credential, "--capacity", "1", "--handler", f"mission={HANDLER}")
    wait_for(lambda: online(client, drone_id), 20, "the drone's agent")
    yield drone_id
    agent.terminate()
    agent.wait(10)


def start_fleet(client: Client, tmp: Path, devices: list[tuple[str, str]], *handlers: str) -> subprocess.Popen:
    path = tmp / f"{unique('fleet')}.txt"
    path.write_text("".join(f"{device} {credential}\n" for device, credential in devices))
    args = [arg for name in handlers for arg in ("--handler", name)]
    return subprocess.Popen([sys.executable, "-m", "cli.main", "fleet", "--server", client.platform.addr("runs"),
                             "--credentials-file", str(path), *args])


def create(e: httpx.Client, h: dict, **body) -> dict:
    response = e.post("/v3/jobs/create", headers=h, json=body)
    assert response.status_code == 201, response.text
    return response.json()["job"]


def get(e: httpx.Client, h: dict, job_id: str) -> dict:
    response = e.get(f"/v3/jobs/{job_id}", headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "job"} and body["success"] is True
    return body["job"]


def wait_status(e: httpx.Client, h: dict, job_id: str, statuses: set[str], timeout: float = 20.0) -> dict:
    return wait_for(lambda: (job := get(e, h, job_id))["status"] in statuses and job, timeout,
                    f"job {job_id} to become one of {statuses}")


def mission_run(client: Client, job_id: str) -> dict:
    runs = client.http.get("/v1/runs", params={"job_id": job_id}).json()
    assert len(runs) == 1, runs
    return runs[0]


# -- tokens -----------------------------------------------------------------------------------


def test_the_token_endpoint_issues_one_hour_jwts_for_client_credentials(e: httpx.Client, pilot) -> None:
    response = e.post("/v3/auth/token", json={"grant_type": "client_credentials", "client_id": pilot.client_id,
                                              "client_secret": pilot.client_secret})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["exp"] - (time.time() + 3600)) < 60

    form = e.post("/v3/auth/token", data={"grant_type": "client_credentials", "client_id": pilot.client_id,
                                          "client_secret": pilot.client_secret})
    assert form.status_code == 200, form.text
    basic = base64.b64encode(f"{pilot.client_id}:{pilot.client_secret}".encode()).decode()
    with_basic = e.post("/v3/auth/token", headers={"Authorization": f"Basic {basic}"},
                        json={"grant_type": "client_credentials"})
    assert with_basic.status_code == 200, with_basic.text
    assert e.get("/v3/jobs", headers=bearer(with_basic.json()["access_token"])).status_code == 200


def test_token_refusals(e: httpx.Client, pilot) -> None:
    assert_error(e.post("/v3/auth/token", json={"client_id": pilot.client_id, "client_secret": "x"}),
                 400, "invalid_request")
    assert_error(e.post("/v3/auth/token", json={"grant_type": "password", "client_id": pilot.client_id,
                                                "client_secret": pilot.client_secret}), 400, "unsupported_grant_type")
    assert_error(e.post("/v3/auth/token", json={"grant_type": "client_credentials", "client_id": pilot.client_id}),
                 400, "invalid_request")
    assert_error(e.post("/v3/auth/token", content=b"{nope"), 400, "invalid_request")
    assert_error(e.post("/v3/auth/token", json={"grant_type": "client_credentials", "client_id": pilot.client_id,
                                                "client_secret": "cs_wrong"}), 401, "invalid_client")
    assert_error(e.post("/v3/auth/token", json={"grant_type": "client_credentials", "client_id": "nobody",
                                                "client_secret": "cs_wrong"}), 401, "invalid_client")


# -- the document's example -----------------------------------------------------------------


def test_the_documented_example_creates_a_mission_that_the_drone_flies(
        client: Client, e: httpx.Client, token: str, drone: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = e.post("/v3/jobs/create",
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                      content=b"""{
    "name": "Inspection Mission Alpha",
    "description": "Routine infrastructure inspection",
    "missionId": "mission-uuid-123",
    "deviceId": "drone-uuid-456",
    "deviceGroupId": "group-uuid-789",
    "priority": 5,
    "scheduledAt": "2024-01-15T10:00:00Z",
    "metadata": {
      "customer": "ACME Corp"
    }
  }""")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"success", "job"} and body["success"] is True
    job = body["job"]
    assert set(job) == SUMMARY_KEYS
    assert job["name"] == "Inspection Mission Alpha" and job["priority"] == 5
    assert job["status"] in {"PENDING", "QUEUED", "IN_PROGRESS", "COMPLETED"}
    assert isinstance(job["jobId"], str) and job["jobId"]
    assert ISO.match(job["createdAt"]), job
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(job["createdAt"]) <= datetime.now(UTC)

    done = wait_status(e, bearer(token), job["jobId"], {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED", done
    assert set(done) >= DETAIL_KEYS
    assert {key: done[key] for key in DETAIL_KEYS} == {
        "jobId": job["jobId"], "name": "Inspection Mission Alpha", "description": "Routine infrastructure inspection",
        "missionId": "mission-uuid-123", "deviceId": "drone-uuid-456", "deviceGroupId": "group-uuid-789",
        "status": "COMPLETED", "priority": 5, "createdAt": job["createdAt"], "metadata": {"customer": "ACME Corp"}}
    run = mission_run(client, job["jobId"])
    assert run["device_id"] == DRONE and run["priority"] == 5
    logs = client.http.get(f"/v1/runs/{run['id']}/logs").json()
    assert logs["text"] == 'flew mission-uuid-123 with {"customer":"ACME Corp"}\n'


# -- statuses driven by the agent ----------------------------------------------------------


def test_in_progress_then_cancel_is_refused_and_delete_stops_the_flight(
        client: Client, e: httpx.Client, h: dict, drone: str) -> None:
    job = create(e, h, name="Long patrol", missionId="long-patrol", deviceId=drone, deviceGroupId=GROUP)
    flying = wait_status(e, h, job["jobId"], {"IN_PROGRESS"})
    assert flying["deviceId"] == drone and ISO.match(flying["startedAt"])
    assert_error(e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h), 400, "Cannot cancel job",
                 "The job is IN_PROGRESS; only PENDING or QUEUED jobs can be cancelled")
    assert get(e, h, job["jobId"])["status"] == "IN_PROGRESS"
    assert_error(e.patch(f"/v3/jobs/{job['jobId']}", headers=h, json={"priority": 9}), 400, "invalid_request")

    deleted = e.delete(f"/v3/jobs/{job['jobId']}", headers=h)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"success": True, "message": "Job deleted successfully"}
    assert_error(e.get(f"/v3/jobs/{job['jobId']}", headers=h), 404, "Job not found")
    assert_error(e.delete(f"/v3/jobs/{job['jobId']}", headers=h), 404, "Job not found")
    run = mission_run(client, job["jobId"])
    assert run["status"] == "canceled"
    # The drone is free again: the next mission flies.
    nxt = create(e, h, name="After the patrol", missionId="m-next", deviceId=drone, deviceGroupId=GROUP)
    assert wait_status(e, h, nxt["jobId"], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"


def test_a_crashing_mission_fails_with_its_reason(e: httpx.Client, h: dict, drone: str) -> None:
    job = create(e, h, name="Doomed", missionId="fail-1", deviceId=drone, deviceGroupId=GROUP)
    done = wait_status(e, h, job["jobId"], {"COMPLETED", "FAILED"})
    assert done["status"] == "FAILED" and "exit code 3" in done["error"], done
    assert ISO.match(done["completedAt"])
    assert_error(e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h), 400, "Cannot cancel job")


def test_missions_queue_for_a_busy_drone_and_start_in_priority_order(
        client: Client, e: httpx.Client, h: dict, drone: str) -> None:
    busy = create(e, h, name="Blocker", missionId="long-blocker", deviceId=drone, deviceGroupId=GROUP)
    wait_status(e, h, busy["jobId"], {"IN_PROGRESS"})
    low = create(e, h, name="Low", missionId="m-low", deviceId=drone, deviceGroupId=GROUP, priority=2)
    high = create(e, h, name="High", missionId="m-high", deviceId=drone, deviceGroupId=GROUP, priority=9)
    mid = create(e, h, name="Mid", missionId="m-mid", deviceId=drone, deviceGroupId=GROUP)  # default 5
    assert mid["priority"] == 5
    for job in (low, high, mid):
        assert job["status"] == "QUEUED" and get(e, h, job["jobId"])["status"] == "QUEUED"
    # The low one is raised above the others while it waits.
    patched = e.patch(f"/v3/jobs/{low['jobId']}", headers=h, json={"priority": 10, "name": "Raised"})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert set(body) == {"success", "job"} and body["success"] is True
    assert set(body["job"]) == {"jobId", "name", "description", "status", "priority", "updatedAt"}
    assert body["job"]["priority"] == 10 and body["job"]["name"] == "Raised" and body["job"]["status"] == "QUEUED"
    assert ISO.match(body["job"]["updatedAt"])
    assert mission_run(client, low["jobId"])["priority"] == 10

    client.http.post(f"/v1/runs/{mission_run(client, busy['jobId'])['id']}:cancel", json={})
    for job in (low, high, mid):
        assert wait_status(e, h, job["jobId"], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
    started = {job["jobId"]: mission_run(client, job["jobId"])["started_at"] for job in (low, high, mid)}
    order = sorted(started, key=lambda job_id: datetime.fromisoformat(started[job_id].replace("Z", "+00:00")))
    assert order == [low["jobId"], high["jobId"], mid["jobId"]]
    assert get(e, h, low["jobId"])["name"] == "Raised"
    renamed = e.patch(f"/v3/jobs/{mid['jobId']}", headers=h, json={"description": "done and renamed"})
    assert renamed.status_code == 200 and renamed.json()["job"]["description"] == "done and renamed"
    assert_error(e.patch(f"/v3/jobs/{mid['jobId']}", headers=h, json={"priority": 3}), 400, "invalid_request")


def test_scheduled_missions_are_pending_and_can_be_cancelled(e: httpx.Client, h: dict, drone: str) -> None:
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    job = create(e, h, name="Tomorrow", missionId="m-later", deviceId=drone, deviceGroupId=GROUP, scheduledAt=later)
    assert job["status"] == "PENDING"
    seen = get(e, h, job["jobId"])
    assert seen["status"] == "PENDING"
    assert datetime.fromisoformat(seen["scheduledAt"]) == datetime.fromisoformat(later).replace(microsecond=0)
    listed = e.get("/v3/jobs", headers=h, params={"status": "PENDING"}).json()
    assert job["jobId"] in {item["jobId"] for item in listed["jobs"]}

    response = e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "job"} and body["success"] is True
    assert set(body["job"]) == {"jobId", "status", "cancelledAt"}
    assert body["job"]["jobId"] == job["jobId"] and body["job"]["status"] == "CANCELLED"
    assert ISO.match(body["job"]["cancelledAt"])
    assert get(e, h, job["jobId"])["status"] == "CANCELLED"
    assert_error(e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h), 400, "Cannot cancel job",
                 "The job is CANCELLED; only PENDING or QUEUED jobs can be cancelled")


def test_a_group_mission_flies_on_one_available_drone_of_the_fleet(
        client: Client, e: httpx.Client, h: dict, tmp_path: Path) -> None:
    group = new_group(client)
    drones = [new_drone(client, group) for _ in range(3)]
    offline_id, _ = new_drone(client, group)  # never connects
    fleet = start_fleet(client, tmp_path, drones, "mission")
    try:
        for drone_id, _ in drones:
            wait_for(lambda drone_id=drone_id: online(client, drone_id), 20, "the fleet's drones")
        jobs = [create(e, h, name=f"Survey {i}", missionId=f"survey-{i}", deviceGroupId=group) for i in range(3)]
        flown = [wait_status(e, h, job["jobId"], {"COMPLETED", "FAILED"}) for job in jobs]
        assert [job["status"] for job in flown] == ["COMPLETED"] * 3
        # One drone each, and never the offline one: a free drone of the group takes the next mission.
        assert sorted(job["deviceId"] for job in flown) == sorted(drone_id for drone_id, _ in drones)
        assert offline_id not in {job["deviceId"] for job in flown}
        logs = client.http.get(f"/v1/runs/{mission_run(client, jobs[0]['jobId'])['id']}/logs").json()["text"]
        assert logs.startswith("simulated mission: ") and '"missionId": "survey-0"' in logs
    finally:
        fleet.terminate()
        fleet.wait(10)


def test_a_group_mission_waits_for_a_free_drone_of_the_group_whichever_it_is(
        client: Client, e: httpx.Client, h: dict) -> None:
    group = new_group(client)
    (first, first_credential), (second, second_credential) = new_drone(client, group), new_drone(client, group)
    # Every drone of the group is offline: the mission is accepted and waits in the group's queue.
    waiting = create(e, h, name="Waits", missionId="survey-w", deviceGroupId=group)
    assert waiting["status"] == "QUEUED"
    time.sleep(1.5)
    assert get(e, h, waiting["jobId"])["status"] == "QUEUED" and get(e, h, waiting["jobId"])["deviceId"] is None
    agents = [client.start_agent(first, first_credential, "--capacity", "1", "--handler", f"mission={HANDLER}")]
    try:
        flown = wait_status(e, h, waiting["jobId"], {"COMPLETED", "FAILED"})
        assert (flown["status"], flown["deviceId"]) == ("COMPLETED", first)
        # The only drone online is busy with a long flight: the next mission waits for whichever drone of
        # the group is free first, here the second drone once it comes online.
        long = create(e, h, name="Long", missionId="long-1", deviceGroupId=group)
        assert wait_status(e, h, long["jobId"], {"IN_PROGRESS"})["deviceId"] == first
        following = create(e, h, name="Next", missionId="survey-n", deviceGroupId=group)
        assert get(e, h, following["jobId"])["status"] == "QUEUED"
        agents.append(client.start_agent(second, second_credential, "--capacity", "1",
                                         "--handler", f"mission={HANDLER}"))
        flown = wait_status(e, h, following["jobId"], {"COMPLETED", "FAILED"})
        assert (flown["status"], flown["deviceId"]) == ("COMPLETED", second)
        assert get(e, h, long["jobId"])["status"] == "IN_PROGRESS"
        assert e.delete(f"/v3/jobs/{long['jobId']}", headers=h).status_code == 200
    finally:
        for agent in agents:
            agent.terminate()
            agent.wait(10)


def test_a_drone_without_the_mission_handler_rejects_and_the_mission_fails(
        client: Client, e: httpx.Client, h: dict, tmp_path: Path) -> None:
    group = new_group(client)
    drone_id, credential = new_drone(client, group)
    agent = client.start_agent(drone_id, credential)  # no --handler
    try:
        wait_for(lambda: online(client, drone_id), 20, "the agent")
        job = create(e, h, name="Nobody can fly this", missionId="m-x", deviceId=drone_id, deviceGroupId=group)
        done = wait_status(e, h, job["jobId"], {"COMPLETED", "FAILED"})
        assert done["status"] == "FAILED"
        assert done["error"] == "rejected by the agent: no handler 'mission' on this agent"
    finally:
        agent.terminate()
        agent.wait(10)


# -- listing -----------------------------------------------------------------------------------


def test_list_filters_by_status_limits_and_answers_newest_first(
        client: Client, e: httpx.Client, h: dict, drone: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    made = [create(e, h, name=f"Later {i}", missionId=f"m-l{i}", deviceId=drone, deviceGroupId=GROUP,
                   scheduledAt=later) for i in range(3)]
    response = e.get("/v3/jobs", headers=h, params={"status": "PENDING", "limit": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "jobs", "count"} and body["success"] is True
    assert body["count"] == len(body["jobs"]) == 2
    assert [job["jobId"] for job in body["jobs"]] == [made[2]["jobId"], made[1]["jobId"]]
    for job in body["jobs"]:
        assert set(job) == SUMMARY_KEYS and job["status"] == "PENDING"

    everything = e.get("/v3/jobs", headers=h, params={"limit": 1000}).json()
    assert everything["count"] == len(everything["jobs"]) > 3
    created = [job["createdAt"] for job in everything["jobs"]]
    assert created == sorted(created, reverse=True)
    assert len(e.get("/v3/jobs", headers=h).json()["jobs"]) == min(20, everything["count"])
    completed = e.get("/v3/jobs", headers=h, params={"status": "COMPLETED"}).json()["jobs"]
    assert completed and all(job["status"] == "COMPLETED" for job in completed)
    # Native jobs are not missions.
    native = client.http.post("/v1/jobs", json={"project_id": "default", "name": "native", "slug": unique("n"),
                                                "endpoint_url": "https://example.test/x"}).json()
    assert native["id"] not in {job["jobId"] for job in e.get("/v3/jobs", headers=h, params={"limit": 1000})
                                .json()["jobs"]}
    assert_error(e.get(f"/v3/jobs/{native['id']}", headers=h), 404, "Job not found")
    for job in made:
        assert e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h).status_code == 200

    for params in ({"status": "RUNNING"}, {"status": "pending"}, {"limit": "0"}, {"limit": "abc"},
                   {"limit": "1001"}):
        assert_error(e.get("/v3/jobs", headers=h, params=params), 400, "invalid_request")


# -- documented errors -------------------------------------------------------------------------


def test_unknown_groups_devices_and_jobs(client: Client, e: httpx.Client, h: dict, drone: str) -> None:
    count = e.get("/v3/jobs", headers=h, params={"limit": 1000}).json()["count"]
    assert_error(e.post("/v3/jobs/create", headers=h, json={"name": "x", "deviceGroupId": "no-such-group"}),
                 404, "Device group not found", "The specified device group does not exist")
    assert_error(e.post("/v3/jobs/create", headers=h, json={"name": "x", "deviceGroupId": GROUP,
                                                            "deviceId": "no-such-drone"}),
                 404, "Device not found")
    elsewhere = new_group(client)
    assert_error(e.post("/v3/jobs/create", headers=h, json={"name": "x", "deviceGroupId": elsewhere,
                                                            "deviceId": drone}), 400, "invalid_request",
                 f"device {drone} is not in device group {elsewhere}")
    # A group with no drone at all (online or not): no drone could ever fly it.
    assert_error(e.post("/v3/jobs/create", headers=h, json={"name": "x", "deviceGroupId": new_group(client)}),
                 400, "invalid_request", "the job has no target devices")
    assert e.get("/v3/jobs", headers=h, params={"limit": 1000}).json()["count"] == count  # nothing half-created
    missing = str(uuid.uuid4())
    for response in (e.get(f"/v3/jobs/{missing}", headers=h), e.patch(f"/v3/jobs/{missing}", headers=h, json={}),
                     e.delete(f"/v3/jobs/{missing}", headers=h), e.post(f"/v3/jobs/{missing}/cancel", headers=h)):
        assert_error(response, 404, "Job not found", "The specified job ID does not exist")


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b"{}", b'{"name": "x"}', b'{"deviceGroupId": "group-uuid-789"}',
    b'{"name": "", "deviceGroupId": "group-uuid-789"}', b'{"name": 5, "deviceGroupId": "group-uuid-789"}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "priority": 0}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "priority": 11}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "priority": "5"}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "priority": 2.5}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "metadata": ["a"]}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "scheduledAt": "tomorrow"}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "deviceId": "bad id"}',
    b'{"name": "x", "deviceGroupId": "group-uuid-789", "color": "red"}',
])
def test_invalid_create_bodies_are_invalid_request(e: httpx.Client, h: dict, drone: str, body: bytes) -> None:
    assert_error(e.post("/v3/jobs/create", headers={**h, "Content-Type": "application/json"}, content=body),
                 400, "invalid_request")


def test_invalid_updates_are_invalid_request(e: httpx.Client, h: dict, drone: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    job = create(e, h, name="Editable", missionId="m-e", deviceId=drone, deviceGroupId=GROUP, scheduledAt=later)
    for body in ({"priority": 0}, {"priority": 11}, {"priority": "high"}, {"name": ""}, {"name": 3},
                 {"deviceId": "other"}, {"status": "COMPLETED"}):
        assert_error(e.patch(f"/v3/jobs/{job['jobId']}", headers=h, json=body), 400, "invalid_request")
    seen = get(e, h, job["jobId"])
    assert (seen["name"], seen["priority"], seen["status"]) == ("Editable", 5, "PENDING")
    assert e.post(f"/v3/jobs/{job['jobId']}/cancel", headers=h).status_code == 200


# -- refusals ----------------------------------------------------------------------------------


def test_missing_bad_and_wrong_scope_tokens_are_refused(platform, e: httpx.Client, token: str, drone: str) -> None:
    body = {"name": "x", "deviceGroupId": GROUP}
    for response in (e.get("/v3/jobs"), e.post("/v3/jobs/create", json=body), e.get(f"/v3/jobs/{uuid.uuid4()}"),
                     e.get("/v3/jobs", headers={"Authorization": "Token abc"})):
        assert_error(response, 401, "unauthorized", "A Bearer access token is required")
        assert response.headers["www-authenticate"].startswith("Bearer")
    # A signature that does not verify, a token signed with another key, a token with no key id
    # (few enough failures from one address that the gateway does not slow it down).
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}{'BBBB' if signature.endswith('AAAA') else 'AAAA'}"
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "another-signing-key-" + "x" * 32,
                        algorithm="HS256", headers=jwt.get_unverified_header(token))
    for bad in (tampered, forged, "eyJhbGciOiJIUzI1NiJ9.e30.x"):
        response = e.post("/v3/jobs/create", headers=bearer(bad), json=body)
        assert_error(response, 401, "invalid_token", "The access token is invalid")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    viewer = issue(e, service_account(platform, ["READ"]))
    assert e.get("/v3/jobs", headers=bearer(viewer)).status_code == 200
    for response in (e.post("/v3/jobs/create", headers=bearer(viewer), json=body),
                     e.patch(f"/v3/jobs/{uuid.uuid4()}", headers=bearer(viewer), json={"name": "y"}),
                     e.delete(f"/v3/jobs/{uuid.uuid4()}", headers=bearer(viewer)),
                     e.post(f"/v3/jobs/{uuid.uuid4()}/cancel", headers=bearer(viewer))):
        assert_error(response, 403, "insufficient_scope")
    trigger_only = issue(e, service_account(platform, ["READ", "TRIGGER"]))
    assert_error(e.post("/v3/jobs/create", headers=bearer(trigger_only), json=body), 403, "insufficient_scope",
                 "The access token lacks the WRITE scope")
    # A native API key is a Bearer credential too.
    assert e.get("/v3/jobs", headers=bearer(ADMIN_KEY)).status_code == 200


def test_another_tenants_jobs_groups_and_devices_are_not_found(
        platform, client: Client, e: httpx.Client, h: dict, drone: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    mine = create(e, h, name="Mine", missionId="m-mine", deviceId=drone, deviceGroupId=GROUP, scheduledAt=later)
    their_key, their_tenant = other_tenant(platform)
    theirs = bearer(issue(e, service_account(platform, ["READ", "TRIGGER", "WRITE"], tenant=their_tenant)))
    for response in (e.get(f"/v3/jobs/{mine['jobId']}", headers=theirs),
                     e.patch(f"/v3/jobs/{mine['jobId']}", headers=theirs, json={"name": "stolen"}),
                     e.delete(f"/v3/jobs/{mine['jobId']}", headers=theirs),
                     e.post(f"/v3/jobs/{mine['jobId']}/cancel", headers=theirs)):
        assert_error(response, 404, "Job not found", "The specified job ID does not exist")
    assert mine["jobId"] not in {job["jobId"] for job in e.get("/v3/jobs", headers=theirs).json()["jobs"]}
    assert_error(e.post("/v3/jobs/create", headers=theirs, json={"name": "x", "deviceGroupId": GROUP}),
                 404, "Device group not found")
    # Their own group of the same name, and my drone named in it.
    native = {"Authorization": f"Bearer {their_key}"}
    assert client.http.post("/v1/device-groups", headers=native, json={"id": GROUP}).status_code == 201
    assert_error(e.post("/v3/jobs/create", headers=theirs, json={"name": "x", "deviceGroupId": GROUP,
                                                                 "deviceId": drone}), 404, "Device not found")
    seen = get(e, h, mine["jobId"])
    assert (seen["name"], seen["status"]) == ("Mine", "PENDING")
    assert e.post(f"/v3/jobs/{mine['jobId']}/cancel", headers=h).status_code == 200


def test_unknown_endpoints_and_methods_answer_in_the_surfaces_shape(e: httpx.Client, h: dict) -> None:
    assert_error(e.get("/v3/missions", headers=h), 404, "not_found")
    assert_error(e.get("/v3", headers=h), 404, "not_found")
    response = e.put(f"/v3/jobs/{uuid.uuid4()}", headers=h, json={})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert_error(e.get("/v3/jobs/create", headers=h), 404, "Job not found")  # GET /v3/jobs/{jobId}
    assert_error(e.delete("/v3/jobs", headers=h), 405, "method_not_allowed")
