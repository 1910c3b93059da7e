"""Surface B (TrueFoundry job runs) end to end: real processes, a real agent, the documented example."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.channels import Channels

from .conftest import ADMIN_KEY, Client

pytestmark = pytest.mark.e2e

DEVICE = "tf-node-1"
# The document's request and response, verbatim (its placeholders filled in by the test).
DOCUMENTED_REQUEST = """{
"deploymentId": "<string>",
"applicationId": "<string>",
"input": {
"command": "<string>",
"params": {}
}
}"""
DOCUMENTED_RESPONSE = json.loads("""{
"message": "<string>",
"jobRunName": "<string>",
"data": {
"name": "<string>",
"applicationName": "<string>",
"deploymentVersion": "<string>",
"createdAt": 123,
"endTime": 123,
"duration": 123,
"command": "<string>",
"totalRetries": 123,
"error": "<string>",
"status": "CREATED",
"triggeredBy": "<string>",
"triggeredBySubject": {
"subjectId": "<string>",
"subjectType": "user",
"subjectSlug": "<string>",
"subjectDisplayName": "<string>"
},
"exitCode": 123,
"externalId": "<string>"
}
}""")
# What the vendor's own client also reads from a JobRun (its `id` is required there).
CLIENT_KEYS = {"id", "applicationId", "deploymentId"}
ERROR_KEYS = {"statusCode", "message", "code"}


@pytest.fixture(scope="module")
def device(client: Client):
    response = client.http.post("/v1/devices", json={"id": DEVICE, "name": "Training node"})
    assert response.status_code == 201, response.text
    agent = client.start_agent(DEVICE, response.json()["credential"])
    deadline = time.monotonic() + 15
    while not client.http.get(f"/v1/devices/{DEVICE}").json()["online"]:
        assert time.monotonic() < deadline, "agent never came online"
        time.sleep(0.1)
    yield DEVICE
    agent.terminate()
    agent.wait(10)


def create_job(client: Client, command: str, **fields) -> dict:
    slug = f"train-{uuid.uuid4().hex[:6]}"
    body = {"project_id": "default", "name": slug, "slug": slug, "command": command,
            "targets": {"device_ids": [DEVICE]}, "max_attempts": 1, **fields}
    response = client.http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def b(platform) -> httpx.Client:
    return httpx.Client(base_url=f"{platform.base_url}/api/svc/v1", timeout=10,
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.fixture(scope="module")
def train_job(client: Client, device: str) -> dict:
    return create_job(client, "echo training {{epochs}} epochs", default_inputs={"epochs": "1"})


def trigger(b: httpx.Client, body: Any, key: str = ADMIN_KEY) -> httpx.Response:
    return b.post("/jobs/trigger", json=body, headers={"Authorization": f"Bearer {key}"})


def triggered(b: httpx.Client, body: Any) -> dict:
    response = trigger(b, body)
    assert response.status_code == 200, response.text
    return response.json()


def get_run(b: httpx.Client, application_id: str, name: str, key: str = ADMIN_KEY) -> httpx.Response:
    return b.get(f"/jobs/{application_id}/runs/{name}", headers={"Authorization": f"Bearer {key}"})


def wait_status(b: httpx.Client, application_id: str, name: str, statuses: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = get_run(b, application_id, name)
        assert response.status_code == 200, response.text
        run = response.json()["data"]
        if run["status"] in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def logs(client: Client, run_id: str) -> str:
    return client.http.get(f"/v1/runs/{run_id}/logs").json()["text"]


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"details"}, body
    assert body["statusCode"] == status and isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["code"], str), body
    if "details" in body:
        assert isinstance(body["details"], list) and all(isinstance(d, dict) for d in body["details"]), body
    if message is not None:
        assert body["message"] == message, body
    return body


def shape(value: Any) -> Any:
    """The JSON shape of a value: its keys (recursively) and the JSON type of each leaf."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def create_key(client: Client, scopes: list[str], expires_at: datetime | None = None) -> tuple[str, str]:
    body: dict = {"name": f"key-{uuid.uuid4().hex[:6]}", "scopes": scopes}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat().replace("+00:00", "Z")
    response = client.http.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()["key"], response.json()["id"]


