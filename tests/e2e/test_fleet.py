"""The device fleet end to end: real service processes, REST through the gateway, real agent processes
(and the fleet simulator as a process): enrolment, revocation, capacity, an agent killed mid-run, 200 devices."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def online(client: Client, device_id: str) -> bool:
    return client.http.get(f"/v1/devices/{device_id}").json()["online"]


def new_device(client: Client, **fields) -> tuple[str, str]:
    device_id = unique("dev")
    response = client.http.post("/v1/devices", json={"id": device_id, **fields})
    assert response.status_code == 201, response.text
    return device_id, response.json()["credential"]


def create_job(client: Client, command: str, targets: dict, **fields) -> dict:
    slug = unique("job")
    response = client.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug,
                                                  "command": command, "targets": targets, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def trigger(client: Client, job_id: str, **body) -> dict:
    response = client.http.post(f"/v1/jobs/{job_id}/trigger", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def runs_of(client: Client, job_id: str) -> list[dict]:
    return client.http.get("/v1/runs", params={"project_id": "default", "job_id": job_id, "limit": 1000}).json()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_enrolment_end_to_end(client: Client, tmp_path: Path) -> None:
    group = unique("enrolled")
    created = client.http.post("/v1/enrollment-tokens", json={"group": group, "max_uses": 5, "ttl_secs": 600})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    device_id, path = unique("new"), tmp_path / "creds" / "agent.credential"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("JOBLINE_AGENT_CREDENTIAL", None)
    command = [sys.executable, "-m", "cli.main", "agent", "--device", device_id, "--server",
               client.platform.addr("runs"), "--credential-file", str(path)]
    agent = subprocess.Popen([*command, "--enroll-token", token, "--name", "Enrolled phone"], env=env)
    try:
        wait_for(lambda: client.http.get(f"/v1/devices/{device_id}").status_code == 200 and online(client, device_id),
                 15, "the enrolled device to come online")
        device = client.http.get(f"/v1/devices/{device_id}").json()
        assert device["name"] == "Enrolled phone" and device["groups"] == [group]
        assert device["facts"]["hostname"] and "credential" not in device
        assert path.read_text().startswith("jld_") and stat.S_IMODE(path.stat().st_mode) == 0o600

        job = create_job(client, "echo enrolled on $JOBLINE_RUN_ID", {"query": f"group = {group} and online = true"})
        run = trigger(client, job["id"])
        assert run["device_id"] == device_id
        assert client.wait_run(run["id"], {"completed", "failed", "dead_letter"})["status"] == "completed"
    finally:
        stop(agent)
    wait_for(lambda: not online(client, device_id), 3, "the device to go offline")

    # Later starts use the stored credential; the token is not needed (nor spent) again.
    again = subprocess.Popen(command, env=env)
    try:
        wait_for(lambda: online(client, device_id), 15, "the device to come back online")
    finally:
        stop(again)
    tokens = client.http.get("/v1/enrollment-tokens").json()["tokens"]
    assert [t["uses"] for t in tokens if t["group"] == group] == [1]


def test_revoking_the_credential_closes_the_stream_and_refuses_reconnects(client: Client) -> None:
    device_id, credential = new_device(client)
    agent = client.start_agent(device_id, credential)
    try:
        wait_for(lambda: online(client, device_id), 15, "the agent to come online")
        revoked_at = time.monotonic()
        response = client.http.post(f"/v1/devices/{device_id}:revokeCredential", json={})
        assert response.status_code == 200, response.text
        # The stream ends within about a second (the hub re-validates every second) and the agent,
        # refused UNAUTHENTICATED, gives up with exit code 3 instead of reconnecting.
        assert agent.wait(10) == 3
        assert time.monotonic() - revoked_at < 5
        wait_for(lambda: not online(client, device_id), 2, "the device to show offline")
        retry = client.start_agent(device_id, credential)
        assert retry.wait(15) == 3
    finally:
        stop(agent)


def test_capacity_is_respected_under_a_burst(client: Client, tmp_path: Path) -> None:
    device_id, credential = new_device(client)
    agent = client.start_agent(device_id, credential, "--capacity", "2")
    journal = tmp_path / "journal"
    try:
        wait_for(lambda: online(client, device_id), 15, "the agent to come online")
        job = create_job(client, f"echo + >> {journal}; sleep 0.2; echo - >> {journal}",
                         {"device_ids": [device_id]}, max_attempts=1)
        for _ in range(20):
            trigger(client, job["id"])
        wait_for(lambda: (runs := runs_of(client, job["id"])) and len(runs) == 20
                 and all(r["status"] in ("completed", "failed") for r in runs), 20, "20 runs to finish", 0.2)
        assert {r["status"] for r in runs_of(client, job["id"])} == {"completed"}
        running = peak = 0
        for line in journal.read_text().split():
            running += 1 if line == "+" else -1
            peak = max(peak, running)
        assert peak == 2 and journal.read_text().count("+") == 20
    finally:
        stop(agent)


def test_an_agent_killed_mid_run_gets_the_run_retried_with_its_output_once(client: Client, tmp_path: Path) -> None:
    device_id, credential = new_device(client)
    agent = client.start_agent(device_id, credential)
    try:
        wait_for(lambda: online(client, device_id), 15, "the agent to come online")
        job = create_job(client, 'echo "begin $JOBLINE_ATTEMPT"; sleep 1; echo end', {"device_ids": [device_id]},
                         max_attempts=3, retry_strategy="fixed", retry_delays_secs=[1])
        run = trigger(client, job["id"])
        wait_for(lambda: "begin 1" in client.http.get(f"/v1/runs/{run['id']}/logs").json()["text"], 10,
                 "the first attempt's output")
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        agent = client.start_agent(device_id, credential)
        done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
        assert (done["status"], done["attempt"]) == ("completed", 2), done
        logs = client.http.get(f"/v1/runs/{run['id']}/logs").json()
        assert logs["text"] == "begin 2\nend\n"
        assert [c["sequence"] for c in logs["chunks"] if c["attempt"] == 2] == sorted(
            {c["sequence"] for c in logs["chunks"] if c["attempt"] == 2})
    finally:
        stop(agent)


def test_the_fleet_simulator_runs_a_job_on_200_devices_at_once(client: Client, tmp_path: Path) -> None:
    group = unique("fleet")
    credentials = tmp_path / "fleet.credentials"
    lines = []
    for i in range(200):
        response = client.http.post("/v1/devices", json={"id": f"{group}-{i:03}", "groups": [group]})
        assert response.status_code == 201, response.text
        lines.append(f"{group}-{i:03} {response.json()['credential']}")
    credentials.write_text("\n".join(lines) + "\n")
    fleet = subprocess.Popen([sys.executable, "-m", "cli.main", "fleet", "--server", client.platform.addr("runs"),
                              "--credentials-file", str(credentials), "--channels", "4"],
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def online_count() -> int:
            answer = client.http.get("/v1/devices", params={"group": group, "online": "true", "page_size": 1000})
            return len(answer.json()["devices"])

        wait_for(lambda: online_count() == 200, 15, "200 simulated devices online", 0.2)
        job = create_job(client, "probe {{n}}", {"group": group}, default_inputs={"n": "1"})
        trigger(client, job["id"], payload={"n": "7"})
        wait_for(lambda: (runs := runs_of(client, job["id"])) and len(runs) == 200
                 and all(r["status"] == "completed" for r in runs), 20, "200 runs completed", 0.3)
        runs = runs_of(client, job["id"])
        assert len({r["device_id"] for r in runs}) == 200
        logs = client.http.get(f"/v1/runs/{runs[0]['id']}/logs").json()
        assert logs["text"] == "simulated: probe 7\n"
    finally:
        stop(fleet)
