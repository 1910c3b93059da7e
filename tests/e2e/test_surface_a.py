"""Surface A (AndroMate device jobs) end to end: real processes, a real agent, the documented example."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.channels import Channels

from .conftest import ADMIN_KEY, Client

pytestmark = pytest.mark.e2e

EXECUTION_KEYS = {"jobExecutionId", "jobName", "deviceId", "deviceName", "execState", "launchedAt"}
LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def device(client: Client):
    """The document's device: "device-42", named "Samsung A12", with its agent connected."""
    response = client.http.post("/v1/devices", json={"id": "device-42", "name": "Samsung A12"})
    assert response.status_code == 201, response.text
    agent = client.start_agent("device-42", response.json()["credential"])
    deadline = time.monotonic() + 15
    while not client.http.get("/v1/devices/device-42").json()["online"]:
        assert time.monotonic() < deadline, "agent never came online"
        time.sleep(0.1)
    yield "device-42"
    agent.terminate()
    agent.wait(10)


def create_job(client: Client, name: str, command: str, device_id: str = "device-42", **fields) -> dict:
    body = {"project_id": "default", "name": name, "slug": f"{name}-{uuid.uuid4().hex[:6]}", "command": command,
            "targets": {"device_ids": [device_id]}, **fields}
    response = client.http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def qos_job(client: Client, device: str) -> dict:
    return create_job(client, "qos-sms-test", "echo sms ok", max_attempts=1)


@pytest.fixture(scope="module")
def a(platform) -> httpx.Client:
    """A bare client for surface A (each test sets its X-API-Key)."""
    return httpx.Client(base_url=platform.base_url, timeout=10)


def execute(a: httpx.Client, key: str, body) -> httpx.Response:
    return a.post("/job/api/jobs/execute", headers={"X-API-Key": key, "Content-Type": "application/json"},
                  json=body)


