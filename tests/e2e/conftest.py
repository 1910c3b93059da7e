"""The real platform: every service and the gateway as processes, on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.platform import Platform

ADMIN_KEY = "jl_test_e2e_admin_key_0123456789"


class Client:
    """A small REST client for the native API, authenticated as the bootstrap admin."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.http = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                                 timeout=10)

    def wait_run(self, run_id: str, statuses: set[str], timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.http.get(f"/v1/runs/{run_id}").json()
            if run["status"] in statuses or time.monotonic() > deadline:
                return run
            time.sleep(0.1)

    def start_agent(self, device_id: str, credential: str, *extra: str) -> subprocess.Popen:
        env = {**os.environ, "JOBLINE_AGENT_CREDENTIAL": credential, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "cli.main", "agent", "--device", device_id,
                                 "--server", self.platform.addr("runs"), *extra], env=env)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = Path(tmp_path_factory.mktemp("platform"))
    platform = Platform.on_free_ports(data, env={
        "JOBLINE_BOOTSTRAP_API_KEY": ADMIN_KEY,
        "JOBLINE_HEARTBEAT_INTERVAL_MS": "500",
        "JOBLINE_HEARTBEAT_TIMEOUT_SECS": "5",
        "JOBLINE_DATABASE_URL": "",
        # The tests trigger far more than surface C's 10 a minute per caller (tested in tests/gateway).
        "JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN": "0",
        "JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN": "0",
    })
    platform.start()
    try:
        platform.wait_healthy()
        yield platform
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def client(platform: Platform) -> Client:
    return Client(platform)
