"""The devices service: config -> engine -> server."""

from __future__ import annotations

import asyncio
import contextlib

from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .domain import Devices
from .servicer import DeviceServicer
from .store import TABLES, DeviceStore


async def build(settings: Settings, *, clock: Clock | None = None, sweeping: bool = True) -> Registration:
    """`sweeping=False` leaves presence sweeps to explicit Devices.sweep_presence() calls (tests)."""
    db = Database(settings.database_url, TABLES)
    await db.create_tables()
    store = DeviceStore(db)
    await store.number_unnumbered()
    devices = Devices(store, clock or Clock())
    servicer = DeviceServicer(devices)
    tasks: list[asyncio.Task] = []

    async def start() -> None:
        if sweeping:
            tasks.append(asyncio.create_task(devices.run_presence_sweeper(), name="presence-sweeper"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await db.close()

    return Registration(
        add_to_server=[lambda server: devices_pb2_grpc.add_DeviceServiceServicer_to_server(servicer, server)],
        service_names=[devices_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name],
        on_start=[start],
        on_stop=[stop],
        handle=devices,
    )