# -- the document ---------------------------------------------------------------------------------


def test_the_documented_example_triggers_a_run_that_finishes(client: Client, b: httpx.Client, train_job: dict) -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    body = (DOCUMENTED_REQUEST.replace('"deploymentId": "<string>"', f'"deploymentId": "{train_job["version_id"]}"')
            .replace('"applicationId": "<string>"', f'"applicationId": "{train_job["id"]}"')
            .replace('"command": "<string>"', '"command": "echo documented"'))
    response = b.post("/jobs/trigger", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == set(DOCUMENTED_RESPONSE)
    data = answer["data"]
    assert set(data) == set(DOCUMENTED_RESPONSE["data"]) | CLIENT_KEYS
    assert set(data["triggeredBySubject"]) == set(DOCUMENTED_RESPONSE["data"]["triggeredBySubject"])
    assert answer["message"] and answer["jobRunName"] == data["name"]
    assert data["applicationName"] == train_job["name"] and data["deploymentVersion"] == "1"
    assert (data["applicationId"], data["deploymentId"]) == (train_job["id"], train_job["version_id"])
    assert data["status"] in {"CREATED", "SCHEDULED", "RUNNING"}
    assert data["command"] == "echo documented" and data["totalRetries"] == 0
    assert before <= data["createdAt"] <= int(datetime.now(UTC).timestamp() * 1000) + 1000
    assert data["endTime"] is None and data["duration"] is None and data["exitCode"] is None
    assert data["triggeredBy"] == "admin"
    assert data["triggeredBySubject"]["subjectType"] == "user"
    assert data["triggeredBySubject"]["subjectSlug"] == "admin"

    done = wait_status(b, train_job["id"], data["name"], {"FINISHED", "FAILED"})
    assert done["status"] == "FINISHED", done
    assert shape({**answer, "data": {k: v for k, v in done.items() if k not in CLIENT_KEYS}}) == \
        {**shape(DOCUMENTED_RESPONSE), "data": {**shape(DOCUMENTED_RESPONSE["data"]), "error": "NoneType",
                                                 "status": "str"}}  # a finished run has no error
    assert done["exitCode"] == 0 and done["endTime"] >= done["createdAt"] and done["duration"] >= 0
    assert logs(client, done["id"]) == "documented\n"
    assert {k: v for k, v in done.items() if k not in ("status", "endTime", "duration", "exitCode")} == \
        {k: v for k, v in data.items() if k not in ("status", "endTime", "duration", "exitCode")}


def test_params_fill_the_jobs_template_and_a_command_overrides_it(client: Client, b: httpx.Client,
                                                                   train_job: dict) -> None:
    run = triggered(b, {"applicationId": train_job["id"], "input": {"params": {"epochs": "3; echo injected"}}})
    done = wait_status(b, train_job["id"], run["jobRunName"], {"FINISHED", "FAILED"})
    assert done["status"] == "FINISHED" and done["command"] == "echo training '3; echo injected' epochs"
    assert logs(client, done["id"]) == "training 3; echo injected epochs\n"

    run = triggered(b, {"applicationId": train_job["id"], "input": {"command": "echo override {{epochs}}"}})
    done = wait_status(b, train_job["id"], run["jobRunName"], {"FINISHED", "FAILED"})
    assert done["command"] == "echo override 1" and logs(client, done["id"]) == "override 1\n"
    default = triggered(b, {"applicationId": train_job["id"]})["data"]
    assert default["command"] == "echo training 1 epochs"  # the job's own command, for the next run as before


def test_a_deployment_runs_that_version_of_the_job(client: Client, b: httpx.Client, device: str) -> None:
    job = create_job(client, "echo version one")
    patched = client.http.patch(f"/v1/jobs/{job['id']}", json={"command": "echo version two"})
    assert patched.status_code == 200 and patched.json()["version"] == 2
    old = triggered(b, {"deploymentId": job["version_id"]})["data"]
    new = triggered(b, {"applicationId": job["id"]})["data"]
    assert (old["deploymentVersion"], old["deploymentId"], old["applicationId"]) == ("1", job["version_id"], job["id"])
    assert (new["deploymentVersion"], new["deploymentId"]) == ("2", patched.json()["version_id"])
    for run, text in ((old, "version one\n"), (new, "version two\n")):
        assert wait_status(b, job["id"], run["name"], {"FINISHED", "FAILED"})["status"] == "FINISHED"
        assert logs(client, run["id"]) == text
    other = create_job(client, "true")
    assert_error(trigger(b, {"applicationId": other["id"], "deploymentId": job["version_id"]}), 404)
    assert_error(trigger(b, {"deploymentId": "no-such-deployment"}), 404)


def test_the_alias_names_the_run_and_names_are_unique_per_application(b: httpx.Client, train_job: dict,
                                                                      client: Client) -> None:
    alias = f"nightly-{uuid.uuid4().hex[:6]}"
    run = triggered(b, {"applicationId": train_job["id"], "metadata": {"job_run_name_alias": alias}})
    assert run["jobRunName"] == run["data"]["name"] == alias
    assert get_run(b, train_job["id"], alias).json()["data"]["id"] == run["data"]["id"]
    body = assert_error(trigger(b, {"applicationId": train_job["id"], "metadata": {"job_run_name_alias": alias}}), 422)
    assert alias in body["message"]
    other = create_job(client, "true")
    assert triggered(b, {"applicationId": other["id"], "metadata": {"job_run_name_alias": alias}})["jobRunName"] == alias
    names = {triggered(b, {"applicationId": train_job["id"]})["jobRunName"] for _ in range(3)}
    assert len(names) == 3 and all(name.startswith(f"{train_job['slug']}-") for name in names)
    assert_error(trigger(b, {"applicationId": train_job["id"], "metadata": {"job_run_name_alias": "no spaces"}}), 400)


def test_failures_carry_the_exit_code_error_and_retries(client: Client, b: httpx.Client, device: str) -> None:
    job = create_job(client, "echo oops >&2; exit 3")
    run = triggered(b, {"applicationId": job["id"]})["data"]
    done = wait_status(b, job["id"], run["name"], {"FINISHED", "FAILED"})
    assert (done["status"], done["exitCode"], done["totalRetries"]) == ("FAILED", 3, 0)
    assert done["error"] and done["endTime"] and done["duration"] is not None

    retried = create_job(client, "exit 4", max_attempts=2, retry_strategy="fixed", retry_delays_secs=[1])
    run = triggered(b, {"applicationId": retried["id"]})["data"]
    done = wait_status(b, retried["id"], run["name"], {"FINISHED", "FAILED"}, timeout=30)
    assert (done["status"], done["exitCode"], done["totalRetries"]) == ("FAILED", 4, 1)


def test_triggered_by_is_the_callers_principal_never_the_body(platform, client: Client, b: httpx.Client,
                                                               train_job: dict) -> None:
    run = triggered(b, {"applicationId": train_job["id"], "triggeredBy": "mallory",
                        "triggeredBySubject": {"subjectId": "x", "subjectType": "team"},
                        "metadata": {"triggeredBy": "mallory"}})["data"]
    assert run["triggeredBy"] == "admin" and run["triggeredBySubject"]["subjectType"] == "user"
    assert run["triggeredBySubject"]["subjectId"] and run["triggeredBySubject"]["subjectId"] != "x"

    token = asyncio.run(_service_account_token(platform, "deployer", ["READ", "TRIGGER"]))
    assert token.count(".") == 2  # a JWT
    response = trigger(b, {"applicationId": train_job["id"]}, key=token)
    assert response.status_code == 200, response.text
    subject = response.json()["data"]["triggeredBySubject"]
    assert (subject["subjectType"], subject["subjectSlug"], subject["subjectDisplayName"]) == \
        ("serviceaccount", "deployer", "deployer")
    assert response.json()["data"]["triggeredBy"] == "deployer"
    name = response.json()["jobRunName"]
    assert get_run(b, train_job["id"], name, key=token).status_code == 200


# -- reading, listing, deleting, terminating ------------------------------------------------------


def test_runs_are_listed_filtered_sorted_and_paged(client: Client, b: httpx.Client, device: str) -> None:
    job = create_job(client, "echo {{n}}", default_inputs={"n": "0"})
    names = []
    for n in range(3):
        names.append(triggered(b, {"applicationId": job["id"], "input": {"params": {"n": str(n)}},
                                   "metadata": {"job_run_name_alias": f"batch-{n}"}})["jobRunName"])
        time.sleep(0.01)
    for name in names:
        assert wait_status(b, job["id"], name, {"FINISHED", "FAILED"})["status"] == "FINISHED"
    version_2 = client.http.patch(f"/v1/jobs/{job['id']}", json={"command": "exit 1"}).json()["version_id"]
    failed = triggered(b, {"deploymentId": version_2, "metadata": {"job_run_name_alias": "other-1"}})["jobRunName"]
    assert wait_status(b, job["id"], failed, {"FINISHED", "FAILED"})["status"] == "FAILED"

    def listed(**params) -> tuple[list[str], dict]:
        response = b.get(f"/jobs/{job['id']}/runs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "pagination"}
        return [run["name"] for run in body["data"]], body["pagination"]

    assert listed() == (["other-1", "batch-2", "batch-1", "batch-0"], {"total": 4, "offset": 0, "limit": 100})
    assert listed(limit=2, offset=1) == (["batch-2", "batch-1"], {"total": 4, "offset": 1, "limit": 2})
    assert listed(limit=2, offset=4) == ([], {"total": 4, "offset": 4, "limit": 2})
    assert listed(order="asc")[0] == ["batch-0", "batch-1", "batch-2", "other-1"]
    assert listed(searchPrefix="batch-", sortBy="startTime", order="asc", limit=2) == \
        (["batch-0", "batch-1"], {"total": 3, "offset": 0, "limit": 2})
    assert listed(status="FAILED")[0] == ["other-1"]
    assert listed(status=["FAILED", "FINISHED"])[1]["total"] == 4
    assert listed(status="FINISHED,FAILED")[1]["total"] == 4
    assert listed(status="RUNNING") == ([], {"total": 0, "offset": 0, "limit": 100})
    assert listed(status="TERMINATING")[1]["total"] == 0
    assert listed(versionNumbers="2.0")[0] == ["other-1"]
    assert listed(versionNumbers=["1", "2"])[1]["total"] == 4
    assert listed(triggeredBy="admin")[1]["total"] == 4 and listed(triggeredBy="nobody")[1]["total"] == 0
    assert listed(sortBy="deploymentVersion", order="desc")[0][0] == "other-1"
    assert listed(sortBy="status", order="asc")[0][-1] == "other-1"  # failed comes after completed
    assert len(listed(sortBy="duration")[0]) == 4 and len(listed(sortBy="triggeredBy")[0]) == 4
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"offset": -1}, {"sortBy": "name"},
                {"order": "up"}, {"status": "DONE"}, {"versionNumbers": "1.5"}, {"versionNumbers": "v1"}):
        assert_error(b.get(f"/jobs/{job['id']}/runs", params=bad), 400)
    assert_error(b.get("/jobs/no-such-application/runs"), 404, "Application not found")


