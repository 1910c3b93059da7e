"""`GET /metrics`: Prometheus text exposition, no authentication, stats from RunService.GetStats
(the fake one here counts the triggers it received as queued runs) and the gateway's request counter."""

from __future__ import annotations

import re

import grpc
import httpx

from .conftest import Fakes

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples by (name, labels); every sample belongs to a family with a TYPE line."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            types[name] = kind
        elif line.startswith("#"):
            assert line.startswith("# HELP ")
        else:
            match = SAMPLE.match(line)
            assert match, line
            name = match["name"]
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, line
            labels = frozenset((m["key"], m["value"]) for m in LABEL.finditer(match["labels"] or ""))
            samples[(name, labels)] = float(match["value"])
    return samples


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics", headers={"Authorization": ""})  # no credentials needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def labels(**pairs: str) -> frozenset:
    return frozenset(pairs.items())


async def test_metrics_report_runs_streams_latency_and_requests(client: httpx.AsyncClient, fakes: Fakes) -> None:
    before = await scrape(client)
    assert before[("jobline_runs", labels(status="queued"))] == 0
    assert before[("jobline_runs", labels(status="executing"))] == 0  # every status, even without runs
    for _ in range(3):
        assert (await client.post("/v1/jobs/job-1/trigger", json={})).status_code == 202
    assert (await client.get("/v1/nope")).status_code == 404

    samples = await scrape(client)
    assert samples[("jobline_runs_service_up", labels())] == 1
    assert samples[("jobline_runs", labels(status="queued"))] == 3
    assert samples[("jobline_runs", labels(status="completed"))] == 4
    assert samples[("jobline_queue_depth", labels())] == 3
    assert samples[("jobline_agent_streams_connected", labels())] == 2
    assert samples[("jobline_dispatch_latency_seconds_bucket", labels(le="0.1"))] == 1
    assert samples[("jobline_dispatch_latency_seconds_bucket", labels(le="1"))] == 3
    assert samples[("jobline_dispatch_latency_seconds_bucket", labels(le="+Inf"))] == 4
    assert samples[("jobline_dispatch_latency_seconds_count", labels())] == 4
    assert samples[("jobline_dispatch_latency_seconds_sum", labels())] == 5.5
    assert samples[("jobline_http_requests_total", labels(surface="native", code="202"))] == 3
    assert samples[("jobline_http_requests_total", labels(surface="native", code="404"))] == 1
    assert samples[("jobline_http_requests_total", labels(surface="metrics", code="200"))] == 1
    stats_calls = [call for call in fakes.recorder.calls if call.method == "GetStats"]
    assert len(stats_calls) == 2


async def test_metrics_still_answer_when_the_runs_service_does_not(client: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.recorder.fail_with = grpc.StatusCode.UNAVAILABLE
    samples = await scrape(client)
    assert samples[("jobline_runs_service_up", labels())] == 0
    assert not any(name == "jobline_runs" for name, _ in samples)
