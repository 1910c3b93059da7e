"""The caller's principal, carried between processes in gRPC metadata."""

from __future__ import annotations

import base64

import grpc

from jobline.auth.v1.auth_pb2 import Principal

from .errors import PermissionDenied, Unauthenticated

METADATA_KEY = "x-jobline-principal-bin"

# Scopes; ADMIN implies every other.
READ, TRIGGER, WRITE, ADMIN = "READ", "TRIGGER", "WRITE", "ADMIN"


def to_metadata(principal: Principal) -> tuple[tuple[str, bytes], ...]:
    return ((METADATA_KEY, principal.SerializeToString()),)


def from_context(context: grpc.aio.ServicerContext) -> Principal:
    """The principal of the call being served; refuses a call that carries none."""
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            principal = Principal.FromString(raw)
            if principal.tenant_id:
                return principal
    raise Unauthenticated("no principal on the call")


def require_scope(principal: Principal, scope: str) -> None:
    scopes = set(principal.scopes)
    if ADMIN not in scopes and scope not in scopes:
        raise PermissionDenied(f"missing scope {scope}")
