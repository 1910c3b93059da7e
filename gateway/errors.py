"""Errors in the native API's shape: `{"error": {"code", "message", "details"}}`.

gRPC status codes (from the services, or raised here as `services.common.errors.DomainError`)
map to HTTP statuses in one table; routing errors (404, 405, 413) keep their HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.common.errors import DomainError

log = logging.getLogger(__name__)

INTERNAL = (500, "internal_error")

BY_STATUS: Mapping[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "validation_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "validation_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "validation_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict"),
    grpc.StatusCode.ABORTED: (409, "conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limited"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
}

BY_HTTP_STATUS: Mapping[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}

# Messages for 5xx never carry a peer's own words (addresses, stack details).
GENERIC_MESSAGES = {500: "internal error", 503: "service unavailable"}


def error_response(
    status: int, code: str, message: str, details: Sequence[str] = (), headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": list(details)}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_response(code: grpc.StatusCode, message: str) -> JSONResponse:
    status, name = BY_STATUS.get(code, INTERNAL)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, name, GENERIC_MESSAGES.get(status, message or name), headers=headers)


async def _rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    if BY_STATUS.get(exc.code(), INTERNAL)[0] >= 500:
        log.warning("%s %s: %s %s", request.method, request.url.path, exc.code().name, exc.details())
    return status_response(exc.code(), exc.details() or "")


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    response = status_response(exc.status, exc.message)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = BY_HTTP_STATUS.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "bad_request")
    return error_response(exc.status_code, code, exc.detail, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(*INTERNAL, GENERIC_MESSAGES[500])


EXCEPTION_HANDLERS = {
    grpc.aio.AioRpcError: _rpc_error,
    DomainError: _domain_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
