"""AuthService and AuthAdminService: proto <-> domain mapping only."""

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
        which = request.WhichOneof("credential")
        if which == "basic":
            principal = await self.auth.authenticate(basic=True, login=request.basic.login, token=request.basic.token)
        elif which == "bearer_token":
            principal = await self.auth.authenticate(bearer=request.bearer_token)
        else:
            principal = await self.auth.authenticate(request.api_key)
        return auth_pb2.AuthenticateResponse(principal=principal)

    async def IssueToken(self, request, context):
        return await self.auth.issue_token(request.client_id, request.client_secret)

    async def CreateApiKey(self, request, context):
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        return await self.auth.create_key(from_context(context), request.name, list(request.scopes), expires_at,
                                          request.project_id, request.kind)

    async def ListApiKeys(self, request, context):
        keys = await self.auth.list_keys(from_context(context), request.project_id)
        return auth_pb2.ListApiKeysResponse(api_keys=keys)

    async def RevokeApiKey(self, request, context):
        return await self.auth.revoke_key(from_context(context), request.id)

    async def RotateApiKey(self, request, context):
        return await self.auth.rotate_key(from_context(context), request.id, request.grace_period_minutes)


class AuthAdminServicer(auth_pb2_grpc.AuthAdminServiceServicer):
    """The operator's service: callers hold the service credential (checked by the server), no principal."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    async def CreateTenant(self, request, context):
        return await self.auth.create_tenant(request.name, request.default_project_id)

    async def ListTenants(self, request, context):
        return auth_pb2.ListTenantsResponse(tenants=await self.auth.list_tenants())

    async def CreateProject(self, request, context):
        return await self.auth.create_project(request.tenant, request.id, request.name)

    async def CreateUser(self, request, context):
        return await self.auth.create_user(request.tenant, request.login)

    async def CreateServiceAccount(self, request, context):
        return await self.auth.create_service_account(request.tenant, request.project_id, request.name,
                                                      list(request.scopes))

    async def IssueApiKey(self, request, context):
        return await self.auth.issue_key(request)

    async def RevokeCredential(self, request, context):
        return await self.auth.revoke_credential(request.tenant, request.id)

    async def RotateSigningKey(self, request, context):
        return await self.auth.rotate_signing_key()
