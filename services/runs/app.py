"""The runs service: config -> engine -> server, plus its background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common.channels import Channels
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .engine import RunEngine
from .http_executor import HttpExecutor
from .hub import AgentHub
from .invocations import TABLES as INVOCATION_TABLES, JobInvocations
from .peers import Peers
from .servicer import AgentServicer, RunServicer
from .store import TABLES, RunStore
from .wakeups import PgWakeups
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

TICK_SECS = 0.5


class RunsService:
    """The parts of a runs replica, wired together; tests reach in through it."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.db = Database(settings.database_url, [*TABLES, *INVOCATION_TABLES])
        self.channels = Channels()
        self.store = RunStore(self.db, clock)
        self.peers = Peers(self.channels, settings.peers)
        self.engine = RunEngine(self.store, self.peers, clock, settings.heartbeat_timeout_secs)
        self.job_invocations = JobInvocations(self.engine)
        self.hub = AgentHub(self.engine, self.store, self.peers, clock, settings.heartbeat_interval_ms,
                            settings.presence_lease_secs)
        self.http = HttpExecutor(self.engine, self.store, clock, self.hub.replica_id)
        self.webhooks = WebhookSender(self.store, clock)
        # Several replicas share a PostgreSQL queue: wake each other by LISTEN/NOTIFY (one SQLite process
        # needs only the engine's in-process wake-ups).
        self.wakeups = PgWakeups(settings.database_url, self.engine, self.hub.replica_id) if self.db.is_postgres \
            else None
        self._tasks: list[asyncio.Task] = []

    async def tick(self) -> None:
        # Endpoint calls in flight beat like agents do, so a crashed replica's calls are found.
        await self.engine.tick({**self.hub.take_heartbeats(), **self.http.heartbeats()})

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECS)
            try:
                await self.tick()
            except Exception:
                log.exception("tick failed")

    async def start(self, ticking: bool = True) -> None:
        """Creates the tables and starts dispatching; `ticking=False` leaves timers to explicit tick() calls."""
        await self.db.create_tables()
        if self.wakeups is not None:
            await self.wakeups.start()
        loops = [self.hub.run_dispatcher(), self.http.run(), self._seal_stored_snapshots(),
                 *([self._ticker(), self.webhooks.run()] if ticking else [])]
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def _seal_stored_snapshots(self) -> None:
        """In the background, once per database: webhook secrets older releases kept in clear in snapshots."""
        try:
            sealed = await self.engine.seal_stored_snapshots()
            if sealed:
                log.info("sealed the webhook secrets of %d stored runs", sealed)
        except Exception:
            log.exception("could not seal the webhook secrets of stored runs (retried at the next start)")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.wakeups is not None:
            await self.wakeups.stop()
        for session in list(self.hub.sessions.values()):
            session.close()
        await self.http.client.aclose()
        await self.webhooks.close()
        await self.channels.close()
        await self.db.close()


async def build(settings: Settings, *, clock: Clock | None = None, ticking: bool = True) -> Registration:
    service = RunsService(settings, clock or Clock())
    run_servicer, agent_servicer = RunServicer(service.engine, service.hub), AgentServicer(service.hub)
    return Registration(
        add_to_server=[
            lambda server: runs_pb2_grpc.add_RunServiceServicer_to_server(run_servicer, server),
            lambda server: agent_pb2_grpc.add_AgentServiceServicer_to_server(agent_servicer, server),
        ],
        service_names=[
            runs_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
            agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        ],
        on_start=[lambda: service.start(ticking)],
        on_stop=[service.stop],
        handle=service,
    )
