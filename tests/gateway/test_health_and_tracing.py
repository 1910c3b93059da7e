"""/health follows the services' gRPC health; one REST call is one trace."""

from __future__ import annotations

import re

import httpx
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.common import telemetry

from .conftest import Fakes


async def test_health_is_ok_while_every_service_serves(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await client.get("/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_health_is_503_when_a_service_is_down(client: httpx.AsyncClient, fakes: Fakes) -> None:
    await fakes.servers["devices"].health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["error"]["details"] == ["devices: not_serving"]

    await fakes.servers.pop("runs").stop(0)
    response = await client.get("/health")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable" and "runs: unavailable" in error["details"]


async def test_the_gateway_span_is_the_parent_of_the_grpc_spans(client: httpx.AsyncClient) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup("gateway-test", extra_processor=SimpleSpanProcessor(exporter))
    response = await client.get("/v1/jobs/job-1", headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    http = next(s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("GET"))
    grpc_client = next(s for s in spans if s.kind == SpanKind.CLIENT and s.name.endswith("JobService/GetJob"))
    grpc_server = next(s for s in spans if s.kind == SpanKind.SERVER and s.name.endswith("JobService/GetJob"))
    assert http.context.trace_id == int("ab" * 16, 16)  # continues the caller's trace
    assert grpc_client.parent.span_id == http.context.span_id
    assert grpc_server.parent.span_id == grpc_client.context.span_id


TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"


@pytest.fixture
def context_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No exporter, no span processor: the default of every process."""
    monkeypatch.setattr(telemetry, "_provider", None)


@pytest.mark.usefixtures("context_only")
async def test_without_an_exporter_the_callers_trace_context_reaches_the_services(
        client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.get("/v1/jobs/job-1", headers={"traceparent": TRACEPARENT, "tracestate": "v=1"})
    assert response.status_code == 200
    assert fakes.recorder.last.metadata["traceparent"] == TRACEPARENT
    assert fakes.recorder.last.metadata["tracestate"] == "v=1"


@pytest.mark.usefixtures("context_only")
async def test_without_an_exporter_each_request_without_a_trace_context_starts_its_own(
        client: httpx.AsyncClient, fakes: Fakes) -> None:
    seen = []
    for traceparent in (None, "00-not-a-trace-context-01", f"00-{'0' * 32}-{'cd' * 8}-01"):
        headers = {"traceparent": traceparent} if traceparent else {}
        assert (await client.get("/v1/jobs/job-1", headers=headers)).status_code == 200
        sent = fakes.recorder.last.metadata["traceparent"]
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", sent) and sent != traceparent
        seen.append(sent[3:35])
    assert len(set(seen)) == 3
