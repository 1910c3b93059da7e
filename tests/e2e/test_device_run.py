"""One device run end to end: real processes, REST through the gateway, a real agent."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def device(client: Client):
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    response = client.http.post("/v1/devices", json={"id": device_id, "name": "test phone"})
    assert response.status_code == 201, response.text
    agent = client.start_agent(device_id, response.json()["credential"])
    deadline = time.monotonic() + 15
    while not client.http.get(f"/v1/devices/{device_id}").json()["online"]:
        assert time.monotonic() < deadline, "agent never came online"
        time.sleep(0.1)
    yield device_id
    agent.terminate()
    agent.wait(10)


def create_job(client: Client, device_id: str, command: str, **fields) -> dict:
    slug = f"job-{uuid.uuid4().hex[:8]}"
    body = {"project_id": "default", "name": slug, "slug": slug, "command": command,
            "targets": {"device_ids": [device_id]}, **fields}
    response = client.http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_command_runs_on_the_device_and_its_output_is_kept(client: Client, device: str) -> None:
    job = create_job(client, device, "echo hello {{who}}; echo warning >&2", default_inputs={"who": "nobody"})
    response = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={"payload": {"who": "world"}})
    assert response.status_code == 202, response.text
    run = response.json()
    # dequeued when the device streams with room and nothing queued for it: claimed at its insert
    assert run["status"] in ("queued", "dequeued") and run["device_id"] == device

    done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
    assert done["status"] == "completed", done
    assert done["exit_code"] == 0 and done["started_at"] and done["finished_at"]

    logs = client.http.get(f"/v1/runs/{run['id']}/logs").json()
    assert "hello world" in logs["text"] and "warning" in logs["text"]
    streams = {chunk["stream"] for chunk in logs["chunks"]}
    assert streams == {"stdout", "stderr"}


def test_a_failing_command_ends_failed_with_its_exit_code(client: Client, device: str) -> None:
    job = create_job(client, device, "echo about to fail; exit 7", max_attempts=1)
    run = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={}).json()
    done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
    assert done["status"] == "failed" and done["exit_code"] == 7, done
    assert "exit code 7" in done["error"]


def test_canceling_a_run_stops_the_process_on_the_device(client: Client, device: str, tmp_path) -> None:
    pidfile = tmp_path / "pid"
    job = create_job(client, device, f"echo $$ > {pidfile}; sleep 60")
    run = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={}).json()
    assert client.wait_run(run["id"], {"executing"})["status"] == "executing"
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pidfile.read_text())

    response = client.http.post(f"/v1/runs/{run['id']}:cancel", json={})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the process kept running after cancel"
        time.sleep(0.05)
    assert client.http.post(f"/v1/runs/{run['id']}:cancel", json={}).status_code == 409


def test_runs_are_listed_and_filtered_by_job(client: Client, device: str) -> None:
    job = create_job(client, device, "true")
    ids = {client.http.post(f"/v1/jobs/{job['id']}/trigger", json={}).json()["id"] for _ in range(3)}
    listed = client.http.get("/v1/runs", params={"project_id": "default", "job_id": job["id"]}).json()
    assert {run["id"] for run in listed} == ids


def test_requests_without_a_valid_key_are_refused(client: Client) -> None:
    anonymous = client.http.get("/v1/jobs", params={"project_id": "default"}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    wrong = client.http.get("/v1/jobs", params={"project_id": "default"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its parent counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
