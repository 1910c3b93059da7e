"""The devices service: config -> engine -> server."""

from __future__ import annotations

from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .domain import Devices
from .servicer import DeviceServicer
from .store import TABLES, DeviceStore


async def build(settings: Settings, *, clock: Clock | None = None) -> Registration:
    db = Database(settings.database_url, TABLES)
    await db.create_tables()
    store = DeviceStore(db)
    await store.number_unnumbered()
    devices = Devices(store, clock or Clock())
    servicer = DeviceServicer(devices)
    return Registration(
        add_to_server=[lambda server: devices_pb2_grpc.add_DeviceServiceServicer_to_server(servicer, server)],
        service_names=[devices_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name],
        on_stop=[db.close],
        handle=devices,
    )
