"""The native /v1 API through the gateway, against fake services on real gRPC servers."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.api import annotations_pb2 as google_annotations
from starlette.routing import Route

from gateway import native
from gateway.app import create_app
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2

from .conftest import Fakes

EXPECTED_ROUTES = {
    ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}"), ("PATCH", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/versions"),
    ("GET", "/v1/jobs/{job_id}/versions/{version_id}"),
    ("POST", "/v1/jobs/{job_id}/trigger"), ("GET", "/v1/runs/{run_id}"), ("GET", "/v1/runs"),
    ("POST", "/v1/runs/{run_id}:cancel"), ("DELETE", "/v1/runs/{run_id}"), ("GET", "/v1/runs/{run_id}/logs"),
    ("POST", "/v1/devices"), ("GET", "/v1/devices/{device_id}"), ("GET", "/v1/devices"),
    ("PATCH", "/v1/devices/{device_id}"), ("DELETE", "/v1/devices/{device_id}"),
}


def test_every_annotated_method_has_its_routes(fakes: Fakes) -> None:
    app = create_app(fakes.settings)
    routes = {(method, route.path) for route in app.routes if isinstance(route, Route) and route.path.startswith("/v1")
              for method in route.methods if method != "HEAD"}
    assert EXPECTED_ROUTES <= routes  # a sample of templates; the count below covers every method
    annotated = sum(1 + len(method.GetOptions().Extensions[google_annotations.http].additional_bindings)
                    for service, _ in native.SERVICES for method in service.methods
                    if method.GetOptions().HasExtension(google_annotations.http))
    streams = {("GET", "/v1/runs/{run_id}/stream")}  # server streams: gateway/streaming.py, not transcoded
    assert streams <= routes
    assert len(routes - streams - {("GET", "/v1/openapi.json")}) == annotated  # nothing unannotated


async def test_path_variables_fill_the_request(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.get("/v1/jobs/job-7/versions/ver_abc")
    assert response.status_code == 200
    assert response.json()["id"] == "ver_abc"
    assert fakes.recorder.last.method == "GetJobVersion"
    assert fakes.recorder.last.request == jobs_pb2.GetJobVersionRequest(job_id="job-7", version_id="ver_abc")


async def test_a_body_field_binding_creates_with_201_in_snake_case(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.post("/v1/jobs", json={"project_id": "p1", "name": "Nightly", "slug": "nightly",
                                                   "endpoint_url": "https://x.test", "tags": {"env": "prod"},
                                                   "targets": {"device_ids": ["d1"]}, "timeoutSecs": 60})
    assert response.status_code == 201, response.text
    request = fakes.recorder.last.request
    assert request.job.slug == "nightly" and request.job.timeout_secs == 60
    assert dict(request.job.tags) == {"env": "prod"} and list(request.job.targets.device_ids) == ["d1"]
    job = response.json()
    assert job["endpoint_url"] == "https://x.test" and job["tags"] == {"env": "prod"}
    # Fields without presence are printed at their defaults; unset optional / message fields are not.
    assert job["max_concurrency"] == 0 and job["cron"] == "" and job["retry_delays_secs"] == []
    assert "enabled" not in job and "created_at" not in job


async def test_a_star_body_with_path_variables(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.post("/v1/jobs/job-1/trigger",
                                 json={"payload": {"n": 1, "tags": ["a"]}, "priority": 3, "job_id": "job-other",
                                       "metadata": {"k": "v"}, "scheduled_at": "2026-06-27T14:32:10Z"})
    assert response.status_code == 202, response.text
    request = fakes.recorder.last.request
    assert request.job_id == "job-1"  # the path wins over the body
    assert request.priority == 3 and request.payload["n"] == 1 and dict(request.metadata) == {"k": "v"}
    assert request.scheduled_at.ToJsonString() == "2026-06-27T14:32:10Z"
    assert response.json()["status"] == "queued"


async def test_an_empty_body_is_an_empty_message(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.post("/v1/jobs/job-1/trigger")
    assert response.status_code == 202
    assert fakes.recorder.last.request == runs_pb2.TriggerJobRequest(job_id="job-1")


async def test_query_parameters_fill_the_other_fields(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.get("/v1/runs", params={"project_id": "p1", "status": "timed_out", "limit": "5",
                                                    "jobId": "job-1"})
    assert response.status_code == 200, response.text
    assert fakes.recorder.last.request == runs_pb2.ListRunsRequest(
        project_id="p1", status=runs_pb2.RUN_STATUS_TIMED_OUT, limit=5, job_id="job-1")
    for spelled in ("TIMED_OUT", "RUN_STATUS_TIMED_OUT", "8"):
        assert (await client.get("/v1/runs", params={"status": spelled})).status_code == 200
        assert fakes.recorder.last.request.status == runs_pb2.RUN_STATUS_TIMED_OUT
    logs = await client.get("/v1/runs/run-1/logs", params={"after_sequence": "10"})
    assert logs.status_code == 200 and fakes.recorder.last.request.after_sequence == 10


@pytest.mark.parametrize("query", [{"nope": "1"}, {"limit": "many"}, {"status": "sleeping"}])
async def test_bad_query_parameters_are_refused(client: httpx.AsyncClient, query: dict) -> None:
    response = await client.get("/v1/runs", params=query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


async def test_query_parameters_cannot_override_the_path_or_body(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/runs/run-1", params={"run_id": "run-2"})).status_code == 400
    assert (await client.post("/v1/jobs/job-1/trigger", params={"priority": "1"}, json={})).status_code == 400
    assert (await client.patch("/v1/jobs/job-1", params={"job.name": "x"}, json={})).status_code == 400


async def test_response_body_renders_a_bare_array(client: httpx.AsyncClient) -> None:
    jobs = (await client.get("/v1/jobs", params={"project_id": "p1"})).json()
    assert [job["id"] for job in jobs] == ["job-1", "job-2"]
    runs = (await client.get("/v1/runs")).json()
    assert [run["status"] for run in runs] == ["timed_out", "timed_out"]
    versions = (await client.get("/v1/jobs/job-1/versions")).json()
    assert versions == [{"id": "v1", "job_id": "job-1", "version": 1, "name": "", "slug": "", "description": "",
                         "cron": "", "tags": {}, "endpoint_url": "", "fallback_endpoint_url": "", "max_attempts": 0,
                         "timeout_secs": 0, "webhook_url": "", "webhook_secret": "", "run_ttl_secs": 0,
                         "command": ""}]
    devices = (await client.get("/v1/devices")).json()  # no response_body: the whole message
    assert devices["next_page_token"] == "" and devices["devices"][0]["id"] == "d1"


async def test_enums_are_lower_case_words_without_their_prefix(client: httpx.AsyncClient) -> None:
    logs = (await client.get("/v1/runs/run-1/logs")).json()
    assert [chunk["stream"] for chunk in logs["chunks"]] == ["stdout", "stderr"]
    assert logs["chunks"][0]["sequence"] == "1"  # int64 as proto JSON has it
    assert (await client.get("/v1/runs/run-1")).json()["status"] == "timed_out"


async def test_delete_answers_204_without_a_body(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.delete("/v1/jobs/job-1")
    assert (response.status_code, response.content) == (204, b"")
    assert fakes.recorder.last.request == jobs_pb2.DeleteJobRequest(job_id="job-1")
    assert (await client.delete("/v1/devices/d1")).status_code == 204


async def test_custom_verbs_and_additional_bindings_route(client: httpx.AsyncClient, fakes: Fakes) -> None:
    canceled = await client.post("/v1/runs/run-9:cancel", json={})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert fakes.recorder.last.method == "CancelRun"
    assert fakes.recorder.last.request == runs_pb2.CancelRunRequest(run_id="run-9")
    deleted = await client.delete("/v1/runs/run-8")
    assert (deleted.status_code, deleted.content) == (204, b"") and fakes.recorder.last.method == "DeleteRun"
    assert fakes.recorder.last.request.run_id == "run-8"
    assert (await client.get("/v1/runs/run-7")).status_code == 200
    assert fakes.recorder.last.method == "GetRun" and fakes.recorder.last.request.run_id == "run-7"


async def test_patch_derives_the_update_mask_from_the_body(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.patch("/v1/jobs/job-1", json={"name": "v2", "enabled": False, "maxAttempts": 5,
                                                          "tags": {"a": "b"}})
    assert response.status_code == 200, response.text
    request = fakes.recorder.last.request
    assert list(request.update_mask.paths) == ["name", "enabled", "max_attempts", "tags"]
    assert request.job_id == "job-1" and request.job.name == "v2" and request.job.HasField("enabled")

    await client.patch("/v1/jobs/job-1", params={"update_mask": "name,cron"}, json={"name": "v3"})
    assert list(fakes.recorder.last.request.update_mask.paths) == ["name", "cron"]

    await client.patch("/v1/devices/d1", json={"name": "phone", "labels": {"os": "android"}})
    assert list(fakes.recorder.last.request.update_mask.paths) == ["name", "labels"]


async def test_the_idempotency_key_header_fills_the_field(client: httpx.AsyncClient, fakes: Fakes) -> None:
    response = await client.post("/v1/jobs/job-1/trigger", json={}, headers={"Idempotency-Key": "once"})
    assert fakes.recorder.last.request.idempotency_key == "once"
    assert response.json()["idempotency_key"] == "once"
    await client.post("/v1/jobs/job-1/trigger", json={"idempotency_key": "body"}, headers={"Idempotency-Key": "h"})
    assert fakes.recorder.last.request.idempotency_key == "body"
    await client.get("/v1/runs/run-1", headers={"Idempotency-Key": "ignored"})  # no such field: ignored
    assert fakes.recorder.last.request == runs_pb2.GetRunRequest(run_id="run-1")


@pytest.mark.parametrize(("code", "status", "name"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400, "validation_error"),
    (grpc.StatusCode.FAILED_PRECONDITION, 400, "validation_error"),
    (grpc.StatusCode.OUT_OF_RANGE, 400, "validation_error"),
    (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
    (grpc.StatusCode.ALREADY_EXISTS, 409, "conflict"),
    (grpc.StatusCode.ABORTED, 409, "conflict"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limited"),
    (grpc.StatusCode.UNAUTHENTICATED, 401, "unauthorized"),
    (grpc.StatusCode.PERMISSION_DENIED, 403, "forbidden"),
    (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
    (grpc.StatusCode.INTERNAL, 500, "internal_error"),
    (grpc.StatusCode.UNKNOWN, 500, "internal_error"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 500, "internal_error"),
    (grpc.StatusCode.UNIMPLEMENTED, 500, "internal_error"),
])
async def test_service_errors_map_to_http(client: httpx.AsyncClient, fakes: Fakes, code: grpc.StatusCode,
                                          status: int, name: str) -> None:
    fakes.recorder.fail_with = code
    response = await client.get("/v1/jobs/job-1")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == name and error["details"] == []
    if status < 500:
        assert error["message"] == f"refused with {code.name}"
    else:
        assert code.name not in error["message"]  # the peer's own words stay inside


async def test_unknown_routes_and_methods(client: httpx.AsyncClient, fakes: Fakes) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await client.put("/v1/jobs/job-1")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE"}
    # The verb route is POST only; a GET reads "run-1:cancel" as a run id (ids may hold ':').
    assert (await client.get("/v1/runs/run-1:cancel")).status_code == 200
    assert fakes.recorder.last.request == runs_pb2.GetRunRequest(run_id="run-1:cancel")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"payload": 3}', b'{"unknown_field": 1}',
                                  b'{"priority": "high"}', b"\xff\xfe", b"[" * 100_000, b'{"payload": NaN}'])
async def test_malformed_bodies_are_refused(client: httpx.AsyncClient, fakes: Fakes, body: bytes) -> None:
    response = await client.post("/v1/jobs/job-1/trigger", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert fakes.recorder.calls == []


async def test_bodies_over_one_mebibyte_are_refused(client: httpx.AsyncClient, fakes: Fakes) -> None:
    big = b'{"payload": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    response = await client.post("/v1/jobs/job-1/trigger", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"a" * 100_000

    streamed = await client.post("/v1/jobs/job-1/trigger", content=chunks())
    assert streamed.status_code == 413
    assert fakes.recorder.calls == []
