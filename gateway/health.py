"""`/health` and `/health/ready`: 200 once every service answers gRPC health checking SERVING."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.common.channels import Channels
from services.common.config import SERVICES, Settings

from .errors import error_response

CHECK_TIMEOUT_SECS = 2.0


def routes(settings: Settings, channels: Channels) -> list[BaseRoute]:
    async def problem(service: str) -> str | None:
        stub = health_pb2_grpc.HealthStub(channels.get(settings.peers[service]))
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            return f"{service}: {error.code().name.lower()}"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return f"{service}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()}"
        return None

    def endpoint(status: str):
        async def check(request: Request) -> Response:
            problems = [p for p in await asyncio.gather(*(problem(s) for s in SERVICES)) if p]
            if problems:
                return error_response(503, "unavailable", "not every service is serving", problems)
            return JSONResponse({"status": status})

        return check

    return [Route("/health", endpoint("ok")), Route("/health/ready", endpoint("ready"))]