def test_a_run_is_read_back_and_deleted_once_finished(client: Client, b: httpx.Client, device: str) -> None:
    job = create_job(client, "sleep 30")
    run = triggered(b, {"applicationId": job["id"]})
    name = run["jobRunName"]
    assert get_run(b, job["id"], name).json()["data"]["id"] == run["data"]["id"]
    assert_error(get_run(b, job["id"], "no-such-run"), 404, "Job run not found")
    assert_error(get_run(b, "no-such-application", name), 404, "Application not found")
    wait_status(b, job["id"], name, {"RUNNING"})
    assert_error(b.delete(f"/jobs/{job['id']}/runs/{name}"), 409)  # still running: terminate it first
    terminated = b.post("/jobs/terminate", params={"deploymentId": job["version_id"], "jobRunName": name})
    assert terminated.status_code == 200, terminated.text
    response = b.delete(f"/jobs/{job['id']}/runs/{name}")
    assert response.status_code == 200 and response.json() == {"message": "Job run deleted"}, response.text
    assert_error(get_run(b, job["id"], name), 404, "Job run not found")
    assert client.http.get(f"/v1/runs/{run['data']['id']}").status_code == 404
    assert_error(b.delete(f"/jobs/{job['id']}/runs/{name}"), 404, "Job run not found")
    assert_error(b.delete(f"/jobs/no-such-application/runs/{name}"), 404, "Application not found")


