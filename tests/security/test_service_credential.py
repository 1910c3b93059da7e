"""Internal gRPC calls carry the service credential; servers refuse calls without it."""

from __future__ import annotations

import os
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2, runs_pb2_grpc
from services.common import service_auth
from services.common.principal import to_metadata

from .conftest import BOOTSTRAP_KEY, Stack


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


@pytest.mark.parametrize("metadata", [(), ((service_auth.METADATA_KEY, "wrong-token-0123456789"),)])
async def test_calls_without_the_service_credential_are_refused(stack: Stack, metadata) -> None:
    for name, call in (
        ("auth", lambda ch: auth_pb2_grpc.AuthServiceStub(ch).Authenticate(
            auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY), metadata=metadata)),
        ("auth", lambda ch: auth_pb2_grpc.AuthAdminServiceStub(ch).CreateTenant(
            auth_pb2.CreateTenantRequest(name="evil"), metadata=metadata)),
        ("jobs", lambda ch: jobs_pb2_grpc.JobServiceStub(ch).GetJob(jobs_pb2.GetJobRequest(job_id="x"),
                                                                    metadata=metadata)),
    ):
        async with grpc.aio.insecure_channel(stack.peers[name]) as channel:
            error = await refused(call(channel))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stack.token not in (error.details() or "")
    tenants = await stack.admin.ListTenants(auth_pb2.ListTenantsRequest())
    assert [t.name for t in tenants.tenants] == ["default"]


async def test_health_reflection_and_the_agent_stream_need_no_service_credential(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.peers["runs"]) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stream = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await stream.write(agent_pb2.AgentMessage(hello=agent_pb2.Hello(device_id="nope", credential="bad")))
        error = await refused(stream.read())
        # Refused by the agent service itself (a bad device credential), not by the service credential.
        assert "service credential" not in (error.details() or "")


async def test_channels_attach_it_and_services_calling_peers_work(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"})
        assert response.status_code == 200, response.text
        job = await client.post("/v1/jobs", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}, json={
            "project_id": "default", "name": "n", "slug": "s", "endpoint_url": "http://x.test/"})
        assert job.status_code == 201
        # The gateway -> runs -> jobs chain: runs calls jobs with the credential of its own Channels.
        run = await client.post(f"/v1/jobs/{job.json()['id']}/trigger", json={},
                                headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"})
        assert run.status_code == 202, run.text
    # Server-streaming calls carry it too (grpc.aio files an interceptor under one call type only).
    principal = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal
    watch = runs_pb2_grpc.RunServiceStub(stack.channels.get(stack.peers["runs"])).WatchRun(
        runs_pb2.GetRunRequest(run_id=run.json()["id"]), metadata=to_metadata(principal))
    first = await watch.read()
    assert first is not grpc.aio.EOF and first.run.id == run.json()["id"]
    watch.cancel()


def test_the_token_comes_from_env_else_a_0600_file_in_the_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(service_auth.ENV_VAR, raising=False)
    monkeypatch.setenv("JOBLINE_DATA_DIR", str(tmp_path))
    assert service_auth.resolve(create=False) is None
    first = service_auth.resolve()
    path = tmp_path / service_auth.FILE_NAME
    assert path.read_text() == first and len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert service_auth.resolve() == first == service_auth.resolve(create=False)  # every process agrees
    monkeypatch.setenv(service_auth.ENV_VAR, "from-the-environment-0123")
    assert service_auth.resolve() == "from-the-environment-0123"
    service_auth.configure("configured-explicitly-0123")
    try:
        assert service_auth.resolve() == "configured-explicitly-0123"
    finally:
        service_auth.configure(None)
    with pytest.raises(ValueError):
        service_auth.Guard("short")
