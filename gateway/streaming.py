"""Server-Sent Events for the native API: `GET /v1/runs/{run_id}/stream` follows RunService.WatchRun.

Authenticates like the native routes (the app's Authenticator; READ scope). A browser EventSource
cannot set headers, so the key may also come as `?access_token=` (the app's QueryCredentialMiddleware
turns it into the Authorization header). Each message of the stream is one
event: `event: run` (the run, whenever it changes) or `event: output` (a new output chunk), with the
message as proto JSON in `data:`. The stream ends after the run reaches a terminal state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from jobline.runs.v1 import runs_pb2
from services.common.channels import Channels
from services.common.config import Settings
from services.common.principal import READ, to_metadata

from . import protojson
from .auth import Authenticator

KEEPALIVE = b": keep-alive\n\n"


def routes(settings: Settings, channels: Channels, authenticator: Authenticator) -> list[BaseRoute]:
    addr = settings.peers["runs"]

    async def stream(request: Request) -> Response:
        principal = await authenticator.authorize(request.headers, READ)
        watch = channels.get(addr).unary_stream(
            "/jobline.runs.v1.RunService/WatchRun",
            request_serializer=runs_pb2.GetRunRequest.SerializeToString,
            response_deserializer=runs_pb2.WatchRunResponse.FromString,
        )
        call = watch(runs_pb2.GetRunRequest(run_id=request.path_params["run_id"]), metadata=to_metadata(principal))
        first = await call.read()  # a missing run or a refusal is answered as an error, not as a stream
        if first is grpc.aio.EOF:
            return StreamingResponse(iter(()), media_type="text/event-stream")

        async def events() -> AsyncIterator[bytes]:
            message = first
            try:
                while message is not grpc.aio.EOF:
                    yield _event(message)
                    message = await call.read()
            finally:
                call.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return [Route("/v1/runs/{run_id}/stream", stream, methods=["GET"])]


def _event(message: runs_pb2.WatchRunResponse) -> bytes:
    kind = message.WhichOneof("body")
    data = json.dumps(protojson.to_json(getattr(message, kind)), separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()
