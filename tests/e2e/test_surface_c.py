"""Surface C (the native /v1 API) as its documentation shows it, through the real gateway and services.

1. Every curl example of C-scheduler-v1-jobs.txt, replayed verbatim (method, path, body as written),
   with the documented response examples checked field by field. A `string` placeholder in the path is
   replaced by a real id where the example needs an existing object. Where the verbatim body cannot be
   valid (`"endpoint_url": "string"` is not a URL; `{}` names no job ids / no dependency), the verbatim
   request gets the documented validation error — as the vendor's own server answers it — and is then
   sent again with only that placeholder made real, and must give the documented response.
2. Every answer also matches the OpenAPI document the gateway serves (`/v1/openapi.json`): the status
   is the operation's success status and the body validates against its schema.
3. Bulk trigger of a device job on a simulated fleet: each item fans out to the job's targets.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e

# The curl examples, verbatim from C-scheduler-v1-jobs.txt.
CURL = {
    "list": '''curl -X GET "http://localhost:8080/v1/jobs?project_id=string"''',
    "create": '''curl -X POST "http://localhost:8080/v1/jobs" \\ -H "Content-Type: application/json" \\ -d '{ "project_id": "string", "name": "string", "slug": "string", "endpoint_url": "string" }\'''',
    "batch": '''curl -X POST "http://localhost:8080/v1/jobs/batch" \\ -H "Content-Type: application/json" \\ -d '[ { "project_id": "string", "name": "string", "slug": "string", "endpoint_url": "string" } ]\'''',
    "batch_enable": '''curl -X POST "http://localhost:8080/v1/jobs/batch-enable" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "batch_disable": '''curl -X POST "http://localhost:8080/v1/jobs/batch-disable" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "get": '''curl -X GET "http://localhost:8080/v1/jobs/string"''',
    "update": '''curl -X PATCH "http://localhost:8080/v1/jobs/string" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "delete": '''curl -X DELETE "http://localhost:8080/v1/jobs/string"''',
    "trigger": '''curl -X POST "http://localhost:8080/v1/jobs/string/trigger" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "bulk": '''curl -X POST "http://localhost:8080/v1/jobs/string/trigger/bulk" \\ -H "Content-Type: application/json" \\ -d '{ "items": [ {} ] }\'''',
    "versions": '''curl -X GET "http://localhost:8080/v1/jobs/string/versions"''',
    "clone": '''curl -X POST "http://localhost:8080/v1/jobs/string/clone" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "health": '''curl -X GET "http://localhost:8080/v1/jobs/string/health"''',
    "dependencies": '''curl -X GET "http://localhost:8080/v1/jobs/string/dependencies"''',
    "add_dependency": '''curl -X POST "http://localhost:8080/v1/jobs/string/dependencies" \\ -H "Content-Type: application/json" \\ -d '{}\'''',
    "delete_dependency": '''curl -X DELETE "http://localhost:8080/v1/jobs/string/dependencies/string"''',
    "version": '''curl -X GET "http://localhost:8080/v1/jobs/string/versions/string"''',
}
# Each example's route in the served OpenAPI document.
ROUTES = {
    "list": ("get", "/v1/jobs"), "create": ("post", "/v1/jobs"), "batch": ("post", "/v1/jobs/batch"),
    "batch_enable": ("post", "/v1/jobs/batch-enable"), "batch_disable": ("post", "/v1/jobs/batch-disable"),
    "get": ("get", "/v1/jobs/{job_id}"), "update": ("patch", "/v1/jobs/{job_id}"),
    "delete": ("delete", "/v1/jobs/{job_id}"), "trigger": ("post", "/v1/jobs/{job_id}/trigger"),
    "bulk": ("post", "/v1/jobs/{job_id}/trigger/bulk"), "versions": ("get", "/v1/jobs/{job_id}/versions"),
    "clone": ("post", "/v1/jobs/{job_id}/clone"), "health": ("get", "/v1/jobs/{job_id}/health"),
    "dependencies": ("get", "/v1/jobs/{job_id}/dependencies"),
    "add_dependency": ("post", "/v1/jobs/{job_id}/dependencies"),
    "delete_dependency": ("delete", "/v1/jobs/{job_id}/dependencies/{dep_id}"),
    "version": ("get", "/v1/jobs/{job_id}/versions/{version_id}"),
}

# The documented response examples (one of each shape), verbatim from C-scheduler-v1-jobs.txt.
JOB = json.loads('''{
"id": "string", "project_id": "string", "group_id": "string", "name": "string", "slug": "string",
"description": "string", "cron": "string", "payload_schema": {},
"tags": {"property1": "string", "property2": "string"}, "endpoint_url": "string", "fallback_endpoint_url": "string",
"max_attempts": 0, "timeout_secs": 0, "max_concurrency": 0, "execution_window_cron": "string", "timezone": "string",
"rate_limit_max": 0, "rate_limit_window_secs": 0, "max_concurrency_per_key": 0,
"rate_limit_keys": [{"name": "string", "max": 0, "window_secs": 0}],
"default_run_metadata": {"property1": "string", "property2": "string"}, "dedup_window_secs": 0, "enabled": true,
"webhook_url": "string", "webhook_secret": "string", "run_ttl_secs": 0, "retry_strategy": "string",
"retry_delays_secs": [0], "environment_id": "string", "version": 0, "version_id": "string", "version_policy": "pin",
"backwards_compatible": true, "created_by": "string", "updated_by": "string", "created_at": "2019-08-24T14:15:22Z",
"updated_at": "2019-08-24T14:15:22Z"}''')
RUN = json.loads('''{
"id": "string", "job_id": "string", "project_id": "string", "status": "delayed", "attempt": 0, "payload": {},
"result": {}, "metadata": {"property1": "string", "property2": "string"}, "error": "string",
"triggered_by": "string", "scheduled_at": "2019-08-24T14:15:22Z", "started_at": "2019-08-24T14:15:22Z",
"finished_at": "2019-08-24T14:15:22Z", "heartbeat_at": "2019-08-24T14:15:22Z",
"next_retry_at": "2019-08-24T14:15:22Z", "expires_at": "2019-08-24T14:15:22Z", "parent_run_id": "string",
"priority": 0, "idempotency_key": "string", "job_version": 0, "workflow_step_run_id": "string",
"max_attempts_override": 0, "timeout_secs_override": 0, "retry_backoff": "string", "retry_initial_delay_secs": 0,
"retry_max_delay_secs": 0, "execution_trace": {"queue_wait_ms": 0, "dequeue_ms": 0, "connect_ms": 0, "ttfb_ms": 0,
"transfer_ms": 0, "total_ms": 0, "dispatch_ms": 0}, "debug_mode": true, "continuation_of": "string",
"lineage_depth": 0, "tags": {"property1": "string", "property2": "string"}, "job_version_id": "string",
"created_by": "string", "batch_id": "string", "concurrency_key": "string", "created_at": "2019-08-24T14:15:22Z"}''')
BULK = json.loads('''{"results": [{"id": "string", "status": "string", "run_token": "string",
"idempotency_hit": true}], "total": 0, "created": 0}''')
VERSION = json.loads('''{
"id": "string", "job_id": "string", "version": 0, "name": "string", "slug": "string", "description": "string",
"cron": "string", "payload_schema": {}, "tags": {"property1": "string", "property2": "string"},
"endpoint_url": "string", "fallback_endpoint_url": "string", "max_attempts": 0, "timeout_secs": 0,
"webhook_url": "string", "webhook_secret": "string", "run_ttl_secs": 0, "created_at": "2019-08-24T14:15:22Z"}''')
HEALTH = json.loads('''{"total_runs": 0, "completed_runs": 0, "failed_runs": 0, "timed_out_runs": 0,
"crashed_runs": 0, "canceled_runs": 0, "expired_runs": 0, "success_rate": 0, "avg_duration_secs": 0,
"p95_duration_secs": 0, "health_score": 0}''')
DEPENDENCY = json.loads('''{"id": "string", "job_id": "string", "depends_on_job_id": "string",
"condition": "string", "created_at": "2019-08-24T14:15:22Z"}''')

# Enumerations of C-scheduler-openapi.yaml, and its `number` (not integer) fields.
RUN_STATUSES = {"delayed", "queued", "dequeued", "executing", "waiting", "completed", "failed", "timed_out",
                "crashed", "system_failed", "canceled", "expired", "dead_letter"}
ENUMS = {"status": RUN_STATUSES, "version_policy": {"pin", "latest", "minor"}}
NUMBERS = {"success_rate", "avg_duration_secs", "p95_duration_secs", "health_score"}
# Fields left out while unset, as the vendor's server leaves them out (`omitempty` on pointers and
# raw JSON): a time that has not happened yet, a payload / result / schema that is not there.
UNSET_MAY_BE_ABSENT = {"payload_schema", "payload", "result", "scheduled_at", "started_at", "finished_at",
                       "heartbeat_at", "next_retry_at", "expires_at"}


def check_shape(actual: Any, documented: Any, where: str = "") -> None:
    """`actual` has every documented field (unless unset and omitted), each of the documented JSON type."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        if set(documented) == {"property1", "property2"}:  # a map of strings
            assert all(isinstance(v, str) for v in actual.values()), f"{where}: {actual!r}"
            return
        for key, example in documented.items():
            path = f"{where}.{key}" if where else key
            if key not in actual:
                assert key in UNSET_MAY_BE_ABSENT, f"{path}: missing"
                continue
            value = actual[key]
            if key in ENUMS:
                assert value in ENUMS[key], f"{path}: {value!r} is not one of {sorted(ENUMS[key])}"
            elif key in NUMBERS:
                assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r}"
            elif isinstance(example, str) and example == "2019-08-24T14:15:22Z":
                assert isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo, \
                    f"{path}: {value!r} is no RFC 3339 time"
            elif example == {}:  # a free JSON object
                assert isinstance(value, dict), f"{path}: {value!r}"
            else:
                check_shape(value, example, path)
    elif isinstance(documented, list):
        assert isinstance(actual, list), f"{where}: expected an array, got {actual!r}"
        for i, item in enumerate(actual):
            check_shape(item, documented[0], f"{where}[{i}]")
    elif isinstance(documented, bool):
        assert isinstance(actual, bool), f"{where}: {actual!r}"
    elif isinstance(documented, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{where}: {actual!r}"
    else:
        assert isinstance(actual, str), f"{where}: {actual!r}"


class Replayer:
    def __init__(self, client: Client) -> None:
        self.http = client.http
        self.document = self.http.get("/v1/openapi.json").json()

    def send(self, name: str, ids: tuple[str, ...] = (), body: Any = None) -> httpx.Response:
        """The example as written, its `string` path segments replaced by `ids` in order (and its body by
        `body` when given); its answer checked against the served OpenAPI document."""
        words = shlex.split(CURL[name].replace(" \\ ", " "))
        method, url = words[words.index("-X") + 1], next(w for w in words if w.startswith("http://"))
        headers = dict(h.split(": ", 1) for h in (words[i + 1] for i, w in enumerate(words) if w == "-H"))
        data = words[words.index("-d") + 1] if "-d" in words else None
        path, _, query = url.removeprefix("http://localhost:8080").partition("?")
        segments, fill = path.split("/"), list(ids)
        for i, segment in enumerate(segments):
            if segment == "string" and fill:
                segments[i] = fill.pop(0)
        assert not fill, f"{name}: more ids than placeholders"
        content = json.dumps(body).encode() if body is not None else data.encode() if data is not None else None
        response = self.http.request(method, "/".join(segments) + (f"?{query}" if query else ""), content=content,
                                     headers=headers)
        self._check_against_document(name, response)
        return response

    def _check_against_document(self, name: str, response: httpx.Response) -> None:
        verb, template = ROUTES[name]
        operation = self.document["paths"][template][verb]
        if response.status_code < 400:
            assert str(response.status_code) in operation["responses"], (name, response.status_code)
            success = operation["responses"][str(response.status_code)]
            if response.status_code == 204:
                assert response.content == b""
                return
            schema = success["content"]["application/json"]["schema"]
        else:
            schema = {"$ref": "#/components/schemas/Error"}
        jsonschema.validate(response.json(), {**schema, "components": self.document["components"]})


@pytest.fixture(scope="module")
def replay(client: Client) -> Replayer:
    return Replayer(client)


@pytest.fixture(scope="module")
def silent() -> Any:
    """An endpoint that accepts connections and never answers: runs calling it stay executing."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    server.close()
    for connection in held:
        connection.close()


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def real(name: str, **fields: Any) -> Any:
    """The example's body with some fields made real."""
    body = json.loads(shlex.split(CURL[name].replace(" \\ ", " "))[-1])
    if isinstance(body, list):
        return [{**item, **fields} for item in body]
    return {**body, **fields}


def test_every_curl_example_of_the_jobs_document(replay: Replayer, client: Client, silent: str) -> None:
    # Create: the placeholder endpoint_url is refused as the vendor refuses it; a real one creates the job
    # with the documented defaults.
    assert "endpoint_url" in error(replay.send("create"), 400, "validation_error")
    created = replay.send("create", body=real("create", endpoint_url=silent))
    assert created.status_code == 201, created.text
    first = created.json()
    check_shape(first, JOB)
    assert (first["project_id"], first["name"], first["slug"], first["endpoint_url"]) == (
        "string", "string", "string", silent)
    assert (first["max_attempts"], first["timeout_secs"], first["enabled"], first["version_policy"],
            first["version"]) == (3, 300, True, "pin", 1)

    # Delete: unknown id 404, a job without runs 204.
    error(replay.send("delete"), 404, "not_found")
    assert replay.send("delete", (first["id"],)).status_code == 204
    error(replay.send("get", (first["id"],)), 404, "not_found")

    # Batch create (the slug is free again).
    assert "endpoint_url" in error(replay.send("batch"), 400, "validation_error")
    batch = replay.send("batch", body=real("batch", endpoint_url=silent))
    assert batch.status_code == 201, batch.text
    check_shape(batch.json(), [JOB])
    job = batch.json()[0]
    job_id = job["id"]

    # List, verbatim: project "string" is where the examples put their jobs.
    listed = replay.send("list")
    assert listed.status_code == 200
    check_shape(listed.json(), [JOB])
    assert [j["id"] for j in listed.json()] == [job_id]

    # Batch enable / disable: `{}` names no job (400, as the vendor answers); with job_ids they apply.
    for name in ("batch_disable", "batch_enable"):
        assert "job_ids" in error(replay.send(name), 400, "validation_error")
    assert replay.send("batch_disable", body={"job_ids": [job_id]}).status_code == 200
    assert replay.send("get", (job_id,)).json()["enabled"] is False
    assert "disabled" in error(replay.send("trigger", (job_id,)), 400, "validation_error")
    assert replay.send("batch_enable", body={"job_ids": [job_id]}).status_code == 200

    # Get, update.
    error(replay.send("get"), 404, "not_found")
    got = replay.send("get", (job_id,))
    assert got.status_code == 200
    check_shape(got.json(), JOB)
    assert got.json()["enabled"] is True
    updated = replay.send("update", (job_id,))
    assert updated.status_code == 200, updated.text
    check_shape(updated.json(), JOB)

    # Trigger and bulk trigger.
    error(replay.send("trigger"), 404, "not_found")
    triggered = replay.send("trigger", (job_id,))
    assert triggered.status_code == 202, triggered.text
    run = triggered.json()
    check_shape(run, RUN)
    assert (run["job_id"], run["project_id"], run["status"], run["attempt"], run["triggered_by"]) == (
        job_id, "string", "queued", 1, "manual")
    bulk = replay.send("bulk", (job_id,))
    assert bulk.status_code == 201, bulk.text
    check_shape(bulk.json(), BULK)
    assert (bulk.json()["total"], bulk.json()["created"]) == (1, 1)
    assert bulk.json()["results"][0]["idempotency_hit"] is False

    # Versions: the list, one by its id.
    versions = replay.send("versions", (job_id,))
    assert versions.status_code == 200
    check_shape(versions.json(), [VERSION])
    assert [v["version"] for v in versions.json()] == list(range(1, len(versions.json()) + 1))
    error(replay.send("version", (job_id,)), 404, "not_found")
    one = replay.send("version", (job_id, versions.json()[0]["id"]))
    assert one.status_code == 200
    check_shape(one.json(), VERSION)
    assert (one.json()["job_id"], one.json()["version"]) == (job_id, 1)

    # Clone with the default name and slug.
    cloned = replay.send("clone", (job_id,))
    assert cloned.status_code == 201, cloned.text
    check_shape(cloned.json(), JOB)
    assert (cloned.json()["name"], cloned.json()["slug"], cloned.json()["version"]) == (
        "string (copy)", "string-copy", 1)

    # Health: no run has ended yet.
    health = replay.send("health", (job_id,))
    assert health.status_code == 200
    check_shape(health.json(), HEALTH)
    assert health.json()["health_score"] == -1

    # Dependencies: `{}` names no job (400); a real one is created, listed and deleted.
    assert replay.send("dependencies", (job_id,)).json() == []
    assert "depends_on_job_id" in error(replay.send("add_dependency", (job_id,)), 400, "validation_error")
    added = replay.send("add_dependency", (job_id,), body={"depends_on_job_id": cloned.json()["id"]})
    assert added.status_code == 201, added.text
    check_shape(added.json(), DEPENDENCY)
    dependencies = replay.send("dependencies", (job_id,))
    check_shape(dependencies.json(), [DEPENDENCY])
    assert [d["id"] for d in dependencies.json()] == [added.json()["id"]]
    error(replay.send("delete_dependency", (job_id,)), 404, "not_found")
    assert replay.send("delete_dependency", (job_id, added.json()["id"])).status_code == 204
    assert replay.send("dependencies", (job_id,)).json() == []

    # Delete with active runs: 409; once they are canceled, 204.
    assert "active" in error(replay.send("delete", (job_id,)), 409, "conflict")
    canceled = client.http.post("/v1/runs/bulk-cancel-all", params={"project_id": "string"},
                                json={"job_id": job_id})
    assert canceled.status_code == 200 and canceled.json()["canceled"] == 2, canceled.text
    assert replay.send("delete", (job_id,)).status_code == 204
    assert replay.send("delete", (cloned.json()["id"],)).status_code == 204
    assert replay.send("list").json() == []


def test_the_served_document_covers_every_documented_job_route(replay: Replayer) -> None:
    for name, (verb, template) in ROUTES.items():
        operation = replay.document["paths"][template][verb]
        assert any(code.startswith("2") for code in operation["responses"]), name
    expected = {"create": "201", "batch": "201", "delete": "204", "trigger": "202", "bulk": "201",
                "clone": "201", "add_dependency": "201", "delete_dependency": "204"}
    for name, (verb, template) in ROUTES.items():
        codes = [c for c in replay.document["paths"][template][verb]["responses"] if c.startswith("2")]
        assert codes == [expected.get(name, "200")], (name, codes)


# -- bulk trigger of a device job ---------------------------------------------------------------------


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@pytest.fixture(scope="module")
def fleet(client: Client, tmp_path_factory: pytest.TempPathFactory):
    """Three simulated devices of one group, online."""
    group = f"bulk-{uuid.uuid4().hex[:8]}"
    lines = []
    for i in range(3):
        response = client.http.post("/v1/devices", json={"id": f"{group}-{i}", "groups": [group]})
        assert response.status_code == 201, response.text
        lines.append(f"{group}-{i} {response.json()['credential']}")
    credentials = Path(tmp_path_factory.mktemp("fleet")) / "credentials"
    credentials.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "fleet", "--server", client.platform.addr("runs"),
                                "--credentials-file", str(credentials)], env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def online() -> bool:
        answer = client.http.get("/v1/devices", params={"group": group, "online": "true"}).json()
        return len(answer["devices"]) == 3

    try:
        wait_for(online, 15, "three simulated devices online")
        yield group
    finally:
        process.terminate()
        process.wait(10)


