"""`jobline agent` (connect this machine as a device) and `jobline fleet` (simulate many devices)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from services.common.config import service_addr
from services.common.telemetry import setup_logging

from .fleet import Fleet
from .runtime import KILL_GRACE_SECS, Agent

log = logging.getLogger("agent")

FLEET_REPORT_SECS = 5.0


def agent_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobline agent", description="Connect this machine to Jobline as a "
                                     "device and run the commands (and handlers) assigned to it.")
    parser.add_argument("--device", required=True, help="the device id")
    parser.add_argument("--credential", default=os.environ.get("JOBLINE_AGENT_CREDENTIAL"),
                        help="the device's agent credential (default: $JOBLINE_AGENT_CREDENTIAL)")
    parser.add_argument("--server", default=service_addr("runs"),
                        help="the runs service, host:port (default: $JOBLINE_RUNS_ADDR or 127.0.0.1:50052)")
    parser.add_argument("--capacity", type=int, default=4, help="how many runs at once (default: 4)")
    parser.add_argument("--enroll-token", default=os.environ.get("JOBLINE_ENROLL_TOKEN"),
                        help="register this device with an enrolment token on first start (default: "
                             "$JOBLINE_ENROLL_TOKEN); its credential is then kept in --credential-file")
    parser.add_argument("--credential-file", type=Path,
                        help="where the credential an enrolment answered is kept, mode 0600 "
                             "(default: ~/.jobline/agent-<device>.credential)")
    parser.add_argument("--name", default="", help="with --enroll-token: the device's display name")
    parser.add_argument("--handler", action="append", default=[], metavar="NAME=COMMAND",
                        help="run COMMAND (a shell command; the run's inputs are in its environment as "
                             "JOBLINE_INPUT_<NAME>) for jobs that name handler NAME, e.g. "
                             "--handler mission='fly --mission \"$JOBLINE_INPUT_MISSIONID\"'; repeatable. "
                             "Runs of a handler the agent lacks are rejected")
    parser.add_argument("--kill-grace", type=float, default=KILL_GRACE_SECS,
                        help="seconds between SIGTERM and SIGKILL when a run is canceled or times out "
                             f"(default: {KILL_GRACE_SECS:g})")
    args = parser.parse_args(argv)
    if args.capacity < 1:
        parser.error("--capacity must be at least 1")
    if args.kill_grace < 0:
        parser.error("--kill-grace must not be negative")
    try:
        handlers = parse_handlers(args.handler)
    except ValueError as error:
        parser.error(str(error))
    path = args.credential_file or Path.home() / ".jobline" / f"agent-{args.device}.credential"
    credential = args.credential
    if not credential and path.exists():
        credential = path.read_text().strip()
    if not credential and not args.enroll_token:
        parser.error(f"a credential is needed: --credential, JOBLINE_AGENT_CREDENTIAL, {path} "
                     "or --enroll-token to register this device")
    _setup_logging()
    log.info("agent for device %s connecting to %s%s", args.device, args.server,
             "" if credential else " to enrol")
    agent = Agent(args.server, args.device, credential or "", args.capacity, enrollment_token=args.enroll_token or "",
                  device_name=args.name, on_enrolled=lambda secret: store_credential(path, secret),
                  handlers=handlers, kill_grace=args.kill_grace)
    code = asyncio.run(_serve(agent))
    if agent.refused:
        print(f"jobline agent: refused by the server: {agent.refused}", file=sys.stderr)
        return 3
    return code


def parse_handlers(specs: list[str]) -> dict[str, str]:
    """`NAME=COMMAND` arguments as {name: command}."""
    handlers: dict[str, str] = {}
    for spec in specs:
        name, equals, command = spec.partition("=")
        name = name.strip()
        if not equals or not name or not command.strip():
            raise ValueError(f"--handler expects NAME=COMMAND, got {spec!r}")
        if name in handlers:
            raise ValueError(f"--handler {name} given twice")
        handlers[name] = command
    return handlers


def store_credential(path: Path, credential: str) -> None:
    """Writes the credential readable by this user only (0600), replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_name(path.name + ".tmp")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(credential + "\n")
    os.chmod(scratch, 0o600)
    os.replace(scratch, path)
    log.info("credential stored in %s", path)


def fleet_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobline fleet", description="Simulate many agents from one process: "
                                     "each answers an Assign at once with one output line and exit code 0.")
    parser.add_argument("--server", default=service_addr("runs"),
                        help="the runs service, host:port (default: $JOBLINE_RUNS_ADDR or 127.0.0.1:50052)")
    parser.add_argument("--count", type=int, help="how many agents (with --credentials-file: at most this many)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--credentials-file", type=Path,
                        help="one 'device_id credential' pair a line (space or comma separated; # comments)")
    source.add_argument("--device-prefix", help="device ids are PREFIX0 .. PREFIX<count-1>")
    parser.add_argument("--credential-template", default="{device}",
                        help="with --device-prefix: each credential, with {device} and {i} filled in")
    parser.add_argument("--capacity", type=int, default=1, help="capacity each agent announces (default: 1)")
    parser.add_argument("--channels", type=int, default=1, help="gRPC connections to share (default: 1)")
    parser.add_argument("--handler", action="append", default=[], metavar="NAME",
                        help="also complete runs of handler NAME (e.g. mission: drones flying missions); "
                             "repeatable. Runs of other handlers are rejected")
    args = parser.parse_args(argv)
    if args.credentials_file is not None:
        devices = read_credentials(args.credentials_file)[:args.count]
    elif args.count is None:
        parser.error("--device-prefix needs --count")
    else:
        ids = [f"{args.device_prefix}{i}" for i in range(args.count)]
        devices = [(device, args.credential_template.format(device=device, i=i)) for i, device in enumerate(ids)]
    if not devices:
        parser.error("no devices to simulate")
    _setup_logging()
    fleet = Fleet(args.server, devices, capacity=args.capacity, channels=args.channels, handlers=args.handler)
    log.info("simulating %d agents against %s", len(devices), args.server)
    return asyncio.run(_serve_fleet(fleet))


def read_credentials(path: Path) -> list[tuple[str, str]]:
    """(device_id, credential) pairs from a file: one a line, space or comma separated, # comments."""
    devices = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if fields:
            if len(fields) != 2:
                raise SystemExit(f"{path}: expected 'device_id credential', got {line!r}")
            devices.append((fields[0], fields[1]))
    return devices


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.cli agent|fleet ...`."""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"agent": agent_main, "fleet": fleet_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m agent.cli {agent,fleet} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


async def _serve(service: Agent | Fleet) -> int:
    """Runs the agent or fleet until SIGINT or SIGTERM; its `run()` cleans up as it is cancelled."""
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        await service.run()
    except asyncio.CancelledError:
        log.info("stopped")
    return 0


async def _serve_fleet(fleet: Fleet) -> int:
    """`_serve`, with a line of counters every few seconds."""

    async def report() -> None:
        while True:
            await asyncio.sleep(FLEET_REPORT_SECS)
            log.info("%d/%d connected, %d assigned, %d completed", fleet.connected, len(fleet.agents),
                     fleet.assigned, fleet.completed)

    reporter = asyncio.create_task(report())
    try:
        return await _serve(fleet)
    finally:
        reporter.cancel()


def _setup_logging() -> None:
    setup_logging("agent", os.environ.get("JOBLINE_LOG_LEVEL") or "INFO")


if __name__ == "__main__":
    sys.exit(main())