def test_terminate_stops_the_command_on_the_device(client: Client, b: httpx.Client, device: str) -> None:
    job = create_job(client, "echo started; sleep 30; echo never")
    name = triggered(b, {"applicationId": job["id"]})["jobRunName"]
    running = wait_status(b, job["id"], name, {"RUNNING"})
    assert running["status"] == "RUNNING" and running["endTime"] is None
    response = b.post("/jobs/terminate", json={"deploymentId": job["version_id"], "jobRunName": name})
    assert response.status_code == 200, response.text
    assert response.json() == {"message": response.json()["message"], "jobRunStatus": "TERMINATED"}
    done = get_run(b, job["id"], name).json()["data"]
    assert done["status"] == "TERMINATED" and done["endTime"] and done["error"]
    assert client.http.get(f"/v1/runs/{done['id']}").json()["status"] == "canceled"
    # the device was told to stop: its single slot is free for the next run, which finishes
    quick = create_job(client, "echo next")
    follow = triggered(b, {"applicationId": quick["id"]})["jobRunName"]
    assert wait_status(b, quick["id"], follow, {"FINISHED", "FAILED"})["status"] == "FINISHED"
    assert "never" not in logs(client, done["id"])

    assert_error(b.post("/jobs/terminate", params={"deploymentId": job["version_id"], "jobRunName": name}), 422)
    assert_error(b.post("/jobs/terminate", params={"deploymentId": job["version_id"], "jobRunName": "nope"}), 404,
                 "Job run not found")
    assert_error(b.post("/jobs/terminate", params={"deploymentId": "nope", "jobRunName": name}), 404,
                 "Deployment not found")
    assert_error(b.post("/jobs/terminate", params={"deploymentId": job["version_id"]}), 400)
    assert_error(b.post("/jobs/terminate"), 400)


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'"x"', b"{}", b'{"input": {"command": "echo"}}', b'{"applicationId": 5}',
    b'{"applicationId": "a", "input": []}', b'{"applicationId": "a", "input": {"command": 5}}',
    b'{"applicationId": "a", "input": {"params": [1]}}', b'{"applicationId": "a", "metadata": "x"}',
    b'{"applicationId": "a", "metadata": {"job_run_name_alias": 7}}',
])
def test_invalid_trigger_bodies_are_400(b: httpx.Client, body: bytes) -> None:
    assert_error(b.post("/jobs/trigger", content=body, headers={"Content-Type": "application/json"}), 400)


