"""DeviceService: proto <-> domain mapping only."""

from __future__ import annotations

from google.protobuf import empty_pb2

from jobline.devices.v1 import devices_pb2, devices_pb2_grpc
from services.common.principal import from_context

from .domain import Devices


class DeviceServicer(devices_pb2_grpc.DeviceServiceServicer):
    def __init__(self, devices: Devices) -> None:
        self.devices = devices

    async def CreateDevice(self, request, context):
        return await self.devices.create(from_context(context), request.device)

    async def GetDevice(self, request, context):
        return await self.devices.get(from_context(context), request.device_id)

    async def ListDevices(self, request, context):
        devices, token = await self.devices.list(
            from_context(context), request.page_size, request.page_token, request.group
        )
        return devices_pb2.ListDevicesResponse(devices=devices, next_page_token=token)

    async def UpdateDevice(self, request, context):
        return await self.devices.update(
            from_context(context), request.device_id, request.device, list(request.update_mask.paths)
        )

    async def DeleteDevice(self, request, context):
        await self.devices.delete(from_context(context), request.device_id)
        return empty_pb2.Empty()

    async def ResolveTargets(self, request, context):
        return await self.devices.resolve(from_context(context), request.targets)

    async def AuthenticateAgent(self, request, context):
        # No principal: the runs service asks on behalf of an agent saying Hello.
        return await self.devices.authenticate_agent(request.device_id, request.credential)

    async def ReportPresence(self, request, context):
        # No principal: internal, from the runs service; each change names its tenant.
        await self.devices.report_presence(list(request.changes))
        return empty_pb2.Empty()
