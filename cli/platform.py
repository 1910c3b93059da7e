"""Starts and stops the whole platform as real processes: four services and the gateway.

Used by `jobline run` and by the end-to-end tests (on free ports, in a scratch data dir)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.common.config import DEFAULT_PORTS, SERVICES

MODULES = {name: f"services.{name}" for name in SERVICES} | {"gateway": "gateway"}


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before, and below the kernel's
    ephemeral range, so an outgoing connection's local port cannot take it before the server binds it."""
    high = _ephemeral_low()
    low = max(1024, high - 12_000)
    if high - low < 1_000:  # an unusual range: anywhere above the privileged ports
        low, high = 1024, 65_535
    while True:
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; also below macOS's 49152


@dataclass
class Platform:
    data_dir: Path
    http_port: int = 8080
    grpc_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    env: dict[str, str] = field(default_factory=dict)
    stdout: int | None = None  # where children print (None: inherit)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, data_dir: Path, **kwargs) -> "Platform":
        return cls(data_dir, free_port(), {name: free_port() for name in SERVICES}, **kwargs)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def addr(self, service: str) -> str:
        return f"127.0.0.1:{self.grpc_ports[service]}"

    def process_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "JOBLINE_DATA_DIR": str(self.data_dir),
               "JOBLINE_HTTP_PORT": str(self.http_port), "PYTHONUNBUFFERED": "1"}
        env.update({f"JOBLINE_{name.upper()}_ADDR": self.addr(name) for name in SERVICES})
        return env

    def start(self, only: list[str] | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = self.process_env()
        for name in only or list(MODULES):
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", MODULES[name]], env=env, stdout=self.stdout,
                stderr=subprocess.STDOUT if self.stdout is not None else None,
            )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the platform did not become healthy in time")

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in list(self.processes):
            self.stop_process(name)
