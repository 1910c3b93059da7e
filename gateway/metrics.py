"""`GET /metrics`: Prometheus text exposition (version 0.0.4), no authentication (like /health).

Runs by status and queue depth come from RunService.GetStats (one GROUP BY, every tenant); agent
streams and the dispatch latency histogram are those of the runs replica that answered. The gateway
adds its own request counter, `jobline_http_requests_total{surface, code}`. If the runs service does
not answer, the gateway's own metrics are still served, with `jobline_runs_service_up 0`."""

from __future__ import annotations

from collections import Counter

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.channels import Channels
from services.common.config import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATS_TIMEOUT_SECS = 2.0
# Every status, so a dashboard sees 0 rather than no series.
STATUSES = [name.removeprefix("RUN_STATUS_").lower() for name in runs_pb2.RunStatus.keys()
            if name != "RUN_STATUS_UNSPECIFIED"]


def install(app: Starlette, settings: Settings, channels: Channels) -> None:
    """Mounts `/metrics` on the app and counts its HTTP requests."""
    requests: Counter[tuple[str, str]] = Counter()
    app.router.routes.insert(0, Route("/metrics", endpoint(settings, channels, requests), methods=["GET"]))
    app.add_middleware(RequestCounter, counts=requests)


def surface(path: str) -> str:
    if path == "/v1" or path.startswith("/v1/"):
        return "native"
    if path == "/health" or path.startswith("/health/"):
        return "health"
    if path == "/metrics":
        return "metrics"
    return "other"


class RequestCounter:
    """Counts answered HTTP requests by surface and status code."""

    def __init__(self, app: ASGIApp, counts: Counter[tuple[str, str]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            status = status or 500
            raise
        finally:
            if status:
                self.counts[(surface(scope.get("path", "")), str(status))] += 1


def endpoint(settings: Settings, channels: Channels, requests: Counter[tuple[str, str]]):
    async def metrics(request: Request) -> Response:
        stub = runs_pb2_grpc.RunServiceStub(channels.get(settings.peers["runs"]))
        try:
            stats = await stub.GetStats(runs_pb2.GetStatsRequest(), timeout=STATS_TIMEOUT_SECS)
        except grpc.aio.AioRpcError:
            stats = None
        return Response(render(stats, requests), media_type=CONTENT_TYPE)

    return metrics


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))


def render(stats: runs_pb2.GetStatsResponse | None, requests: Counter[tuple[str, str]]) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}"])

    family("jobline_runs_service_up", "gauge", "Whether the runs service answered GetStats.")
    lines.append(f"jobline_runs_service_up {0 if stats is None else 1}")
    if stats is not None:
        by_status = dict(stats.runs_by_status)
        family("jobline_runs", "gauge", "Runs by status, every tenant.")
        for status in [*STATUSES, *sorted(set(by_status) - set(STATUSES))]:
            lines.append(f'jobline_runs{{status="{_label(status)}"}} {by_status.get(status, 0)}')
        family("jobline_queue_depth", "gauge", "Queued runs waiting for dispatch.")
        lines.append(f"jobline_queue_depth {by_status.get('queued', 0)}")
        family("jobline_agent_streams_connected", "gauge", "Agent streams connected to the runs replica.")
        lines.append(f"jobline_agent_streams_connected {stats.agent_streams_connected}")
        family("jobline_dispatch_latency_seconds", "histogram",
               "Time from a run becoming dispatchable to its Assign being sent (runs replica).")
        for bound, count in zip(stats.dispatch_latency_bucket_bounds_secs, stats.dispatch_latency_bucket_counts,
                                strict=True):
            lines.append(f'jobline_dispatch_latency_seconds_bucket{{le="{_number(bound)}"}} {count}')
        lines.append(f'jobline_dispatch_latency_seconds_bucket{{le="+Inf"}} {stats.dispatch_latency_count}')
        lines.append(f"jobline_dispatch_latency_seconds_sum {_number(stats.dispatch_latency_sum_secs)}")
        lines.append(f"jobline_dispatch_latency_seconds_count {stats.dispatch_latency_count}")
    family("jobline_http_requests_total", "counter", "HTTP requests answered by this gateway.")
    for (surface_, code), count in sorted(requests.items()):
        lines.append(f'jobline_http_requests_total{{surface="{_label(surface_)}",code="{_label(code)}"}} {count}')
    return "\n".join(lines) + "\n"
