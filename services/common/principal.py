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


def bound_project(principal: Principal) -> str:
    """The one project a principal reaches, or "" when it reaches every project of its tenant.

    The rule: a credential with the ADMIN scope is tenant-wide; every other API key, personal access
    token, service account (JWT) or scheduler principal reaches only the jobs and runs of its own project.
    Another project's job or run is answered exactly like a missing one."""
    if ADMIN in principal.scopes or not principal.project_id:
        return ""
    return principal.project_id


def reaches_project(principal: Principal, project_id: str) -> bool:
    bound = bound_project(principal)
    return not bound or project_id == bound


def listed_project(principal: Principal, requested: str) -> str | None:
    """The project a listing is limited to ("" for every project): the requested one, or the principal's
    own when it is bound to one; None when the principal cannot see the requested project (list nothing)."""
    bound = bound_project(principal)
    if not bound:
        return requested
    return bound if requested in ("", bound) else None


def require_project(principal: Principal, project_id: str) -> None:
    """Refuses to create something in a project the principal does not reach."""
    if not reaches_project(principal, project_id):
        raise PermissionDenied(f"this credential reaches only project {bound_project(principal)!r}, "
                               f"not {project_id[:128]!r}")
