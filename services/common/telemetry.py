"""OpenTelemetry: one tracer provider per process, the trace context carried over HTTP headers and gRPC metadata.

Two modes, chosen per request by `recording()`:
- recording (an exporter is configured, JOBLINE_OTEL_EXPORTER=console|otlp, or a span processor was added):
  the OpenTelemetry instrumentation builds the full spans of every HTTP request and gRPC call, as ever;
- context-only (the default, no exporter: nothing would read a span): no span is built, sampled or processed.
  The W3C `traceparent` (and `tracestate`) a request arrives with is made current as it is — log lines carry
  its trace id — and sent on with every gRPC call the request makes; an HTTP request that arrives without one
  starts a new trace at the gateway (sampled, as the SDK's default sampler would), so one REST call is still
  one trace id across the processes, and a downstream process that does record joins it.

Hooks: `TraceContextMiddleware` (the gateway's ASGI app), `server_interceptors()` (every gRPC server),
`client_interceptors()` (every channel, services/common/channels.py).
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import sys
from collections.abc import Sequence
from typing import Any

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


class _ServerTracing(grpc.aio.ServerInterceptor):
    """Recording: OpenTelemetry's server span. Context-only: makes the caller's traceparent current for the call.

    grpc.aio serves each call in a task of its own, interceptors included, so what is set here is the call's
    alone (tests/common/test_telemetry.py holds that)."""

    def __init__(self) -> None:
        self.otel = aio_server_interceptor()

    async def intercept_service(self, continuation, handler_call_details):
        if recording():
            return await self.otel.intercept_service(continuation, handler_call_details)
        carried = _carried_in(handler_call_details.invocation_metadata)
        if carried is not None:
            _carried.set(carried)
        return await continuation(handler_call_details)


def _carried_in(metadata: Sequence[tuple[str, Any]] | None) -> Carried | None:
    traceparent = tracestate = None
    for key, value in metadata or ():
        if key == TRACEPARENT:
            traceparent = value
        elif key == TRACESTATE:
            tracestate = value
    return _carried_from(traceparent, tracestate) if isinstance(traceparent, str) else None


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [_ServerTracing()]


# -- gRPC clients ------------------------------------------------------------------------------------


def _with_trace_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """The call's details with the current trace context added to its metadata (unchanged when there is none)."""
    carried = _carried.get()
    if carried is None:
        return details
    traceparent, tracestate = carried
    kept = [(k, v) for k, v in (details.metadata or ()) if k not in (TRACEPARENT, TRACESTATE)]
    kept.append((TRACEPARENT, traceparent))
    if tracestate:
        kept.append((TRACESTATE, tracestate))
    return grpc.aio.ClientCallDetails(details.method, details.timeout, grpc.aio.Metadata(*kept),
                                      details.credentials, details.wait_for_ready)


class _ClientTracing:
    def __init__(self, otel: Any) -> None:
        self.otel = otel


# grpc.aio files each interceptor object under ONE call type (the first it matches): one class per type, each
# delegating to OpenTelemetry's interceptor of that type when recording.
class _UnaryUnary(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        if recording():
            return await self.otel.intercept_unary_unary(continuation, client_call_details, request)
        return await continuation(_with_trace_context(client_call_details), request)


class _UnaryStream(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        if recording():
            return await self.otel.intercept_unary_stream(continuation, client_call_details, request)
        return await continuation(_with_trace_context(client_call_details), request)


class _StreamUnary(_ClientTracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        if recording():
            return await self.otel.intercept_stream_unary(continuation, client_call_details, request_iterator)
        return await continuation(_with_trace_context(client_call_details), request_iterator)


class _StreamStream(_ClientTracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        if recording():
            return await self.otel.intercept_stream_stream(continuation, client_call_details, request_iterator)
        return await continuation(_with_trace_context(client_call_details), request_iterator)


_CALL_TYPES = ((_UnaryUnary, grpc.aio.UnaryUnaryClientInterceptor),
               (_UnaryStream, grpc.aio.UnaryStreamClientInterceptor),
               (_StreamUnary, grpc.aio.StreamUnaryClientInterceptor),
               (_StreamStream, grpc.aio.StreamStreamClientInterceptor))


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    otel = aio_client_interceptors()
    return [kind(next(one for one in otel if isinstance(one, call_type))) for kind, call_type in _CALL_TYPES]


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
