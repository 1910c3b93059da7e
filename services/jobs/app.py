"""The jobs service: config -> engine -> server, plus the cron scheduler loop."""

from __future__ import annotations

import asyncio
import contextlib

from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common.channels import Channels
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .domain import Jobs
from .peers import Runs, RunsPeer
from .scheduler import Scheduler
from .servicer import JobServicer
from .store import TABLES, JobStore


class JobsService:
    """The parts of a jobs replica, wired together; tests reach in through it (`scheduler.tick()`)."""

    def __init__(self, settings: Settings, clock: Clock, runs: Runs | None = None) -> None:
        self.db = Database(settings.database_url, TABLES)
        self.channels = Channels()
        self.store = JobStore(self.db)
        self.runs = runs or RunsPeer(self.channels, settings.peers.get("runs", ""))
        self.jobs = Jobs(self.store, clock, self.runs)
        self.scheduler = Scheduler(self.store, self.runs, clock)
        self._task: asyncio.Task | None = None

    async def start(self, ticking: bool = True) -> None:
        """Creates the tables and starts the scheduler; `ticking=False` leaves it to explicit tick() calls."""
        await self.db.create_tables()
        await self.jobs.seal_stored()  # webhook secrets an older release stored in clear
        if ticking:
            self._task = asyncio.create_task(self.scheduler.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channels.close()
        await self.db.close()


async def build(settings: Settings, *, clock: Clock | None = None, runs: Runs | None = None,
                ticking: bool = True) -> Registration:
    service = JobsService(settings, clock or Clock(), runs)
    servicer = JobServicer(service.jobs)
    return Registration(
        add_to_server=[lambda server: jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)],
        service_names=[jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name],
        on_start=[lambda: service.start(ticking)],
        on_stop=[service.stop],
        handle=service,
    )
