"""OpenTelemetry: one tracer provider per process, the trace context carried over HTTP headers and gRPC metadata.

Two modes, chosen per request by `recording()`:
- recording (an exporter is configured, JOBLINE_OTEL_EXPORTER=console|otlp, or a span processor was added):
  the OpenTelemetry instrumentation builds the full spans of every HTTP request and gRPC call, as ever;
- context-only (the default, no exporter: nothing would read a span): no span is built, sampled or processed.
  The W3C `traceparent` (and `tracestate`) a request arrives with is made current as it is — log lines carry
  its trace id — and sent on with every gRPC call the request makes; an HTTP request that arrives without one
  starts a new trace at the gateway (sampled, as the SDK's default sampler would), so one REST call is still
  one trace id across the processes, and a downstream process that does record joins it.

Hooks: `TraceContextMiddleware` (the gateway's ASGI app); `enter_call()` / `recording_handler()` (every gRPC
server, services/common/server.py); `outgoing_trace_context()` / `recording_client_interceptors()` (every
channel, services/common/channels.py). No grpc.aio interceptor runs in context-only mode.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from starlette.types import ASGIApp, Receive, Scope, Send

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_VALID_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_VALID_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")

# Context-only mode: the (traceparent, tracestate) of the request being served, sent on as they are.
Carried = tuple[str, str | None]
_carried: contextvars.ContextVar[Carried | None] = contextvars.ContextVar("jobline_trace_context", default=None)
_provider: TracerProvider | None = None


def setup(service_name: str, exporter: str = "none", extra_processor: SpanProcessor | None = None) -> None:
    """Installs the process's tracer provider when there is something to process spans: the exporter named by
    JOBLINE_OTEL_EXPORTER, or `extra_processor` (added to the provider, which is created once). Without either
    the process stays context-only."""
    global _provider
    processors = _exporter_processors(exporter) + ([extra_processor] if extra_processor is not None else [])
    if not processors:
        return
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": f"jobline-{service_name}"}))
        trace.set_tracer_provider(_provider)
    for processor in processors:
        _provider.add_span_processor(processor)


def _exporter_processors(exporter: str) -> list[SpanProcessor]:
    if exporter == "console":
        return [BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr))]
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return [BatchSpanProcessor(OTLPSpanExporter())]
    return []


def recording() -> bool:
    """Whether requests build full spans (a span processor is installed)."""
    return _provider is not None


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the request being served, in either mode."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    carried = _carried.get()
    return carried[0][3:35] if carried else None


def _carried_from(traceparent: str | None, tracestate: str | None) -> Carried | None:
    """A well-formed traceparent (and a printable tracestate) to send on; None for anything else."""
    if not traceparent or not _VALID_TRACEPARENT.fullmatch(traceparent):
        return None
    return traceparent, tracestate if tracestate and _VALID_TRACESTATE.fullmatch(tracestate) else None


def _new_trace() -> Carried:
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01", None


# -- HTTP (the gateway) ----------------------------------------------------------------------------


class TraceContextMiddleware:
    """The request's trace context: the full OpenTelemetry server span when recording, else context-only."""

    def __init__(self, app: ASGIApp, **otel_options: Any) -> None:
        self.app = app
        self.otel = OpenTelemetryMiddleware(app, **otel_options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or recording():
            await self.otel(scope, receive, send)
            return
        traceparent = tracestate = None
        for name, value in scope.get("headers", ()):
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        token = _carried.set(_carried_from(traceparent, tracestate) or _new_trace())
        try:
            await self.app(scope, receive, send)
        finally:
            _carried.reset(token)


# -- gRPC servers ------------------------------------------------------------------------------------
# services/common/server.py calls these for every call, from the generic handler that finds the call's method
# (no server interceptor): grpc.aio serves each call in a task of its own, that lookup included, so what is
# set here is the call's alone (tests/common/test_telemetry.py holds that).


def enter_call(metadata: Sequence[tuple[str, Any]] | None) -> None:
    """Context-only: makes the caller's trace context current for the call being served."""
    carried = _carried_in(metadata)
    if carried is not None:
        _carried.set(carried)


class _Details(NamedTuple):
    method: str
    invocation_metadata: Sequence[tuple[str, Any]]


_otel_server: Any = None


def recording_handler(details: Any, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Recording: `handler` inside OpenTelemetry's server span (what its server interceptor would serve).

    The interceptor's `intercept_service` is a coroutine that awaits only its continuation, which here answers
    at once: it completes on its first step, so it is run to completion in place."""
    global _otel_server
    if _otel_server is None:
        _otel_server = aio_server_interceptor()

    async def continuation(_details: Any) -> grpc.RpcMethodHandler:
        return handler

    step = _otel_server.intercept_service(continuation, _Details(details.method, details.invocation_metadata))
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise RuntimeError("OpenTelemetry's server interceptor suspended while finding a handler")


def _carried_in(metadata: Sequence[tuple[str, Any]] | None) -> Carried | None:
    traceparent = tracestate = None
    for key, value in metadata or ():
        if key == TRACEPARENT:
            traceparent = value
        elif key == TRACESTATE:
            tracestate = value
    return _carried_from(traceparent, tracestate) if isinstance(traceparent, str) else None


# -- gRPC clients ------------------------------------------------------------------------------------
# services/common/channels.py adds the trace context to each call's metadata itself (no client interceptor).

TRACE_KEYS = (TRACEPARENT, TRACESTATE)


def outgoing_trace_context() -> tuple[tuple[str, str], ...]:
    """Context-only: the metadata that carries the current trace context on (none when there is none); it
    replaces any trace context the caller's own metadata holds."""
    carried = _carried.get()
    if carried is None:
        return ()
    traceparent, tracestate = carried
    return ((TRACEPARENT, traceparent), (TRACESTATE, tracestate)) if tracestate else ((TRACEPARENT, traceparent),)


def recording_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Recording: OpenTelemetry's client interceptors (client spans, the context injected into the metadata)."""
    return list(aio_client_interceptors())


# -- logs ----------------------------------------------------------------------------------------------


class _TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = current_trace_id() or "-"
        return True


def setup_logging(service_name: str, level: str = "INFO") -> None:
    """Structured-enough logs: one line each, with the service and the trace id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceIdFilter())
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {service_name} %(levelname)s trace=%(trace_id)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
