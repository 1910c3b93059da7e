"""The `jobline` command: run the platform, run an agent, run a simulated fleet, administer tenants."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.common.config import data_dir

from .platform import Platform

DEMO_DEVICE = "demo-device"


def _first_start(directory: Path) -> bool:
    return not (directory / "auth.db").exists() and not os.environ.get("JOBLINE_DATABASE_URL")


def _demo_agent_credential(platform: Platform, directory: Path, api_key: str | None) -> str | None:
    """The demo device's credential: kept in the data dir, created through the REST API once."""
    path = directory / "demo-agent.credential"
    if path.exists():
        return path.read_text().strip()
    if not api_key:
        print("demo agent skipped: set JOBLINE_BOOTSTRAP_API_KEY (or start from an empty data dir)")
        return None
    response = httpx.post(f"{platform.base_url}/v1/devices", headers={"Authorization": f"Bearer {api_key}"},
                          json={"id": DEMO_DEVICE, "name": "Demo device (this machine)"})
    if response.status_code != 201:
        print(f"demo agent skipped: creating its device answered {response.status_code} {response.text}")
        return None
    credential = response.json()["credential"]
    path.write_text(credential)
    path.chmod(0o600)
    return credential


def run_platform(args: argparse.Namespace) -> int:
    directory = data_dir()
    env: dict[str, str] = {}
    api_key = os.environ.get("JOBLINE_BOOTSTRAP_API_KEY")
    first = _first_start(directory)
    if first and not api_key:
        api_key = "jl_live_" + secrets.token_urlsafe(30)
        env["JOBLINE_BOOTSTRAP_API_KEY"] = api_key
    platform = Platform(directory, int(os.environ.get("JOBLINE_HTTP_PORT", "8080")), env=env)
    platform.grpc_ports = {name: int(addr.rsplit(":", 1)[1]) for name, addr in (
        (n, os.environ.get(f"JOBLINE_{n.upper()}_ADDR", platform.addr(n))) for n in platform.grpc_ports)}
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    platform.start()
    try:
        platform.wait_healthy()
        if args.demo_agent:
            credential = _demo_agent_credential(platform, directory, api_key)
            if credential:
                platform.processes["agent"] = subprocess.Popen(
                    [sys.executable, "-m", "cli.main", "agent", "--device", DEMO_DEVICE, "--server",
                     platform.addr("runs")], env={**platform.process_env(), "JOBLINE_AGENT_CREDENTIAL": credential})
        print(f"\nJobline is up: {platform.base_url}  (data in {directory})")
        if first:
            print(f"Admin API key (shown once, keep it): {api_key}")
        if args.demo_agent and "agent" in platform.processes:
            print(f"A demo agent is connected as device {DEMO_DEVICE!r}.")
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            for name, process in platform.processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.3)
    finally:
        platform.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "admin":
        from . import admin

        return admin.main(argv[1:])
    if argv and argv[0] in ("agent", "fleet"):
        from agent import cli as agent_cli

        return (agent_cli.agent_main if argv[0] == "agent" else agent_cli.fleet_main)(argv[1:])
    parser = argparse.ArgumentParser(prog="jobline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start every service and the gateway")
    run.add_argument("--demo-agent", action="store_true", help="also connect an agent for this machine")
    commands.add_parser("agent", help="connect this machine as a device (see `jobline agent --help`)")
    commands.add_parser("fleet", help="simulate many agents (see `jobline fleet --help`)")
    commands.add_parser("admin", help="tenants, projects, users, service accounts, keys (see `jobline admin --help`)")
    args = parser.parse_args(argv)
    return run_platform(args)


if __name__ == "__main__":
    sys.exit(main())
