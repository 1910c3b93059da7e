"""Server bootstrap shared by every service: config -> engine -> grpc.aio server.

A service describes itself with a `Service` (its name, how to build its servicers
from settings, and background tasks); `serve()` adds health checking, reflection,
tracing, the domain-error mapping and graceful shutdown on SIGINT / SIGTERM.

The per-call work — the service credential, the trace context, the domain-error mapping — is done where
grpc.aio finds a call's method (`_Methods`, the server's one generic handler), not by server interceptors:
an interceptor chain costs coroutines and a newly wrapped handler on every call; here the wrapped handler is
made once per method and the checks are plain function calls.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from . import eventloop, service_auth, telemetry
from .config import Settings
from .errors import DomainError, bounded

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_concurrent_streams", 100_000),
    # Reconnect storms: queue bursts of new streams instead of refusing them.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    # A port in use is an error: with gRPC's default SO_REUSEPORT a second server on the same port
    # (another instance, a test stack picking a port already taken) would silently share its calls.
    ("grpc.so_reuseport", 0),
]


@dataclass
class Registration:
    """What a service adds to a server: servicers, their full service names, hooks."""

    add_to_server: list[Callable[[grpc.aio.Server], None]]
    service_names: list[str]
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The service's own object (engine, hub, ...), for tests that reach inside.
    handle: Any = None


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    registration: Registration
    health: health.aio.HealthServicer

    async def stop(self, grace: float = 5.0) -> None:
        for name in [*self.registration.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for hook in self.registration.on_stop:
            await hook()


async def start(registration: Registration, listen_addr: str, *, service_token: str | None = None) -> RunningServer:
    """Starts a server on listen_addr (port 0 picks a free port) and runs its start hooks.

    With `service_token` every call but the exempt ones (agent stream, health, reflection) must
    carry it (see services.common.service_auth); `run()` always passes one."""
    methods = _Methods(service_auth.Guard(service_token) if service_token else None)
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=None)
    registrar = _Registrar(server, methods)
    for add in registration.add_to_server:
        add(registrar)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    # reflection.enable_server_reflection, for an aio server (it tells them apart by type)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(
        [*registration.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME]), registrar)
    server.add_generic_rpc_handlers((methods,))
    port = server.add_insecure_port(listen_addr)
    for hook in registration.on_start:
        await hook()
    await server.start()
    for name in [*registration.service_names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, registration, health_servicer)


class _Methods(grpc.GenericRpcHandler):
    """Every method of the server, served behind the service credential (when `guard`), with the caller's
    trace context current (context-only) or inside OpenTelemetry's server span (recording), and a
    DomainError raised by a unary-request handler answered with its status code (see services.common.errors).

    grpc.aio asks `service()` in the call's own task, before the handler runs (what it sets is the call's)."""

    def __init__(self, guard: service_auth.Guard | None) -> None:
        self._guard = guard
        self._registered: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        # method -> (the handler found, as served): wrapped once per method
        self._served: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def add_generic(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._registered.update({f"/{service_name}/{name}": handler for name, handler in handlers.items()})

    def service(self, handler_call_details):
        method = handler_call_details.method
        found = self._registered.get(method)
        if found is None:
            for generic in self._generic:
                found = generic.service(handler_call_details)
                if found is not None:
                    break
            else:
                return None
        served = self._served.get(method)
        if served is None or served[0] is not found:
            served = self._served[method] = (found, _mapping_domain_errors(found))
        metadata = handler_call_details.invocation_metadata
        if self._guard is not None and not self._guard.admits(method, metadata):
            return service_auth.refusal(found)
        if telemetry.recording():
            return telemetry.recording_handler(handler_call_details, served[1])
        telemetry.enter_call(metadata)
        return served[1]


class _Registrar:
    """The server as `Registration.add_to_server` sees it: the handlers it adds go to `_Methods`."""

    def __init__(self, server: grpc.aio.Server, methods: _Methods) -> None:
        self._server = server
        self._methods = methods

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._methods.add_generic(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._methods.add_registered(service_name, handlers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def _mapping_domain_errors(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler, aborting an RPC whose unary-request behaviour raised a DomainError with the error's status
    code (and its message, `bounded`)."""
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            try:
                return await inner(request, context)
            except DomainError as error:
                await context.abort(error.status, bounded(error.message))

        return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer,
                                                  handler.response_serializer)
    if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            try:
                async for item in inner_stream(request, context):
                    yield item
            except DomainError as error:
                await context.abort(error.status, bounded(error.message))

        return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer,
                                                   handler.response_serializer)
    if handler.unary_stream:
        inner_writer = handler.unary_stream

        async def unary_stream_writer(request, context):
            try:
                return await inner_writer(request, context)
            except DomainError as error:
                await context.abort(error.status, bounded(error.message))

        return grpc.unary_stream_rpc_method_handler(unary_stream_writer, handler.request_deserializer,
                                                   handler.response_serializer)
    return handler


def run(service: str, build: Callable[[Settings], Awaitable[Registration]]) -> None:
    """A service process's main: serve until SIGINT / SIGTERM, then shut down gracefully."""
    settings = Settings.load(service)
    telemetry.setup_logging(service, settings.log_level)
    telemetry.setup(service, settings.otel_exporter)
    token = service_auth.resolve()
    service_auth.configure(token)  # this process's own calls to its peers carry it too

    async def main() -> None:
        registration = await build(settings)
        running = await start(registration, settings.listen_addr, service_token=token)
        log.info("%s service listening on %s", service, settings.listen_addr)
        # What startup made (modules, descriptors, the service) lives as long as the process: out of the
        # collector's way, its full passes stop walking it (they cost ~15 % of a bulk trigger's CPU).
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("%s service shutting down", service)
        await running.stop()

    eventloop.run(main())