def wait_state(a: httpx.Client, execution_id: int, states: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = a.get(f"/job/api/jobs/executions/{execution_id}", headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        if response.json()["execState"] in states or time.monotonic() > deadline:
            return response.json()
        time.sleep(0.1)


def create_key(client: Client, scopes: list[str], expires_at: datetime | None = None) -> str:
    body: dict = {"name": f"key-{uuid.uuid4().hex[:6]}", "scopes": scopes}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat().replace("+00:00", "Z")
    response = client.http.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()["key"]


def assert_error(response: httpx.Response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "status"}, body
    assert body["code"] == code and body["status"] == status, body
    if message is not None:
        assert body["message"] == message, body


def test_the_documented_example_creates_one_execution_per_device_and_it_succeeds(
        client: Client, a: httpx.Client, qos_job: dict) -> None:
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    response = a.post("/job/api/jobs/execute",
                      headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"},
                      content=b"""{
        "jobName": "qos-sms-test",
        "deviceIds": ["device-42"]
      }""")
    assert response.status_code == 201, response.text
    executions = response.json()
    assert isinstance(executions, list) and len(executions) == 1
    execution = executions[0]
    assert set(execution) == EXECUTION_KEYS
    assert isinstance(execution["jobExecutionId"], int) and not isinstance(execution["jobExecutionId"], bool)
    assert execution["jobName"] == "qos-sms-test"
    assert execution["deviceId"] == "device-42" and execution["deviceName"] == "Samsung A12"
    assert execution["execState"] == "PENDING"
    assert LOCAL_TIME.match(execution["launchedAt"]), execution
    launched = datetime.fromisoformat(execution["launchedAt"])
    assert before <= launched <= datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)

    done = wait_state(a, execution["jobExecutionId"], {"SUCCESS", "FAILURE"})
    assert done["execState"] == "SUCCESS", done
    assert {k: v for k, v in done.items() if k != "execState"} == \
        {k: v for k, v in execution.items() if k != "execState"}


def test_a_failing_command_ends_in_failure(client: Client, a: httpx.Client, device: str) -> None:
    create_job(client, "failing-job", "exit 3", max_attempts=1)
    response = execute(a, ADMIN_KEY, {"jobName": "failing-job", "deviceIds": [device]})
    assert response.status_code == 201, response.text
    done = wait_state(a, response.json()[0]["jobExecutionId"], {"SUCCESS", "FAILURE"})
    assert done["execState"] == "FAILURE", done


def test_several_devices_get_one_execution_each_with_distinct_numbers(
        client: Client, a: httpx.Client, qos_job: dict) -> None:
    other = client.http.post("/v1/devices", json={"id": "device-43", "name": "Pixel 7"})
    assert other.status_code == 201, other.text
    response = execute(a, ADMIN_KEY, {"jobName": "qos-sms-test", "deviceIds": ["device-42", "device-43"]})
    assert response.status_code == 201, response.text
    executions = response.json()
    assert [(e["deviceId"], e["deviceName"]) for e in executions] == \
        [("device-42", "Samsung A12"), ("device-43", "Pixel 7")]
    numbers = [e["jobExecutionId"] for e in executions]
    assert len(set(numbers)) == 2 and numbers == sorted(numbers)
    fetched = a.get(f"/job/api/jobs/executions/{numbers[1]}", headers={"X-API-Key": ADMIN_KEY})
    assert fetched.status_code == 200 and fetched.json()["deviceName"] == "Pixel 7"


def test_one_unknown_device_fails_the_whole_call_and_creates_nothing(
        client: Client, a: httpx.Client, qos_job: dict) -> None:
    before = client.http.get("/v1/runs", params={"job_id": qos_job["id"], "limit": 1000}).json()
    response = execute(a, ADMIN_KEY, {"jobName": "qos-sms-test", "deviceIds": ["device-42", "device-nope"]})
    assert_error(response, 404, "J-001", "Device not found")
    after = client.http.get("/v1/runs", params={"job_id": qos_job["id"], "limit": 1000}).json()
    assert {r["id"] for r in after} == {r["id"] for r in before}


def test_unknown_job_is_j301(a: httpx.Client, qos_job: dict) -> None:
    assert_error(execute(a, ADMIN_KEY, {"jobName": "no-such-job", "deviceIds": ["device-42"]}),
                 404, "J-301", "Job not found")


def test_unknown_execution_is_j501(a: httpx.Client) -> None:
    for ref in ("999999999", "0", "abc", "-1", str(2**70)):
        response = a.get(f"/job/api/jobs/executions/{ref}", headers={"X-API-Key": ADMIN_KEY})
        assert_error(response, 404, "J-501", "Job execution not found")


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'"x"', b"{}", b'{"deviceIds": ["device-42"]}', b'{"jobName": "", "deviceIds": ["d"]}',
    b'{"jobName": "qos-sms-test"}', b'{"jobName": "qos-sms-test", "deviceIds": []}',
    b'{"jobName": "qos-sms-test", "deviceIds": "device-42"}', b'{"jobName": 5, "deviceIds": ["device-42"]}',
    b'{"jobName": "qos-sms-test", "deviceIds": [42]}', b'{"jobName": "qos-sms-test", "deviceIds": [""]}',
])
def test_invalid_bodies_are_j500(a: httpx.Client, body: bytes) -> None:
    response = a.post("/job/api/jobs/execute", headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"},
                      content=body)
    assert_error(response, 400, "J-500", "Validation error")


def test_missing_unknown_and_revoked_keys_are_j802(client: Client, a: httpx.Client) -> None:
    body = {"jobName": "qos-sms-test", "deviceIds": ["device-42"]}
    assert_error(a.post("/job/api/jobs/execute", json=body), 403, "J-802", "Invalid API key")
    assert_error(execute(a, "jl_not_a_real_key_000000000000", body), 403, "J-802", "Invalid API key")
    assert_error(a.get("/job/api/jobs/executions/1"), 403, "J-802", "Invalid API key")

    created = client.http.post("/v1/api-keys", json={"name": "to-revoke", "scopes": ["READ"]}).json()
    assert client.http.delete(f"/v1/api-keys/{created['id']}").status_code == 204
    response = a.get("/job/api/jobs/executions/1", headers={"X-API-Key": created["key"]})
    assert_error(response, 403, "J-802", "Invalid API key")


