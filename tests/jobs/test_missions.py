"""Mission jobs (surface E) and handler jobs in the jobs service over real gRPC (SQLite and PostgreSQL):
what a mission derives, what is refused, and the missions-only listing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2

from .test_jobs_service import ALICE, BOB, jobs, new_job, runs  # noqa: F401 - fixtures


def mission_job(**spec) -> jobs_pb2.Job:
    metadata = spec.pop("metadata", None)
    mission = jobs_pb2.MissionSpec(**{"mission_id": "m-1", "device_group_id": "dock", **spec})
    if metadata is not None:
        mission.metadata.update(metadata)
    return jobs_pb2.Job(project_id="default", name="Survey", mission=mission)


async def create(jobs, job: jobs_pb2.Job, metadata=ALICE) -> jobs_pb2.Job:
    return await jobs.CreateJob(jobs_pb2.CreateJobRequest(job=job), metadata=metadata)


async def test_a_mission_derives_its_handler_targets_inputs_and_defaults(jobs) -> None:
    named = await create(jobs, mission_job(device_id="drone-1", metadata={"customer": "ACME", "passes": 2}))
    assert named.handler == "mission" and not named.command and not named.endpoint_url
    assert named.targets == devices_pb2.DeviceTargets(device_ids=["drone-1"], group="dock",
                                                     device_ids_within_group=True)
    assert dict(named.default_inputs) == {"missionId": "m-1", "metadata": '{"customer":"ACME","passes":2}'}
    assert named.mission.priority == 5 and named.slug.startswith("mission-")
    assert (named.max_attempts, named.timeout_secs) == (1, 3600)

    anyone = await create(jobs, mission_job(priority=9))
    assert anyone.targets == devices_pb2.DeviceTargets(group="dock", any_available=True)
    assert anyone.mission.priority == 9 and anyone.default_inputs["metadata"] == "{}"
    assert anyone.slug != named.slug


@pytest.mark.parametrize("job", [
    mission_job(device_group_id=""),
    mission_job(device_group_id="a/b"),
    mission_job(priority=0),
    mission_job(priority=11),
    mission_job(device_id="not a device id"),
    mission_job(mission_id="m" * 257),
    jobs_pb2.Job(project_id="default", name="", mission=jobs_pb2.MissionSpec(device_group_id="dock")),
    jobs_pb2.Job(project_id="default", name="x", command="echo", mission=jobs_pb2.MissionSpec(device_group_id="d")),
    jobs_pb2.Job(project_id="default", name="x", handler="survey", mission=jobs_pb2.MissionSpec(device_group_id="d")),
    new_job(endpoint_url="", handler="Bad Name"),
    new_job(handler="survey"),  # a handler and an endpoint
])
async def test_invalid_missions_and_handler_jobs_are_refused(jobs, job) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await create(jobs, job)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_handler_job_needs_no_command(jobs) -> None:
    job = await create(jobs, new_job(endpoint_url="", handler="inspect",
                                     targets=devices_pb2.DeviceTargets(device_ids=["d1"])))
    assert job.handler == "inspect" and not job.HasField("mission")


async def test_oversized_metadata_is_refused(jobs) -> None:
    big = struct_pb2.Struct()
    big.update({"blob": "x" * (64 * 1024)})
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await create(jobs, jobs_pb2.Job(project_id="default", name="x", mission=jobs_pb2.MissionSpec(
            device_group_id="dock", metadata=big)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_updating_a_mission_validates_its_priority_and_keeps_it_a_mission(jobs) -> None:
    job = await create(jobs, mission_job())
    changed = job.mission
    changed.priority = 8
    updated = await jobs.UpdateJob(jobs_pb2.UpdateJobRequest(
        job_id=job.id, job=jobs_pb2.Job(name="Renamed", mission=changed), update_mask={"paths": ["name", "mission"]}),
        metadata=ALICE)
    assert (updated.name, updated.mission.priority, updated.version, updated.handler) == ("Renamed", 8, 2, "mission")
    changed.priority = 11
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await jobs.UpdateJob(jobs_pb2.UpdateJobRequest(job_id=job.id, job=jobs_pb2.Job(mission=changed),
                                                       update_mask={"paths": ["mission"]}), metadata=ALICE)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=ALICE)).mission.priority == 8


async def test_missions_only_lists_the_tenants_missions_newest_first_in_pages(jobs) -> None:
    await create(jobs, new_job(slug="plain"))
    made = [await create(jobs, mission_job(mission_id=f"m-{i}")) for i in range(5)]
    await create(jobs, mission_job(), metadata=BOB)
    seen, token = [], ""
    while True:
        reply = await jobs.ListJobs(jobs_pb2.ListJobsRequest(missions_only=True, page_size=2, page_token=token),
                                    metadata=ALICE)
        seen.extend(job.id for job in reply.jobs)
        token = reply.next_page_token
        if not token:
            break
    assert seen == [job.id for job in reversed(made)]
    everything = await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=ALICE)
    assert len(everything.jobs) == 6
