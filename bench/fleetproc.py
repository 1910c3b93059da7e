"""The fleet simulator (agent.fleet.Fleet) in a process of its own, driven over a pipe.

Commands: stats, drop_all, assign_times, stop. Agents connect only to 127.0.0.1."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

CTX = multiprocessing.get_context("spawn")


def _main(conn, server: str, credentials_file: str, channels: int, capacity: int, record: bool) -> None:
    import logging

    from agent.cli import read_credentials
    from agent.fleet import Fleet

    logging.basicConfig(level=logging.WARNING)

    async def serve() -> None:
        devices = read_credentials(Path(credentials_file))
        fleet = Fleet(server, devices, capacity=capacity, channels=channels, record_assign_times=record)
        runner = asyncio.create_task(fleet.run())
        loop = asyncio.get_running_loop()
        try:
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "stats":
                    conn.send({"connected": fleet.connected, "assigned": fleet.assigned,
                               "completed": fleet.completed, "agents": len(fleet.agents), "time": time.time()})
                elif command == "drop_all":
                    fleet.drop_all()
                    conn.send(time.time())
                elif command == "assign_times":
                    conn.send({run_id: at for (run_id, _attempt), at in fleet.assign_times.items()})
                elif command == "stop":
                    break
        finally:
            await fleet.stop()
            runner.cancel()
            conn.send("stopped")

    asyncio.run(serve())


class FleetProcess:
    """`devices` are (device_id, credential) pairs, handed over in a credentials file."""

    def __init__(self, server: str, devices: list[tuple[str, str]], workdir: Path, *, channels: int = 4,
                 capacity: int = 1, record: bool = False) -> None:
        if not server.startswith("127.0.0.1:"):
            raise ValueError("the fleet only connects to 127.0.0.1")
        credentials = workdir / f"fleet-{len(devices)}-{time.monotonic_ns()}.txt"
        credentials.write_text("".join(f"{d} {c}\n" for d, c in devices))
        self.conn, child = CTX.Pipe()
        self.process = CTX.Process(target=_main, daemon=True,
                                   args=(child, server, str(credentials), channels, capacity, record))
        self.process.start()
        self.count = len(devices)

    def ask(self, command: str, timeout: float = 60.0) -> Any:
        self.conn.send(command)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the fleet did not answer {command!r}")
        return self.conn.recv()

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")

    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.ask("stop", timeout=30)
            except (TimeoutError, OSError, EOFError):
                pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class Fleets:
    """Several fleet processes seen as one (the agent-streams scenario connects in two halves)."""

    def __init__(self, parts: list[FleetProcess] | None = None) -> None:
        self.parts = parts or []

    @property
    def count(self) -> int:
        return sum(part.count for part in self.parts)

    def add(self, part: FleetProcess) -> None:
        self.parts.append(part)

    def stats(self) -> dict[str, Any]:
        answers = [part.stats() for part in self.parts]
        total = {key: sum(a[key] for a in answers) for key in ("connected", "assigned", "completed", "agents")}
        total["time"] = max((a["time"] for a in answers), default=time.time())
        return total

    def assign_times(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for part in self.parts:
            merged.update(part.ask("assign_times"))
        return merged

    def drop_all(self) -> float:
        return min(part.ask("drop_all") for part in self.parts)

    def stop(self) -> None:
        for part in self.parts:
            part.stop()
        self.parts = []