def test_an_expired_key_is_j803(client: Client, a: httpx.Client) -> None:
    key = create_key(client, ["READ", "TRIGGER"], expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    time.sleep(2.0)  # never used before it expired, so no gateway cache holds it
    response = execute(a, key, {"jobName": "qos-sms-test", "deviceIds": ["device-42"]})
    assert_error(response, 403, "J-803", "API key is expired")


def test_missing_scopes_are_j804(client: Client, a: httpx.Client, qos_job: dict) -> None:
    read_only = create_key(client, ["READ"])
    response = execute(a, read_only, {"jobName": "qos-sms-test", "deviceIds": ["device-42"]})
    assert_error(response, 403, "J-804", "API key does not have the required permission: TRIGGER")

    trigger_only = create_key(client, ["TRIGGER"])
    response = execute(a, trigger_only, {"jobName": "qos-sms-test", "deviceIds": ["device-42"]})
    assert response.status_code == 201, response.text  # TRIGGER alone can run a job and see what it created
    execution = response.json()[0]
    assert execution["deviceName"] == "Samsung A12" and execution["jobName"] == "qos-sms-test"
    response = a.get(f"/job/api/jobs/executions/{execution['jobExecutionId']}", headers={"X-API-Key": trigger_only})
    assert_error(response, 403, "J-804", "API key does not have the required permission: READ")


def test_another_tenants_job_device_and_execution_are_not_found(platform, client: Client, a: httpx.Client,
                                                                qos_job: dict) -> None:
    other_key = asyncio.run(_other_tenant_key(platform))
    mine = execute(a, ADMIN_KEY, {"jobName": "qos-sms-test", "deviceIds": ["device-42"]}).json()[0]
    headers = {"Authorization": f"Bearer {other_key}"}
    assert_error(execute(a, other_key, {"jobName": "qos-sms-test", "deviceIds": ["device-42"]}),
                 404, "J-301", "Job not found")
    response = a.get(f"/job/api/jobs/executions/{mine['jobExecutionId']}", headers={"X-API-Key": other_key})
    assert_error(response, 404, "J-501", "Job execution not found")
    other_device = client.http.post("/v1/devices", headers=headers, json={"id": "other-dev", "name": "theirs"})
    assert other_device.status_code == 201, other_device.text
    other_job = client.http.post("/v1/jobs", headers=headers, json={
        "project_id": "default", "name": "their-job", "slug": "their-job", "command": "true",
        "targets": {"device_ids": ["other-dev"]}})
    assert other_job.status_code == 201, other_job.text
    assert_error(execute(a, other_key, {"jobName": "their-job", "deviceIds": ["device-42"]}),
                 404, "J-001", "Device not found")
    assert_error(execute(a, ADMIN_KEY, {"jobName": "their-job", "deviceIds": ["device-42"]}),
                 404, "J-301", "Job not found")
    assert_error(execute(a, ADMIN_KEY, {"jobName": "qos-sms-test", "deviceIds": ["other-dev"]}),
                 404, "J-001", "Device not found")


async def _other_tenant_key(platform) -> str:
    """An ADMIN key of a new tenant, through the auth service's admin RPC (as tests/security does)."""
    token = (platform.data_dir / "service-token").read_text().strip()
    channels = Channels(service_token=token)
    try:
        admin = auth_pb2_grpc.AuthAdminServiceStub(channels.get(platform.addr("auth")))
        tenant = await admin.CreateTenant(auth_pb2.CreateTenantRequest(name=f"t-{uuid.uuid4().hex[:6]}"))
        await admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="admin"))
        key = await admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, project_id="default", user_login="admin", name="admin", scopes=["ADMIN"]))
        return key.key
    finally:
        await channels.close()
