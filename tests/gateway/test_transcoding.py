"""Transcoding rules on their own: templates, nested fields, enums, update masks."""

from __future__ import annotations

import pytest
from google.api import http_pb2

from gateway import protojson, transcoding
from gateway.transcoding import PathTemplate
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.errors import InvalidArgument

UPDATE_JOB = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name["UpdateJob"]


def binding(rule: http_pb2.HttpRule, method=UPDATE_JOB, status: int = 200) -> transcoding.Binding:
    return transcoding._binding(method, rule, status)


def test_path_templates() -> None:
    cancel = PathTemplate.parse("/v1/runs/{run_id}:cancel")
    assert (cancel.route_path, cancel.variables) == ("/v1/runs/{run_id}:cancel", (("run_id", "run_id"),))
    nested = PathTemplate.parse("/v1/jobs/{job.id}/x/{rest=**}")
    assert nested.route_path == "/v1/jobs/{job__id}/x/{rest:path}"
    assert nested.variables == (("job__id", "job.id"), ("rest", "rest"))
    ordered = sorted(["/v1/runs/{run_id}", "/v1/runs/dlq", "/v1/runs/{run_id}:cancel", "/v1/{path=**}"],
                     key=lambda t: PathTemplate.parse(t).sort_key)
    assert ordered == ["/v1/runs/{run_id}:cancel", "/v1/runs/dlq", "/v1/runs/{run_id}", "/v1/{path=**}"]
    for bad in ("v1/jobs", "/v1/{a=b/*}", "/v1/*/x"):
        with pytest.raises(ValueError):
            PathTemplate.parse(bad)


def test_bindings_are_checked_against_the_messages() -> None:
    with pytest.raises(ValueError):
        binding(http_pb2.HttpRule(get="/v1/jobs/{missing}"))
    with pytest.raises(ValueError):
        binding(http_pb2.HttpRule(get="/v1/jobs/{job}"))  # a message, not a value
    with pytest.raises(ValueError):
        binding(http_pb2.HttpRule(post="/v1/jobs", body="nope"))
    custom = binding(http_pb2.HttpRule(custom=http_pb2.CustomHttpPattern(kind="search", path="/v1/jobs")))
    assert custom.http_method == "SEARCH"


def test_nested_path_variables_and_query_parameters() -> None:
    rule = binding(http_pb2.HttpRule(get="/v1/things/{job.id}"))
    request = transcoding.build_request(rule, path_params={"job__id": "j1"}, query=[
        ("job_id", "j2"), ("job.name", "n"), ("job.enabled", "true"), ("job.retry_delays_secs", "1"),
        ("job.retryDelaysSecs", "2"), ("job.targets.group", "g"), ("update_mask", "name,enabled"),
        ("job.created_at", "2026-01-01T00:00:00Z"),
    ])
    assert request.job_id == "j2" and request.job.id == "j1" and request.job.name == "n" and request.job.enabled
    assert list(request.job.retry_delays_secs) == [1, 2] and request.job.targets.group == "g"
    assert list(request.update_mask.paths) == ["name", "enabled"]
    assert request.job.created_at.seconds > 0
    for bad in ("job", "job.tags", "job.rate_limit_keys.name", "job.id", "job.nope"):
        with pytest.raises(InvalidArgument):
            transcoding.build_request(rule, path_params={"job__id": "j1"}, query=[(bad, "x")])
    with pytest.raises(InvalidArgument):
        transcoding.build_request(rule, path_params={"job__id": "j1"}, query=[("job.enabled", "maybe")])


def test_a_body_field_with_a_nested_path_variable() -> None:
    rule = binding(http_pb2.HttpRule(patch="/v1/jobs/{job.id}", body="job"))
    request = transcoding.build_request(rule, path_params={"job__id": "j1"}, body=b'{"id": "j2", "cron": "* * * * *"}')
    assert request.job.id == "j1" and request.job.cron == "* * * * *"
    assert list(request.update_mask.paths) == ["id", "cron"]


def test_a_star_body_patch_masks_its_own_keys() -> None:
    rule = binding(http_pb2.HttpRule(patch="/v1/jobs/{job_id}", body="*"))
    request = transcoding.build_request(rule, path_params={"job_id": "j1"}, body=b'{"job": {"name": "x"}}')
    assert list(request.update_mask.paths) == ["job"]


def test_enums_both_ways() -> None:
    run = runs_pb2.Run(status=runs_pb2.RUN_STATUS_DEAD_LETTER)
    assert protojson.to_json(run)["status"] == "dead_letter"
    assert protojson.to_json(runs_pb2.Run())["status"] == "unspecified"
    chunk = protojson.to_json(runs_pb2.ListRunLogsResponse(chunks=[runs_pb2.LogChunk(stream=3)]))
    assert chunk["chunks"][0]["stream"] == "debug"
    for word in ("system_failed", "SYSTEM_FAILED", "RUN_STATUS_SYSTEM_FAILED", 10):
        assert protojson.from_json({"status": word}, runs_pb2.Run).status == runs_pb2.RUN_STATUS_SYSTEM_FAILED
    with pytest.raises(InvalidArgument):
        protojson.from_json({"status": "asleep"}, runs_pb2.Run)
    with pytest.raises(InvalidArgument):
        protojson.from_json({"chunks": [{"stream": "stdin"}]}, runs_pb2.ListRunLogsResponse)
    parsed = protojson.from_json({"chunks": [{"stream": "stderr"}]}, runs_pb2.ListRunLogsResponse)
    assert parsed.chunks[0].stream == runs_pb2.OUTPUT_STREAM_STDERR


def test_enum_prefixes() -> None:
    assert protojson.enum_prefix(runs_pb2.RunStatus.DESCRIPTOR) == "RUN_STATUS_"
    assert protojson.enum_prefix(runs_pb2.OutputStream.DESCRIPTOR) == "OUTPUT_STREAM_"


def test_response_body_and_status() -> None:
    list_runs = runs_pb2.DESCRIPTOR.services_by_name["RunService"].methods_by_name["ListRuns"]
    rule = binding(http_pb2.HttpRule(get="/v1/runs", response_body="runs"), method=list_runs, status=201)
    response = transcoding.render(rule, runs_pb2.ListRunsResponse(runs=[runs_pb2.Run(id="r")], next_cursor="c"))
    assert response.status_code == 201 and response.body.startswith(b'[{"id":"r"')