def test_missing_invalid_expired_and_revoked_keys_are_401(client: Client, b: httpx.Client, train_job: dict) -> None:
    body = {"applicationId": train_job["id"]}
    bare = httpx.Client(base_url=str(b.base_url), timeout=10)
    for response in (bare.post("/jobs/trigger", json=body), bare.get(f"/jobs/{train_job['id']}/runs"),
                     trigger(b, body, key="jl_not_a_real_key_000000000000"),
                     trigger(b, body, key="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")):
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    key, key_id = create_key(client, ["READ", "TRIGGER"])
    assert trigger(b, body, key=key).status_code == 200
    assert client.http.delete(f"/v1/api-keys/{key_id}").status_code == 204
    assert_error(trigger(b, body, key=key), 401)
    expiring, _ = create_key(client, ["READ", "TRIGGER"], expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    time.sleep(2.0)  # never used before it expired, so no gateway cache holds it
    assert_error(trigger(b, body, key=expiring), 401)


def test_missing_scopes_are_403(client: Client, b: httpx.Client, train_job: dict) -> None:
    read_only, _ = create_key(client, ["READ"])
    assert_error(trigger(b, {"applicationId": train_job["id"]}, key=read_only), 403)
    trigger_only, _ = create_key(client, ["TRIGGER"])
    name = trigger(b, {"applicationId": train_job["id"]}, key=trigger_only).json()["jobRunName"]
    assert_error(get_run(b, train_job["id"], name, key=trigger_only), 403)
    headers = {"Authorization": f"Bearer {read_only}"}
    assert get_run(b, train_job["id"], name, key=read_only).status_code == 200
    assert_error(b.delete(f"/jobs/{train_job['id']}/runs/{name}", headers=headers), 403)
    assert_error(b.post("/jobs/terminate", headers=headers,
                        params={"deploymentId": train_job["version_id"], "jobRunName": name}), 403)


def test_another_tenants_application_deployment_and_run_are_answered_as_missing(
        platform, b: httpx.Client, train_job: dict) -> None:
    other = asyncio.run(_other_tenant_key(platform))
    name = triggered(b, {"applicationId": train_job["id"]})["jobRunName"]
    headers = {"Authorization": f"Bearer {other}"}
    mine, missing = train_job["id"], "no-such-application"
    for theirs, unknown in (
        (b.get(f"/jobs/{mine}/runs", headers=headers), b.get(f"/jobs/{missing}/runs", headers=headers)),
        (b.get(f"/jobs/{mine}/runs/{name}", headers=headers), b.get(f"/jobs/{missing}/runs/{name}", headers=headers)),
        (b.delete(f"/jobs/{mine}/runs/{name}", headers=headers),
         b.delete(f"/jobs/{missing}/runs/{name}", headers=headers)),
        (b.post("/jobs/terminate", headers=headers, params={"deploymentId": train_job["version_id"],
                                                             "jobRunName": name}),
         b.post("/jobs/terminate", headers=headers, params={"deploymentId": "no-such", "jobRunName": name})),
    ):
        assert_error(theirs, 404)
        assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    theirs = trigger(b, {"applicationId": mine}, key=other)
    unknown = trigger(b, {"applicationId": missing}, key=other)
    assert_error(theirs, 404)
    assert theirs.json()["message"].replace(mine, "X") == unknown.json()["message"].replace(missing, "X")
    theirs = trigger(b, {"deploymentId": train_job["version_id"]}, key=other)
    unknown = trigger(b, {"deploymentId": "no-such-deployment"}, key=other)
    assert_error(theirs, 404)
    assert theirs.json()["message"].replace(train_job["version_id"], "X") == \
        unknown.json()["message"].replace("no-such-deployment", "X")
    assert get_run(b, mine, name).json()["data"]["status"] != "TERMINATED"  # untouched


async def _admin_stub(platform) -> tuple[Channels, auth_pb2_grpc.AuthAdminServiceStub]:
    token = (platform.data_dir / "service-token").read_text().strip()
    channels = Channels(service_token=token)
    return channels, auth_pb2_grpc.AuthAdminServiceStub(channels.get(platform.addr("auth")))


async def _other_tenant_key(platform) -> str:
    channels, admin = await _admin_stub(platform)
    try:
        tenant = await admin.CreateTenant(auth_pb2.CreateTenantRequest(name=f"t-{uuid.uuid4().hex[:6]}"))
        await admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="admin"))
        key = await admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, project_id="default", user_login="admin", name="admin", scopes=["ADMIN"]))
        return key.key
    finally:
        await channels.close()


async def _service_account_token(platform, name: str, scopes: list[str]) -> str:
    """A JWT of a new service account of the bootstrap tenant (client credentials)."""
    channels, admin = await _admin_stub(platform)
    try:
        tenants = await admin.ListTenants(auth_pb2.ListTenantsRequest())
        account = await admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tenants.tenants[0].id, project_id="default", name=name, scopes=scopes))
        auth = auth_pb2_grpc.AuthServiceStub(channels.get(platform.addr("auth")))
        issued = await auth.IssueToken(auth_pb2.IssueTokenRequest(client_id=account.client_id,
                                                                  client_secret=account.client_secret))
        return issued.access_token
    finally:
        await channels.close()
