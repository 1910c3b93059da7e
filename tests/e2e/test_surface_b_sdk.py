"""Surface B driven by the vendor's own Python client (truefoundry-sdk), its `jobs` client pointed at the
gateway: trigger a job, read the run back, list runs, terminate and delete one, against real processes
and a real agent."""

from __future__ import annotations

import time
import uuid

import pytest
from truefoundry_sdk import (ConflictError, JobRunStatus, JobTriggerInput, Metadata, NotFoundError, TrueFoundry,
                             UnprocessableEntityError)
from truefoundry_sdk.core.api_error import ApiError

from .conftest import ADMIN_KEY, Client

pytestmark = pytest.mark.e2e

DEVICE = "tf-sdk-node"


@pytest.fixture(scope="module")
def device(client: Client):
    response = client.http.post("/v1/devices", json={"id": DEVICE, "name": "SDK node"})
    assert response.status_code == 201, response.text
    agent = client.start_agent(DEVICE, response.json()["credential"])
    deadline = time.monotonic() + 15
    while not client.http.get(f"/v1/devices/{DEVICE}").json()["online"]:
        assert time.monotonic() < deadline, "agent never came online"
        time.sleep(0.1)
    yield DEVICE
    agent.terminate()
    agent.wait(10)


@pytest.fixture(scope="module")
def tfy(platform) -> TrueFoundry:
    return TrueFoundry(base_url=platform.base_url, api_key=ADMIN_KEY, timeout=10)


def create_job(client: Client, command: str, **fields) -> dict:
    slug = f"sdk-{uuid.uuid4().hex[:6]}"
    body = {"project_id": "default", "name": slug, "slug": slug, "command": command,
            "targets": {"device_ids": [DEVICE]}, "max_attempts": 1, **fields}
    response = client.http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_status(tfy: TrueFoundry, job_id: str, name: str, statuses: set[JobRunStatus], timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        run = tfy.jobs.get_run(job_id, name).data
        if run.status in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


DONE = {JobRunStatus.FINISHED, JobRunStatus.FAILED, JobRunStatus.TERMINATED}


def test_the_sdk_triggers_a_job_and_reads_the_run_back(platform, client: Client, tfy: TrueFoundry,
                                                       device: str) -> None:
    job = create_job(client, "echo hello {{who}}", default_inputs={"who": "nobody"})
    alias = f"sdk-run-{uuid.uuid4().hex[:6]}"
    response = tfy.jobs.trigger(application_id=job["id"], input=JobTriggerInput(params={"who": "sdk"}),
                                metadata=Metadata(job_run_name_alias=alias))
    assert response.job_run_name == alias and response.data.name == alias and response.message
    assert response.data.application_name == job["name"] and response.data.deployment_version == "1"
    assert response.data.status in {JobRunStatus.CREATED, JobRunStatus.SCHEDULED, JobRunStatus.RUNNING}
    assert response.data.triggered_by == "admin" and response.data.triggered_by_subject.subject_type == "user"

    done = wait_status(tfy, job["id"], alias, DONE)
    assert done.status == JobRunStatus.FINISHED and done.exit_code == 0 and done.total_retries == 0
    assert done.command == "echo hello sdk" and done.end_time >= done.created_at and done.duration is not None
    assert (done.id, done.application_id, done.deployment_id) == (response.data.id, job["id"], job["version_id"])
    assert client.http.get(f"/v1/runs/{done.id}/logs").json()["text"] == "hello sdk\n"

    by_deployment = tfy.jobs.trigger(deployment_id=job["version_id"], input=JobTriggerInput(command="echo direct"))
    assert by_deployment.data.command == "echo direct"
    assert wait_status(tfy, job["id"], by_deployment.job_run_name, DONE).status == JobRunStatus.FINISHED

    with pytest.raises(UnprocessableEntityError) as error:  # run names are unique per application
        tfy.jobs.trigger(application_id=job["id"], metadata=Metadata(job_run_name_alias=alias))
    assert error.value.body.status_code == 422
    with pytest.raises(NotFoundError):
        tfy.jobs.get_run(job["id"], "no-such-run")
    with pytest.raises(NotFoundError):
        tfy.jobs.trigger(application_id="no-such-application")
    with pytest.raises(ApiError) as refused:
        TrueFoundry(base_url=platform.base_url, api_key="jl_wrong_key_000000000000000",
                    timeout=10).jobs.get_run(job["id"], alias)
    assert refused.value.status_code == 401


def test_the_sdk_lists_runs_page_by_page_with_filters(client: Client, tfy: TrueFoundry, device: str) -> None:
    job = create_job(client, "echo {{n}}", default_inputs={"n": "0"})
    names = [tfy.jobs.trigger(application_id=job["id"], input=JobTriggerInput(params={"n": str(n)}),
                              metadata=Metadata(job_run_name_alias=f"page-{n}")).job_run_name for n in range(5)]
    for name in names:
        assert wait_status(tfy, job["id"], name, DONE).status == JobRunStatus.FINISHED

    pager = tfy.jobs.list_runs(job["id"], limit=2)
    assert pager.response.pagination.total == 5 and pager.response.pagination.limit == 2
    assert [run.name for run in pager] == ["page-4", "page-3", "page-2", "page-1", "page-0"]  # every page
    assert len(list(pager.iter_pages())) == 3
    ascending = tfy.jobs.list_runs(job["id"], sort_by="startTime", order="asc", search_prefix="page-")
    assert [run.name for run in ascending] == names
    finished = tfy.jobs.list_runs(job["id"], status=[JobRunStatus.FINISHED, JobRunStatus.FAILED],
                                  version_numbers=[1], triggered_by=["admin"], offset=3)
    assert [run.name for run in finished] == ["page-1", "page-0"]
    assert finished.response.pagination.total == 5 and finished.response.pagination.offset == 3
    running = tfy.jobs.list_runs(job["id"], status=JobRunStatus.RUNNING)
    assert list(running) == [] and running.response.pagination.total == 0
    with pytest.raises(NotFoundError):
        list(tfy.jobs.list_runs("no-such-application"))


def test_the_sdk_terminates_a_run_and_deletes_it(client: Client, tfy: TrueFoundry, device: str) -> None:
    job = create_job(client, "echo started; sleep 30")
    name = tfy.jobs.trigger(application_id=job["id"]).job_run_name
    assert wait_status(tfy, job["id"], name, {JobRunStatus.RUNNING}).status == JobRunStatus.RUNNING
    with pytest.raises(ConflictError):  # a running run is terminated before it is deleted
        tfy.jobs.delete_run(job["id"], name)

    terminated = tfy.jobs.terminate(deployment_id=job["version_id"], job_run_name=name)
    assert terminated.job_run_status == JobRunStatus.TERMINATED and terminated.message
    run = tfy.jobs.get_run(job["id"], name).data
    assert run.status == JobRunStatus.TERMINATED and run.end_time is not None
    assert client.http.get(f"/v1/runs/{run.id}").json()["status"] == "canceled"
    with pytest.raises(UnprocessableEntityError):  # it has ended already
        tfy.jobs.terminate(deployment_id=job["version_id"], job_run_name=name)

    assert tfy.jobs.delete_run(job["id"], name).message
    with pytest.raises(NotFoundError):
        tfy.jobs.get_run(job["id"], name)
    with pytest.raises(NotFoundError):
        tfy.jobs.terminate(deployment_id=job["version_id"], job_run_name=name)
