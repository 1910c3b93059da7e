"""What every surface beside the native API shares: its peers' stubs, the authenticator, and one way
to turn whatever a handler raises into the surface's own error shape.

A surface subclasses `Surface`: its handlers raise its `SurfaceError` subclass (which renders the
surface's error body), and its `failure()` maps what others raise — the authenticator's refusals
(`DomainError`), the body limit (`HTTPException`) and gRPC errors no handler mapped — to one. The
platform's own faults (answers of 500 and more to a gRPC error, and any other exception, answered 500 in the
surface's shape) are logged here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from jobline.auth.v1 import auth_pb2_grpc
from jobline.devices.v1 import devices_pb2_grpc
from jobline.jobs.v1 import jobs_pb2_grpc
from jobline.runs.v1 import runs_pb2_grpc
from services.common.channels import Channels
from services.common.config import Settings
from services.common.errors import DomainError

from .auth import Authenticator

log = logging.getLogger(__name__)
S = TypeVar("S")

RPC_TIMEOUT_SECS = 30.0
Handler = Callable[[Request], Awaitable[Response]]


class SurfaceError(Exception):
    """An answer of a surface in its error shape; `response()` renders it."""

    status: int = 500

    def response(self) -> Response:
        raise NotImplementedError


def unavailable(error: grpc.aio.AioRpcError) -> bool:
    """The peer could not be reached in time (503), rather than failing (500)."""
    return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Surface:
    def __init__(self, settings: Settings, channels: Channels, authenticator: Authenticator) -> None:
        self.channels = channels
        self.peers = settings.peers
        self.authenticator = authenticator

    # -- the peers (one channel each, kept by Channels) -----------------------------------------

    def _stub(self, peer: str, stub_class: type[S]) -> S:
        """The peer channel's one stub of that class (see PeerChannel.cached)."""
        return self.channels.get(self.peers[peer]).cached(stub_class, stub_class)

    @property
    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        return self._stub("jobs", jobs_pb2_grpc.JobServiceStub)

    @property
    def runs(self) -> runs_pb2_grpc.RunServiceStub:
        return self._stub("runs", runs_pb2_grpc.RunServiceStub)

    @property
    def devices(self) -> devices_pb2_grpc.DeviceServiceStub:
        return self._stub("devices", devices_pb2_grpc.DeviceServiceStub)

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return self._stub("auth", auth_pb2_grpc.AuthServiceStub)

    # -- failures -----------------------------------------------------------------------------

    def failure(self, error: DomainError | HTTPException | grpc.aio.AioRpcError) -> SurfaceError:
        """This surface's answer to an authentication refusal, a body too large, or a gRPC error."""
        raise NotImplementedError

    def finish(self, response: Response) -> Response:
        """Every answer of the surface passes here (a surface may add headers)."""
        return response

    def guarded(self, handler: Handler) -> Handler:
        """The handler, with every failure rendered in this surface's shape."""

        async def endpoint(request: Request) -> Response:
            try:
                response = await handler(request)
            except SurfaceError as error:
                response = error.response()
            except (DomainError, HTTPException, grpc.aio.AioRpcError) as error:
                answer = self.failure(error)
                if isinstance(error, grpc.aio.AioRpcError) and answer.status >= 500:
                    log.warning("%s %s: %s %s", request.method, request.url.path, error.code().name,
                                error.details())
                response = answer.response()
            except Exception:  # a fault of the gateway's own: still a 500 in this surface's shape
                log.exception("%s %s failed", request.method, request.url.path)
                response = self.failure(HTTPException(500, "Internal Server Error")).response()
            return self.finish(response)

        return endpoint