def device_job(client: Client, group: str, **targets: Any) -> dict:
    slug = f"bulk-{uuid.uuid4().hex[:8]}"
    response = client.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug,
                                                  "command": "probe {{n}}", "targets": {"group": group, **targets}})
    assert response.status_code == 201, response.text
    return response.json()


def invocation_runs(client: Client, invocation_id: str) -> list[dict]:
    return client.http.get("/v1/runs", params={"project_id": "default", "invocation_id": invocation_id}).json()


def test_bulk_trigger_of_a_device_job_fans_each_item_out_to_the_jobs_devices(client: Client, fleet: str) -> None:
    job = device_job(client, fleet)
    items = [{"payload": {"n": "1"}, "idempotency_key": "item-1"}, {"payload": {"n": "2"}}]
    response = client.http.post(f"/v1/jobs/{job['id']}/trigger/bulk", json={"items": items})
    assert response.status_code == 201, response.text
    reply = response.json()
    check_shape(reply, BULK)
    assert (reply["total"], reply["created"]) == (2, 2)
    for result, n in zip(reply["results"], ("1", "2")):
        runs = invocation_runs(client, result["invocation_id"])
        assert sorted(r["device_id"] for r in runs) == [f"{fleet}-{i}" for i in range(3)]
        assert result["id"] in {r["id"] for r in runs}
        for run in runs:
            done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
            assert done["status"] == "completed", done
            assert client.http.get(f"/v1/runs/{run['id']}/logs").json()["text"] == f"simulated: probe {n}\n"

    again = client.http.post(f"/v1/jobs/{job['id']}/trigger/bulk", json={"items": items[:1]}).json()
    assert again["results"][0]["idempotency_hit"] is True and again["results"][0]["id"] == reply["results"][0]["id"]
    assert again["created"] == 0

    missing = client.http.post(f"/v1/jobs/{job['id']}/trigger/bulk", json={"items": [{"payload": {"n": "3"}}, {}]})
    assert "items[1]: missing inputs: n" == error(missing, 400, "validation_error")


