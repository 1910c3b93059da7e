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
        return await self.devices.get(from_context(context), request.device_id, request.number)

    async def ListDevices(self, request, context):
        devices, token, (total, matched) = await self.devices.list(
            from_context(context), request.page_size, request.page_token, request.group, request.query,
            request.online if request.HasField("online") else None, request.query_dialect, request.offset,
            request.include_counts, request.search_id,
        )
        reply = devices_pb2.ListDevicesResponse(devices=devices, next_page_token=token)
        if request.include_counts:
            reply.total_count, reply.matched_count = total, matched
        return reply

    async def UpdateDevice(self, request, context):
        return await self.devices.update(
            from_context(context), request.device_id, request.device, list(request.update_mask.paths)
        )

    async def DeleteDevice(self, request, context):
        await self.devices.delete(from_context(context), request.device_id)
        return empty_pb2.Empty()

    async def ResolveTargets(self, request, context):
        return await self.devices.resolve(from_context(context), request.targets, request.pick_count or 1,
                                          pool_members=request.pool_members,
                                          max_pool_members=request.max_pool_members)

    async def AuthenticateAgent(self, request, context):
        # No principal: the runs service asks on behalf of an agent saying Hello.
        return await self.devices.authenticate_agent(request.device_id, request.credential)

    async def ReportPresence(self, request, context):
        # No principal: internal, from the runs service; each change names its tenant.
        return await self.devices.report_presence(request)

    async def RevokeCredential(self, request, context):
        return await self.devices.revoke_credential(from_context(context), request.device_id)

    async def RotateCredential(self, request, context):
        return await self.devices.rotate_credential(from_context(context), request.device_id)

    async def CreateDeviceGroup(self, request, context):
        return await self.devices.create_group(from_context(context), request.group)

    async def GetDeviceGroup(self, request, context):
        return await self.devices.get_group(from_context(context), request.group_id)

    async def ListDeviceGroups(self, request, context):
        groups, token = await self.devices.list_groups(from_context(context), request.page_size, request.page_token)
        return devices_pb2.ListDeviceGroupsResponse(groups=groups, next_page_token=token)

    async def UpdateDeviceGroup(self, request, context):
        return await self.devices.update_group(
            from_context(context), request.group_id, request.group, list(request.update_mask.paths))

    async def DeleteDeviceGroup(self, request, context):
        await self.devices.delete_group(from_context(context), request.group_id)
        return empty_pb2.Empty()

    async def CreateDeviceSearch(self, request, context):
        return await self.devices.create_search(from_context(context), request.search)

    async def GetDeviceSearch(self, request, context):
        return await self.devices.get_search(from_context(context), request.search_id)

    async def ListDeviceSearches(self, request, context):
        searches, token = await self.devices.list_searches(from_context(context), request.page_size,
                                                           request.page_token)
        return devices_pb2.ListDeviceSearchesResponse(searches=searches, next_page_token=token)

    async def UpdateDeviceSearch(self, request, context):
        return await self.devices.update_search(
            from_context(context), request.search_id, request.search, list(request.update_mask.paths))

    async def DeleteDeviceSearch(self, request, context):
        await self.devices.delete_search(from_context(context), request.search_id)
        return empty_pb2.Empty()

    async def CreateEnrollmentToken(self, request, context):
        return await self.devices.create_token(from_context(context), request.token)

    async def ListEnrollmentTokens(self, request, context):
        tokens, token = await self.devices.list_tokens(from_context(context), request.page_size, request.page_token)
        return devices_pb2.ListEnrollmentTokensResponse(tokens=tokens, next_page_token=token)

    async def RevokeEnrollmentToken(self, request, context):
        return await self.devices.revoke_token(from_context(context), request.token_id)

    async def EnrollDevice(self, request, context):
        # No principal: the enrolment token is the credential.
        return await self.devices.enroll(request)

    async def ValidateAgents(self, request, context):
        # No principal: internal, from the runs service, about the streams it holds.
        invalid, revision = await self.devices.validate_agents(list(request.agents))
        return devices_pb2.ValidateAgentsResponse(invalid=invalid, revision=revision)
