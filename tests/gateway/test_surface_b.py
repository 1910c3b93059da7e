"""Surface B's mapping in the gateway, against fake services on real gRPC: the status table, what a list
query becomes, and how a service's refusal or absence is answered."""

from __future__ import annotations

import grpc
import httpx

from gateway import surface_b
from jobline.runs.v1 import runs_pb2

from .conftest import Fakes

DOCUMENTED = {"CREATED", "SCHEDULED", "RUNNING", "FINISHED", "FAILED", "TERMINATION_REQUESTED", "TERMINATING",
              "TERMINATED", "UNKNOWN"}


def test_every_run_status_maps_to_a_documented_job_run_status() -> None:
    for value in runs_pb2.RunStatus.values():
        status = surface_b.job_run_status(value)
        assert status in DOCUMENTED
        assert (status == "UNKNOWN") == (value == runs_pb2.RUN_STATUS_UNSPECIFIED), runs_pb2.RunStatus.Name(value)
    assert surface_b.job_run_status(runs_pb2.RUN_STATUS_COMPLETED) == "FINISHED"
    assert surface_b.job_run_status(runs_pb2.RUN_STATUS_CANCELED) == "TERMINATED"
    assert surface_b.job_run_status(runs_pb2.RUN_STATUS_DEAD_LETTER) == "FAILED"


async def test_a_list_query_becomes_one_list_runs_request(fakes: Fakes, client: httpx.AsyncClient) -> None:
    response = await client.get("/api/svc/v1/jobs/job-7/runs", params=[
        ("limit", "5"), ("offset", "10"), ("searchPrefix", "nightly"), ("sortBy", "duration"), ("order", "asc"),
        ("status", "SCHEDULED"), ("status", "TERMINATED,TERMINATING"), ("triggeredBy", "alice"),
        ("versionNumbers", "2.0"), ("versionNumbers", "3")])
    assert response.status_code == 200, response.text
    assert response.json()["pagination"] == {"total": 0, "offset": 10, "limit": 5}
    assert [run["applicationName"] for run in response.json()["data"]] == ["Nightly", "Nightly"]
    request = next(call.request for call in fakes.recorder.calls if call.method == "ListRuns")
    assert request == runs_pb2.ListRunsRequest(
        job_id="job-7", limit=5, offset=10, name_prefix="nightly", order_by=runs_pb2.RUN_SORT_FIELD_DURATION,
        ascending=True, include_total_count=True, triggered_by_subject_names=["alice"], job_versions=[2, 3],
        statuses=sorted([runs_pb2.RUN_STATUS_DELAYED, runs_pb2.RUN_STATUS_DEQUEUED, runs_pb2.RUN_STATUS_CANCELED]))
    assert next(call for call in fakes.recorder.calls if call.method == "ListRuns").principal.subject_name == "alice"


async def test_refusals_and_outages_are_answered_in_the_surfaces_shape(fakes: Fakes,
                                                                       client: httpx.AsyncClient) -> None:
    fakes.recorder.fail_with = grpc.StatusCode.NOT_FOUND  # the first call, GetJob
    response = await client.delete("/api/svc/v1/jobs/job-7/runs/nightly-1")
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": "Application not found", "code": "NOT_FOUND"}
    await fakes.servers["runs"].stop(0)
    response = await client.post("/api/svc/v1/jobs/trigger", json={"applicationId": "job-7"})
    assert response.status_code == 503
    assert response.json() == {"statusCode": 503, "message": "Service unavailable", "code": "SERVICE_UNAVAILABLE"}
    response = await client.post("/api/svc/v1/jobs/trigger", json={"input": {}})
    assert response.status_code == 400
    assert response.json()["details"] == [{"field": "deploymentId",
                                           "message": "One of deploymentId or applicationId is required"}]
