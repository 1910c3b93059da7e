"""The jobs service: config -> engine -> server."""

from __future__ import annotations

from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .domain import Jobs
from .servicer import JobServicer
from .store import TABLES, JobStore


async def build(settings: Settings, *, clock: Clock | None = None) -> Registration:
    db = Database(settings.database_url, TABLES)
    await db.create_tables()
    servicer = JobServicer(Jobs(JobStore(db), clock or Clock()))
    return Registration(
        add_to_server=[lambda server: jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)],
        service_names=[jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name],
        on_stop=[db.close],
    )
