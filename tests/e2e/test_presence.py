"""Presence after a runs-service crash, end to end: real processes, REST through the gateway, real agent
processes. kill -9 the runs service with agents connected: the devices read offline within the presence
lease (2 s here) plus a second or two; restarted, the agents reconnect and read online again. On PostgreSQL
with two runs replicas, only the dead replica's devices go offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.platform import Platform, free_port
from tests.conftest import POSTGRES_URL, _admin

from .conftest import ADMIN_KEY, Client

pytestmark = pytest.mark.e2e

LEASE = 2
BOUND = LEASE + 3  # the lease, a sweep (1 s), a gateway round trip and some slack on a busy machine


def platform_env(**extra: str) -> dict[str, str]:
    return {"JOBLINE_BOOTSTRAP_API_KEY": ADMIN_KEY, "JOBLINE_HEARTBEAT_INTERVAL_MS": "500",
            "JOBLINE_HEARTBEAT_TIMEOUT_SECS": "5", "JOBLINE_PRESENCE_LEASE_SECS": str(LEASE),
            "JOBLINE_DATABASE_URL": "", **extra}


def started(platform: Platform) -> Platform:
    platform.start()
    try:
        platform.wait_healthy()
    except Exception:
        platform.stop()
        raise
    return platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """This module's own platform: its tests kill its runs service."""
    platform = started(Platform.on_free_ports(Path(tmp_path_factory.mktemp("presence")), env=platform_env()))
    try:
        yield platform
    finally:
        platform.stop()


def agent(server: str, device_id: str, credential: str) -> subprocess.Popen:
    env = {**os.environ, "JOBLINE_AGENT_CREDENTIAL": credential, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli.main", "agent", "--device", device_id, "--server", server],
                            env=env)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def devices(client: Client, count: int, server: str) -> tuple[list[str], list[subprocess.Popen]]:
    ids, agents = [], []
    for _ in range(count):
        device_id = f"pr-{uuid.uuid4().hex[:8]}"
        response = client.http.post("/v1/devices", json={"id": device_id})
        assert response.status_code == 201, response.text
        ids.append(device_id)
        agents.append(agent(server, device_id, response.json()["credential"]))
    return ids, agents


def online(client: Client, ids: list[str]) -> dict[str, bool]:
    return {device_id: client.http.get(f"/v1/devices/{device_id}").json()["online"] for device_id in ids}


def wait_until(condition, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - began


def test_killed_runs_service_devices_go_offline_and_come_back_after_a_restart(platform: Platform) -> None:
    client = Client(platform)
    ids, agents = devices(client, 3, platform.addr("runs"))
    try:
        wait_until(lambda: all(online(client, ids).values()), 20, "the agents online")
        platform.stop_process("runs", signal.SIGKILL)
        took = wait_until(lambda: not any(online(client, ids).values()), BOUND, "the devices offline")
        assert took >= LEASE * 0.5, f"offline after {took:.1f} s: not the lease that expired"
        listed = client.http.get("/v1/devices", params={"online": "true", "page_size": 1000}).json()["devices"]
        assert not {d["id"] for d in listed} & set(ids)

        platform.start(only=["runs"])
        wait_until(lambda: all(online(client, ids).values()), 30, "the agents back online after the restart")
        time.sleep(LEASE + 1.5)  # the restarted replica renews its lease: they stay online
        assert all(online(client, ids).values())
    finally:
        for process in agents:
            stop(process)


def test_a_stopped_runs_service_releases_its_devices_at_once(platform: Platform) -> None:
    client = Client(platform)
    ids, agents = devices(client, 2, platform.addr("runs"))
    try:
        wait_until(lambda: all(online(client, ids).values()), 20, "the agents online")
        for process in agents:  # (so that they do not reconnect to the restarted replica first)
            process.send_signal(signal.SIGSTOP)
        platform.stop_process("runs", signal.SIGTERM)
        took = wait_until(lambda: not any(online(client, ids).values()), BOUND, "the devices offline")
        assert took < LEASE, f"offline after {took:.1f} s: the stopping replica did not release them"
    finally:
        for process in agents:
            process.send_signal(signal.SIGCONT)
            stop(process)
        platform.start(only=["runs"])
        platform.wait_healthy()


@pytest.fixture(scope="module")
def postgres_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, subprocess.Popen, str]]:
    """The platform on a PostgreSQL database of its own, with a second runs replica beside the first."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set JOBLINE_TEST_POSTGRES_URL")
    name = f"jobline_presence_{uuid.uuid4().hex[:10]}"
    _admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    platform = started(Platform.on_free_ports(Path(tmp_path_factory.mktemp("presence-pg")),
                                              env=platform_env(JOBLINE_DATABASE_URL=url)))
    second_addr = f"127.0.0.1:{free_port()}"
    second = subprocess.Popen([sys.executable, "-m", "services.runs"],
                              env={**platform.process_env(), "JOBLINE_RUNS_ADDR": second_addr})
    try:
        yield platform, second, second_addr
    finally:
        stop(second)
        platform.stop()
        _admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_on_postgresql_only_the_dead_replicas_devices_go_offline(
        postgres_platform: tuple[Platform, subprocess.Popen, str]) -> None:
    platform, second, second_addr = postgres_platform
    client = Client(platform)
    mine, mine_agents = devices(client, 2, platform.addr("runs"))
    theirs, their_agents = devices(client, 2, second_addr)
    try:
        wait_until(lambda: all(online(client, mine + theirs).values()), 30, "the agents online on both replicas")
        second.send_signal(signal.SIGKILL)
        second.wait(10)
        wait_until(lambda: not any(online(client, theirs).values()), BOUND, "the dead replica's devices offline")
        deadline = time.monotonic() + LEASE + 1
        while time.monotonic() < deadline:  # the live replica's devices stay online throughout
            assert all(online(client, mine).values())
            time.sleep(0.2)
    finally:
        for process in mine_agents + their_agents:
            stop(process)
