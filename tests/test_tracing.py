"""One REST call is one trace: the gateway's span and the services' spans share a trace id."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from services.auth.app import build as build_auth
from services.common import server, telemetry
from services.common.config import Settings
from services.jobs.app import build as build_jobs

KEY = "jl_test_tracing_key_0123456789"


async def test_a_rest_call_is_one_trace_across_gateway_and_services(tmp_path) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup("test", extra_processor=SimpleSpanProcessor(exporter))
    auth = await server.start(await build_auth(Settings(
        service="auth", listen_addr="", database_url=f"sqlite:///{tmp_path}/auth.db", bootstrap_api_key=KEY)),
        "127.0.0.1:0")
    jobs = await server.start(await build_jobs(Settings(
        service="jobs", listen_addr="", database_url=f"sqlite:///{tmp_path}/jobs.db")), "127.0.0.1:0")
    peers = {"auth": f"127.0.0.1:{auth.port}", "jobs": f"127.0.0.1:{jobs.port}",
             "runs": "127.0.0.1:1", "devices": "127.0.0.1:1"}
    app = create_app(Settings(service="gateway", listen_addr="", database_url="", peers=peers))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            exporter.clear()
            response = await client.post("/v1/jobs", headers={"Authorization": f"Bearer {KEY}"}, json={
                "project_id": "default", "name": "Traced", "slug": "traced", "endpoint_url": "http://x.test/"})
        assert response.status_code == 201, response.text
    finally:
        await jobs.stop(0)
        await auth.stop(0)

    spans = exporter.get_finished_spans()
    gateway_spans = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST")]
    service_spans = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("/jobline.")]
    assert gateway_spans and {s.name for s in service_spans} >= {
        "/jobline.auth.v1.AuthService/Authenticate", "/jobline.jobs.v1.JobService/CreateJob"}
    trace_ids = {s.context.trace_id for s in [*gateway_spans, *service_spans]}
    assert len(trace_ids) == 1
    create = next(s for s in service_spans if s.name.endswith("CreateJob"))
    assert create.parent is not None  # joined the gateway's trace through gRPC metadata
