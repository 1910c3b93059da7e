"""Domain errors, raised by domain code and turned into gRPC status codes in one place."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    status = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    status = grpc.StatusCode.ALREADY_EXISTS


class Conflict(DomainError):
    """The object's state forbids the change (HTTP 409)."""

    status = grpc.StatusCode.ABORTED


class FailedPrecondition(DomainError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(DomainError):
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


# The longest message an RPC is aborted with. Messages quote what the caller sent ("job <id> not found"); the
# details travel in a trailer, and a trailer over the client's metadata limit (16 KiB) turns the answer into
# RESOURCE_EXHAUSTED "received metadata size exceeds hard limit" instead of the error raised.
MAX_MESSAGE_CHARS = 1000


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The message, its middle elided when it is longer than `limit` characters."""
    if len(message) <= limit:
        return message
    keep = (limit - 1) // 2
    return f"{message[:keep]}…{message[-keep:]}"


_BY_CODE = {cls.status: cls for cls in (InvalidArgument, NotFound, AlreadyExists, Conflict, FailedPrecondition,
                                        Unauthenticated, PermissionDenied, ResourceExhausted)}


def from_rpc_error(error: grpc.aio.AioRpcError) -> DomainError:
    """A peer service's refusal, as the domain error to raise to our own caller."""
    cls = _BY_CODE.get(error.code(), DomainError)
    return cls(error.details() or error.code().name.lower())
