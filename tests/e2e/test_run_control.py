"""Cancel, timeout and rejection of device runs end to end: REST through the gateway, a real agent process
running real commands (with a 1 s SIGTERM-to-SIGKILL grace), the process group checked in /proc."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e

GRACE = 1.0
FINAL = {"completed", "failed", "timed_out", "canceled", "crashed", "dead_letter", "system_failed", "expired"}


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


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry))
    return members


@pytest.fixture(scope="module")
def device(client: Client) -> Iterator[str]:
    device_id = unique("ctl")
    response = client.http.post("/v1/devices", json={"id": device_id})
    assert response.status_code == 201, response.text
    agent = client.start_agent(device_id, response.json()["credential"], "--kill-grace", str(GRACE),
                               "--capacity", "4")
    try:
        wait_for(lambda: client.http.get(f"/v1/devices/{device_id}").json()["online"], 15, "the agent online")
        yield device_id
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()


def job(client: Client, device: str, command: str, **fields) -> str:
    slug = unique("job")
    response = client.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug,
                                                  "command": command, "targets": {"device_ids": [device]},
                                                  **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def trigger(client: Client, job_id: str, **body) -> dict:
    response = client.http.post(f"/v1/jobs/{job_id}/trigger", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def started_group(client: Client, run_id: str, pidfile: Path) -> int:
    assert client.wait_run(run_id, {"executing", *FINAL})["status"] == "executing"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command to start")
    pgid = int(pidfile.read_text())
    assert group_members(pgid), "the command's process group is not running"
    return pgid


def test_cancel_terminates_then_kills_a_command_that_ignores_sigterm(client: Client, device: str,
                                                                      tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # The shell survives SIGTERM (its trap only prints); its sleeps die of it and are restarted.
    job_id = job(client, device, f"echo $$ > {pidfile}; trap 'echo got TERM' TERM; "
                                 "while true; do sleep 0.1; done", max_attempts=1)
    run = trigger(client, job_id)
    pgid = started_group(client, run["id"], pidfile)

    began = time.monotonic()
    response = client.http.post(f"/v1/runs/{run['id']}:cancel", json={})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    wait_for(lambda: "got TERM" in client.http.get(f"/v1/runs/{run['id']}/logs").json()["text"], 5,
             "the command to see SIGTERM")
    assert group_members(pgid) and time.monotonic() - began < GRACE, "killed before the grace period ended"
    wait_for(lambda: not group_members(pgid), GRACE + 5, "the process group to be killed")
    assert time.monotonic() - began >= GRACE * 0.9

    done = client.http.get(f"/v1/runs/{run['id']}").json()
    assert (done["status"], done["error"]) == ("canceled", "canceled"), done
    assert client.http.post(f"/v1/runs/{run['id']}:cancel", json={}).status_code == 409


def test_cancel_of_a_command_that_honours_sigterm_ends_it_at_once(client: Client, device: str,
                                                                    tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    job_id = job(client, device, f"echo $$ > {pidfile}; sleep 60 & sleep 60; wait", max_attempts=1)
    run = trigger(client, job_id)
    pgid = started_group(client, run["id"], pidfile)
    began = time.monotonic()
    assert client.http.post(f"/v1/runs/{run['id']}:cancel", json={}).json()["status"] == "canceled"
    wait_for(lambda: not group_members(pgid), GRACE, "the process group to end on SIGTERM")
    assert time.monotonic() - began < GRACE
    assert client.http.get(f"/v1/runs/{run['id']}").json()["status"] == "canceled"


def test_a_jobs_timeout_ends_the_run_timed_out_on_the_device(client: Client, device: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    job_id = job(client, device, f"echo $$ > {pidfile}; trap '' TERM; echo begun; sleep 30; echo never",
                 timeout_secs=1, max_attempts=1)
    run = trigger(client, job_id)
    pgid = started_group(client, run["id"], pidfile)
    done = client.wait_run(run["id"], FINAL, timeout=1 + GRACE + 10)
    assert done["status"] == "timed_out", done
    assert done["error"] == "timed out after 1 s" and done["exit_code"] == -9, done
    assert done["attempt"] == 1 and done["finished_at"]
    assert not group_members(pgid), "the timed-out command's process group is still running"
    logs = client.http.get(f"/v1/runs/{run['id']}/logs").json()["text"]
    assert "begun" in logs and "never" not in logs


def test_a_timed_out_run_is_retried_by_its_policy(client: Client, device: str) -> None:
    job_id = job(client, device, 'echo "attempt $JOBLINE_ATTEMPT"; sleep 30', timeout_secs=1, max_attempts=2,
                 retry_strategy="fixed", retry_delays_secs=[1])
    run = trigger(client, job_id)
    done = client.wait_run(run["id"], FINAL, timeout=20)
    assert (done["status"], done["attempt"]) == ("dead_letter", 2), done
    assert "timed out" in done["error"]


def test_an_assignment_the_agent_cannot_start_is_rejected_with_its_reason(client: Client, device: str) -> None:
    # One argument of 200 kB: over Linux's limit for a single argv / environment string (E2BIG).
    job_id = job(client, device, "echo {{blob}}", max_attempts=3)
    run = trigger(client, job_id, payload={"blob": "x" * 200_000})
    done = client.wait_run(run["id"], FINAL)
    assert done["status"] == "failed", done
    assert done["error"].startswith("rejected by the agent: could not start the command: "), done
    assert "Argument list too long" in done["error"]
    assert done["attempt"] == 1  # not retried: the same assignment would be rejected again
    events = client.http.get(f"/v1/runs/{run['id']}/events").json()
    assert any("rejected by the agent" in str(e) for e in events), events

    # The device is not stuck: its next run executes.
    ok = trigger(client, job(client, device, "echo fine"))
    assert client.wait_run(ok["id"], FINAL)["status"] == "completed"


def test_inputs_no_device_could_use_are_refused_when_triggered(client: Client, device: str) -> None:
    job_id = job(client, device, "echo {{who}} {{greeting}}", default_inputs={"greeting": "hi"})
    missing = client.http.post(f"/v1/jobs/{job_id}/trigger", json={})
    assert missing.status_code == 400 and "missing inputs: who" in missing.text, missing.text
    nul = client.http.post(f"/v1/jobs/{job_id}/trigger", json={"payload": {"who": "a\u0000b"}})
    assert nul.status_code == 400 and "NUL" in nul.text, nul.text
    assert client.http.get("/v1/runs", params={"project_id": "default", "job_id": job_id}).json() == []


def test_rescheduling_with_new_inputs_renders_the_command_again(client: Client, device: str) -> None:
    job_id = job(client, device, "echo hello {{who}}")
    run = trigger(client, job_id, payload={"who": "first"}, scheduled_at="2099-01-01T00:00:00Z")
    assert run["status"] == "delayed"
    refused = client.http.post(f"/v1/runs/{run['id']}/reschedule",
                               json={"scheduled_at": "2099-01-01T00:00:00Z", "payload": {"nobody": "x"}})
    assert refused.status_code == 400 and "missing inputs: who" in refused.text, refused.text
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    moved = client.http.post(f"/v1/runs/{run['id']}/reschedule", json={"scheduled_at": now,
                                                                       "payload": {"who": "second"}})
    assert moved.status_code == 200, moved.text
    assert client.wait_run(run["id"], FINAL)["status"] == "completed"
    assert client.http.get(f"/v1/runs/{run['id']}/logs").json()["text"] == "hello second\n"