def test_bulk_trigger_with_any_available_spreads_the_items_over_the_free_devices(client: Client,
                                                                                   fleet: str) -> None:
    job = device_job(client, fleet, any_available=True)
    items = [{"payload": {"n": str(i)}} for i in range(3)]
    reply = client.http.post(f"/v1/jobs/{job['id']}/trigger/bulk", json={"items": items}).json()
    devices = []
    for result in reply["results"]:
        runs = invocation_runs(client, result["invocation_id"])
        assert len(runs) == 1
        done = client.wait_run(runs[0]["id"], {"completed", "failed"})
        assert done["status"] == "completed"
        devices.append(done["device_id"])  # chosen at dispatch: the pool's device with the most room
    assert sorted(devices) == [f"{fleet}-{i}" for i in range(3)]  # one item per device


# -- the runs and api-keys endpoints of C-scheduler-openapi.yaml --------------------------------------


def test_the_runs_and_keys_endpoints_answer_as_the_served_document_says(replay: Replayer, client: Client) -> None:
    http, document = client.http, replay.document

    def check(response: httpx.Response, verb: str, template: str, status: int) -> Any:
        assert response.status_code == status, (verb, template, response.text)
        operation = document["paths"][template][verb]
        if status >= 400:
            schema: Any = {"$ref": "#/components/schemas/Error"}
        else:
            assert str(status) in operation["responses"], (verb, template, status)
            if status == 204:
                return None
            schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})
        return response.json()

    slug = f"runs-{uuid.uuid4().hex[:8]}"
    job = http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug, "max_attempts": 2,
                                      "endpoint_url": "http://127.0.0.1:9/refused", "retry_strategy": "fixed",
                                      "retry_delays_secs": [1], "version_policy": "minor"}).json()
    assert job["version_policy"] == "minor"  # one of the documented enum values
    run = http.post(f"/v1/jobs/{job['id']}/trigger", json={"payload": {"k": 1}}, headers={"Idempotency-Key": "r1"})
    run = check(run, "post", "/v1/jobs/{job_id}/trigger", 202)
    check_shape(run, RUN)
    dead = client.wait_run(run["id"], {"dead_letter"}, timeout=20)
    assert (dead["status"], dead["attempt"]) == ("dead_letter", 2), dead
    check_shape(dead, RUN)

    listed = check(http.get("/v1/runs", params={"project_id": "default", "status": "dead_letter", "limit": 5}),
                   "get", "/v1/runs", 200)
    assert run["id"] in [r["id"] for r in listed]
    page = check(http.get("/v1/runs", params={"project_id": "default", "cursor": listed[-1]["created_at"]}),
                 "get", "/v1/runs", 200)
    assert all(r["created_at"] < listed[-1]["created_at"] for r in page)
    dlq = check(http.get("/v1/runs/dlq", params={"project_id": "default"}), "get", "/v1/runs/dlq", 200)
    assert run["id"] in [r["id"] for r in dlq]
    for part in ("children", "lineage", "events", "outputs"):
        check(http.get(f"/v1/runs/{run['id']}/{part}"), "get", f"/v1/runs/{{run_id}}/{part}", 200)
    status = check(http.get(f"/v1/runs/{run['id']}/dependency-status"), "get",
                   "/v1/runs/{run_id}/dependency-status", 200)
    assert (status["run_id"], status["status"], status["dependencies_satisfied"]) == (run["id"], "dead_letter", True)

    replayed = check(http.post(f"/v1/runs/{run['id']}/dlq-replay"), "post", "/v1/runs/{run_id}/dlq-replay", 202)
    assert replayed["continuation_of"] == run["id"] and replayed["lineage_depth"] == 1
    check(http.post(f"/v1/runs/{replayed['id']}/dlq-replay"), "post", "/v1/runs/{run_id}/dlq-replay", 409)
    check(http.post("/v1/runs/bulk-dlq-replay", json={}), "post", "/v1/runs/bulk-dlq-replay", 400)
    bulk_dlq = check(http.post("/v1/runs/bulk-dlq-replay", json={"run_ids": [run["id"]]}), "post",
                     "/v1/runs/bulk-dlq-replay", 200)
    assert bulk_dlq["count"] == 1
    check(http.post("/v1/runs/bulk-replay", json={}), "post", "/v1/runs/bulk-replay", 400)  # run_ids is required
    again = check(http.post("/v1/runs/bulk-replay", json={"run_ids": [run["id"], "nope"]}), "post",
                  "/v1/runs/bulk-replay", 200)
    assert [r["continuation_of"] for r in again] == [run["id"]]
    check(http.post(f"/v1/runs/{run['id']}/replay"), "post", "/v1/runs/{run_id}/replay", 202)

    reset = check(http.delete(f"/v1/runs/{run['id']}/idempotency-key"), "delete",
                  "/v1/runs/{run_id}/idempotency-key", 200)
    assert reset == {"status": "reset", "run_id": run["id"]}
    later = http.post(f"/v1/jobs/{job['id']}/trigger", headers={"Idempotency-Key": "r1"},
                      json={"payload": {"k": 2}, "scheduled_at": "2999-01-01T00:00:00Z"}).json()
    assert later["id"] != run["id"] and later["status"] == "delayed"  # the key was free again
    check(http.post(f"/v1/runs/{later['id']}/reschedule", json={}), "post", "/v1/runs/{run_id}/reschedule", 400)
    moved = check(http.post(f"/v1/runs/{later['id']}/reschedule", json={"scheduled_at": "2998-01-01T00:00:00Z",
                                                                         "payload": {"k": 3}}),
                  "post", "/v1/runs/{run_id}/reschedule", 200)
    assert (moved["scheduled_at"], moved["payload"]) == ("2998-01-01T00:00:00Z", {"k": 3})
    canceled = check(http.post("/v1/runs/bulk-cancel", json={"run_ids": [later["id"], run["id"], "nope"]}),
                     "post", "/v1/runs/bulk-cancel", 200)
    assert (canceled["total"], canceled["canceled"], canceled["failed"]) == (3, 1, 2)
    assert [r["status"] for r in canceled["results"]] == ["canceled", "dead_letter", "not_found"]
    check(http.post("/v1/runs/bulk-cancel-all", json={"job_id": job["id"]}), "post", "/v1/runs/bulk-cancel-all", 400)
    everything = check(http.post("/v1/runs/bulk-cancel-all", params={"project_id": "default"},
                                 json={"job_id": job["id"]}), "post", "/v1/runs/bulk-cancel-all", 200)
    assert everything["failed"] == 0
    check(http.delete(f"/v1/runs/{later['id']}"), "delete", "/v1/runs/{run_id}", 409)  # already canceled
    check(http.get("/v1/runs/nope"), "get", "/v1/runs/{run_id}", 404)

    key = check(http.post("/v1/api-keys", json={"project_id": "default", "name": "replayed"}), "post",
                "/v1/api-keys", 201)
    assert key["key"].startswith("jl_") and key["name"] == "replayed"
    keys = check(http.get("/v1/api-keys", params={"project_id": "default"}), "get", "/v1/api-keys", 200)
    assert key["id"] in [k["id"] for k in keys] and all(not k.get("key") for k in keys)
    check(http.post(f"/v1/api-keys/{key['id']}/rotate", json={"grace_period_minutes": 10081}), "post",
          "/v1/api-keys/{id}/rotate", 400)
    rotated = check(http.post(f"/v1/api-keys/{key['id']}/rotate", json={"grace_period_minutes": 5}), "post",
                    "/v1/api-keys/{id}/rotate", 201)
    assert rotated["old_key_id"] == key["id"] and rotated["grace_expires_at"]
    check(http.delete(f"/v1/api-keys/{rotated['new_key_id']}"), "delete", "/v1/api-keys/{id}", 204)
