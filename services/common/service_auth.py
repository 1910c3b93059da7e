"""The service credential: every internal gRPC call carries a shared secret; servers refuse calls without it.

Where the secret comes from, first match wins:
1. `configure(token)` (tests, embedding);
2. the environment variable JOBLINE_SERVICE_TOKEN (set it on every process of a deployment);
3. the file `<JOBLINE_DATA_DIR>/service-token`, created (mode 0600) by the first process that needs
   it, so that every process of one local installation agrees without configuration.

`server.run()` always enforces it. Exempt: the agent-facing `jobline.runs.v1.AgentService` (agents
hold device credentials, not this one), gRPC health checking and reflection.

Clients (`Channels`) attach it as the `x-jobline-service-token` metadata of every call (services/common/
channels.py); servers check it where a call's method is found (`Guard`, services/common/server.py). The value
never appears in logs, span attributes or error messages. Behind Envoy with mTLS the same check keeps working:
Envoy's sidecars carry the token inside the mutual-TLS tunnel (see the deploy notes).
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

import grpc

from .secrets import read_or_create as read_or_create_secret

log = logging.getLogger(__name__)

ENV_VAR = "JOBLINE_SERVICE_TOKEN"
FILE_NAME = "service-token"
METADATA_KEY = "x-jobline-service-token"
# Full method prefixes served without the service credential.
EXEMPT_PREFIXES = (
    "/jobline.runs.v1.AgentService/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
MIN_TOKEN_LEN = 16

_configured: str | None = None


def configure(token: str | None) -> None:
    """Sets (or, with None, clears) this process's service credential, overriding env and file."""
    global _configured
    if token is not None and len(token) < MIN_TOKEN_LEN:
        raise ValueError(f"a service token needs at least {MIN_TOKEN_LEN} characters")
    _configured = token


def token_file(directory: Path) -> Path:
    return directory / FILE_NAME


def read_or_create(path: Path) -> str:
    """The token in `path`, creating it (0600, atomically: concurrent first starts agree) if missing."""
    try:
        return read_or_create_secret(path)
    except RuntimeError:
        raise RuntimeError(f"{path} holds no usable service token") from None


def resolve(*, create: bool = True) -> str | None:
    """This process's service credential (see the module doc); None when there is none to find."""
    if _configured:
        return _configured
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env
    from .config import data_dir  # lazily: data_dir() creates the directory

    if create and os.environ.get("JOBLINE_DATA_DIR"):
        return read_or_create(token_file(data_dir()))
    default = Path(os.environ.get("JOBLINE_DATA_DIR") or "data").resolve()
    path = token_file(default)
    if create:
        return read_or_create(path)
    return path.read_text().strip() if path.exists() else None


def matches(presented: str | None, expected: str) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def is_exempt(method: str) -> bool:
    return method.startswith(EXEMPT_PREFIXES)


def _presented(metadata) -> str | None:
    for key, value in metadata or ():
        if key == METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else value
    return None


class Guard:
    """The server's side: which calls carry the service credential (services/common/server.py asks it for
    every call, where the call's method is found)."""

    def __init__(self, token: str) -> None:
        if len(token) < MIN_TOKEN_LEN:
            raise ValueError(f"a service token needs at least {MIN_TOKEN_LEN} characters")
        self._token = token

    def admits(self, method: str, metadata) -> bool:
        """Whether a call of `method` with this invocation metadata is served (logs a refusal)."""
        if is_exempt(method) or matches(_presented(metadata), self._token):
            return True
        log.warning("refused %s: no valid service credential", method)
        return False


def refusal(handler):
    """A handler of the same shape as `handler` that aborts with UNAUTHENTICATED."""
    if handler is None:
        return None
    message = "a valid service credential is required"

    async def unary(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, handler.request_deserializer,
                                                    handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(streaming, handler.request_deserializer, handler.response_serializer)
