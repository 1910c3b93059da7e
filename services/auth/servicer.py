"""AuthService: proto <-> domain mapping only."""

from __future__ import annotations

from datetime import UTC

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.principal import from_context

from .domain import Auth


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    async def Authenticate(self, request, context):
        # No principal here: this is how the gateway obtains one.
        principal = await self.auth.authenticate(request.api_key)
        return auth_pb2.AuthenticateResponse(principal=principal)

    async def CreateApiKey(self, request, context):
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        return await self.auth.create_key(from_context(context), request.name, list(request.scopes), expires_at)

    async def ListApiKeys(self, request, context):
        return auth_pb2.ListApiKeysResponse(api_keys=await self.auth.list_keys(from_context(context)))

    async def RevokeApiKey(self, request, context):
        return await self.auth.revoke_key(from_context(context), request.id)
