"""Real flows through the gateway and the services, on every surface; no secret they used may appear in a log
line (DEBUG), a span attribute, an error body or a list or get response."""

from __future__ import annotations

import base64
import logging

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.platform import free_port
from gateway.auth import FailureLimiter
from jobline.auth.v1 import auth_pb2
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from jobline.runs.v1 import agent_pb2, agent_pb2_grpc
from services.common import telemetry
from services.common.principal import to_metadata

from .conftest import BOOTSTRAP_KEY, Stack
from .surfaces import Drones, basic, eventually

WEBHOOK_SECRET = "whsec_do_not_leak_0123456789abcdef"


def _span_text(exporter: InMemorySpanExporter) -> str:
    parts = []
    for span in exporter.get_finished_spans():
        parts.append(span.name)
        parts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    return "\n".join(parts)


async def test_no_secret_in_logs_spans_errors_or_lists(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup("test", extra_processor=SimpleSpanProcessor(exporter))
    caplog.set_level(logging.DEBUG)
    admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    secrets: list[str] = [BOOTSTRAP_KEY, stack.token]
    bodies: list[str] = []
    tid = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal.tenant_id
    async with stack.client(cache_secs=5) as client:
        created = (await client.post("/v1/api-keys", headers=admin, json={"name": "ci"})).json()
        secrets.append(created["key"])
        rotated = (await client.post(f"/v1/api-keys/{created['id']}/rotate", headers=admin, json={})).json()
        secrets.append(rotated["key"])
        account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tid, name="sa", scopes=["READ"]))
        token = (await stack.auth.IssueToken(auth_pb2.IssueTokenRequest(
            client_id=account.client_id, client_secret=account.client_secret))).access_token
        secrets += [account.client_secret, token]
        await stack.admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tid, login="bob"))
        pat = (await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tid, user_login="bob", name="pat", kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))).key
        secrets.append(pat)
        device = (await client.post("/v1/devices", headers=admin, json={"id": "d1", "name": "D"})).json()
        secrets.append(device["credential"])
        job = await client.post("/v1/jobs", headers=admin, json={
            "project_id": "default", "name": "n", "slug": "s", "endpoint_url": "http://x.test/",
            "webhook_url": "http://x.test/wh", "webhook_secret": WEBHOOK_SECRET})
        assert job.status_code == 201

        basic = "Basic " + base64.b64encode(f"bob:{pat}".encode()).decode()
        for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": basic}, admin):
            for path in ("/v1/jobs", "/v1/devices", "/v1/runs", "/v1/api-keys", "/v1/devices/d1"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                bodies.append(response.text)
        # Refusals: a revoked key, a wrong one, a tampered JWT, a wrong PAT, a key over the length limit.
        for bad in (created["key"], created["key"] + "x", token[:-3] + "abc", "y" * 5000):
            bodies.append((await client.get("/v1/jobs", headers={"Authorization": f"Bearer {bad}"})).text)
        bodies.append((await client.get("/v1/jobs", headers={"Authorization": "Basic " + base64.b64encode(
            f"bob:{pat}x".encode()).decode()})).text)
        bodies.append((await client.delete(f"/v1/api-keys/{rotated['new_key_id']}", headers=admin)).text)
        bodies.append((await client.get("/v1/jobs", headers={"Authorization": f"Bearer {rotated['key']}"})).text)

    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    spans = _span_text(exporter)
    assert caplog.records and spans  # the flows were captured
    for secret in secrets:
        assert secret not in logs, "a secret in the logs"
        assert secret not in spans, "a secret in a span"
        for body in bodies:
            assert secret not in body, f"a secret in a response body: {body[:200]}"
    for secret in (WEBHOOK_SECRET,):
        assert secret not in logs and secret not in spans


async def test_the_webhook_secret_never_comes_back(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    async with stack.client() as client:
        job = await client.post("/v1/jobs", headers=admin, json={
            "project_id": "default", "name": "n", "slug": "s", "endpoint_url": "http://x.test/",
            "webhook_url": "http://x.test/wh", "webhook_secret": WEBHOOK_SECRET})
        job_id = job.json()["id"]
        updated = await client.patch(f"/v1/jobs/{job_id}", headers=admin, json={"description": "d"})
        texts = [job.text, updated.text, (await client.get(f"/v1/jobs/{job_id}", headers=admin)).text,
                 (await client.get("/v1/jobs", headers=admin)).text,
                 (await client.get(f"/v1/jobs/{job_id}/versions", headers=admin)).text,
                 (await client.post(f"/v1/jobs/{job_id}/clone", headers=admin, json={})).text]
    assert not any(WEBHOOK_SECRET in text for text in texts)


async def test_sending_back_the_masked_secret_keeps_the_real_one(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    async with stack.client() as client:
        job = (await client.post("/v1/jobs", headers=admin, json={
            "project_id": "default", "name": "m", "slug": "masked", "endpoint_url": "http://x.test/",
            "webhook_url": "http://x.test/wh", "webhook_secret": WEBHOOK_SECRET})).json()
        assert job["webhook_secret"] == "********"
        response = await client.patch(f"/v1/jobs/{job['id']}", headers=admin,
                                      json={"webhook_secret": job["webhook_secret"], "name": "m2"})
        assert response.status_code == 200, response.text
    principal = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal
    jobs = jobs_pb2_grpc.JobServiceStub(stack.channels.get(stack.peers["jobs"]))
    snapshot = await jobs.GetJobSnapshot(jobs_pb2.GetJobRequest(job_id=job["id"]), metadata=to_metadata(principal))
    assert snapshot.webhook_secret == WEBHOOK_SECRET and snapshot.name == "m2"


# -- every surface, every kind of secret -----------------------------------------------------------------------


async def _enrol(stack: Stack, device_id: str, token: str) -> str:
    """What `jobline agent --enroll-token` does first: a Hello with the token; answers the Welcome's credential
    (or the refusal's details)."""
    async with grpc.aio.insecure_channel(stack.peers["runs"]) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            device_id=device_id, enrollment_token=token, agent_version="test", capacity=1)))
        try:
            async for message in call:
                if message.WhichOneof("body") == "welcome":
                    return message.welcome.credential
        except grpc.aio.AioRpcError as error:
            return error.details() or ""
        finally:
            call.cancel()
    return ""


async def test_no_secret_of_any_surface_leaks_into_logs_spans_errors_or_reads(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Every kind of secret (API keys of both kinds, JWTs and client secrets, personal access tokens, webhook
    secrets, agent credentials, enrolment tokens, run tokens) used, misused and mistyped on every surface."""
    exporter = InMemorySpanExporter()
    telemetry.setup("test", extra_processor=SimpleSpanProcessor(exporter))
    caplog.set_level(logging.DEBUG)
    admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    tid = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal.tenant_id
    secrets: dict[str, str] = {"bootstrap key": BOOTSTRAP_KEY, "service token": stack.token,
                               "webhook secret": WEBHOOK_SECRET}
    checked: list[str] = []  # every answer that must not hold a secret (all but the one that hands it out)

    async def answer(response: httpx.Response, status: int | None = None) -> httpx.Response:
        assert status is None or response.status_code == status, (response.request.url, response.text)
        checked.append(f"{dict(response.headers)} {response.text}")
        return response

    async with stack.client(cache_secs=5) as client:
        client.app.state.authenticator.limiter = FailureLimiter(slow_after=10_000, refuse_after=10_000)
        native = await client.post("/v1/api-keys", headers=admin, json={"name": "ci"})
        secrets["api key"] = native.json()["key"]
        amk = await client.post("/v1/api-keys", headers=admin, json={"name": "phones", "kind": "device_jobs"})
        secrets["device jobs key"] = amk.json()["key"]
        rotated = await client.post(f"/v1/api-keys/{native.json()['id']}/rotate", headers=admin, json={})
        secrets["rotated api key"] = rotated.json()["key"]
        await stack.admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tid, login="bob"))
        secrets["personal access token"] = (await stack.admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tid, user_login="bob", name="pat", kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))).key
        account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tid, project_id="default", name="pilot", scopes=["READ", "TRIGGER", "WRITE"]))
        secrets["client secret"] = account.client_secret
        issued = await client.post("/v3/auth/token", json={
            "grant_type": "client_credentials", "client_id": account.client_id,
            "client_secret": account.client_secret})
        secrets["jwt"] = issued.json()["access_token"]
        by_basic = await client.post("/v3/auth/token", data={"grant_type": "client_credentials"}, headers={
            "Authorization": "Basic " + base64.b64encode(
                f"{account.client_id}:{account.client_secret}".encode()).decode()})
        secrets["jwt (form, Basic)"] = by_basic.json()["access_token"]
        assert (await client.post("/v1/device-groups", headers=admin, json={"id": "dock-1"})).status_code == 201
        created = await client.post("/v1/devices", headers=admin, json={"id": "drone-1", "groups": ["dock-1"]})
        secrets["agent credential (replaced)"] = created.json()["credential"]
        rotation = await client.post("/v1/devices/drone-1:rotateCredential", headers=admin, json={})
        assert rotation.status_code == 200, rotation.text
        secrets["agent credential"] = rotation.json()["credential"]
        enrolment = await client.post("/v1/enrollment-tokens", headers=admin,
                                      json={"description": "dock", "group": "dock-1", "max_uses": 1})
        secrets["enrolment token"] = enrolment.json()["token"]
        refused = await _enrol(stack, "drone-2", secrets["enrolment token"] + "x")
        assert refused and not refused.startswith("jld_"), refused
        secrets["enrolled agent credential"] = await _enrol(stack, "drone-2", secrets["enrolment token"])
        assert secrets["enrolled agent credential"], "the enrolment answered no credential"
        assert not (await _enrol(stack, "drone-3", secrets["enrolment token"])).startswith("jld_")  # used up
        job = await answer(await client.post("/v1/jobs", headers=admin, json={
            "project_id": "default", "name": "probe", "slug": "probe", "command": "echo hi",
            "targets": {"device_ids": ["drone-1"]}, "webhook_url": f"http://127.0.0.1:{free_port()}/hook",
            "webhook_secret": WEBHOOK_SECRET}), 201)
        job_id = job.json()["id"]
        bulk = await client.post(f"/v1/jobs/{job_id}/trigger/bulk", headers=admin, json={"items": [{}, {}]})
        assert bulk.status_code < 300, bulk.text
        for i, result in enumerate(bulk.json()["results"]):
            if result.get("run_token"):
                secrets[f"run token {i}"] = result["run_token"]
        assert any(name.startswith("run token") for name in secrets)

        drones = [("drone-1", secrets["agent credential"]), ("drone-2", secrets["enrolled agent credential"])]
        async with Drones(stack, drones):
            await eventually(lambda: _all_online(client, admin), "the drones")
            # Each surface, with its own kind of credential.
            a = {"X-API-Key": secrets["device jobs key"]}
            executed = await answer(await client.post("/job/api/jobs/execute", headers=a, json={
                "jobName": "probe", "deviceIds": ["drone-1"]}), 201)
            await answer(await client.get(f"/job/api/jobs/executions/{executed.json()[0]['jobExecutionId']}",
                                          headers=a), 200)
            b = {"Authorization": f"Bearer {secrets['jwt']}"}
            run = await answer(await client.post("/api/svc/v1/jobs/trigger", headers=b,
                                                 json={"applicationId": job_id}), 200)
            await answer(await client.get(f"/api/svc/v1/jobs/{job_id}/runs", headers=b), 200)
            await answer(await client.get(f"/api/svc/v1/jobs/{job_id}/runs/{run.json()['jobRunName']}",
                                          headers=b), 200)
            d = basic("bob", secrets["personal access token"])
            template = await answer(await client.post("/api/job_templates", headers=d, json={"job_template": {
                "name": "Run", "job_category": "Commands", "template": "echo hi"}}), 201)
            invocation = await answer(await client.post("/api/job_invocations", headers=d, json={"job_invocation": {
                "job_template_id": template.json()["id"], "targeting_type": "static_query",
                "search_query": "name = drone-1"}}), 201)
            e = {"Authorization": f"Bearer {secrets['jwt (form, Basic)']}"}
            mission = await answer(await client.post("/v3/jobs/create", headers=e, json={
                "name": "Survey", "deviceGroupId": "dock-1", "deviceId": "drone-2"}), 201)
            await stack.running["runs"].registration.handle.tick()
            reads = [(a, "/job/api/jobs/executions/" + str(executed.json()[0]["jobExecutionId"])),
                     (b, f"/api/svc/v1/jobs/{job_id}/runs"), (admin, "/v1/api-keys"), (admin, "/v1/devices"),
                     (admin, "/v1/devices/drone-1"), (admin, "/v1/devices/drone-2"), (admin, "/v1/enrollment-tokens"),
                     (admin, "/v1/jobs"), (admin, f"/v1/jobs/{job_id}"), (admin, f"/v1/jobs/{job_id}/versions"),
                     (admin, "/v1/runs"), (admin, "/v1/device-groups"),
                     (d, "/api/job_invocations"), (d, f"/api/job_invocations/{invocation.json()['id']}"),
                     (d, f"/api/job_invocations/{invocation.json()['id']}/outputs"), (d, "/api/job_templates"),
                     (d, f"/api/job_templates/{template.json()['id']}"), (d, "/api/hosts"),
                     (e, "/v3/jobs"), (e, f"/v3/jobs/{mission.json()['job']['jobId']}")]
            reads += [(admin, f"/v1/runs/{r['id']}") for r in bulk.json()["results"]]
            reads += [(admin, f"/v1/runs/{r['id']}/logs") for r in bulk.json()["results"]]
            for headers, path in reads:
                await answer(await client.get(path, headers=headers), 200)
            # The SSE stream's credential in the URL (as a browser's EventSource sends it), and one elsewhere.
            streamed = bulk.json()["results"][0]["id"]
            await eventually(lambda: _finished(client, admin, streamed), "a bulk run")
            stream = await client.get(f"/v1/runs/{streamed}/stream",
                                      params={"access_token": secrets["device jobs key"]})
            assert stream.status_code == 200 and "event: run" in stream.text, stream.text
            await answer(await client.get("/v1/jobs", params={"access_token": secrets["device jobs key"]}), 401)

        # Misused and mistyped: every secret (and it with a letter more) as every surface's credential.
        revoked = await client.delete(f"/v1/api-keys/{rotated.json()['new_key_id']}", headers=admin)
        assert revoked.status_code == 204
        for secret in list(secrets.values()):
            for bad in (secret, secret + "x"):
                for surface_headers, path, method in (
                        ({"X-API-Key": bad}, "/job/api/jobs/executions/1", "GET"),
                        ({"Authorization": f"Bearer {bad}"}, "/api/svc/v1/jobs/trigger", "POST"),
                        ({"Authorization": f"Bearer {bad}"}, "/v1/jobs", "GET"),
                        ({"X-API-Key": bad}, "/v1/runs", "GET"),
                        (basic("bob", bad), "/api/hosts", "GET"),
                        (basic(account.client_id, bad), "/api/job_templates", "GET"),
                        ({"Authorization": f"Bearer {bad}"}, "/v3/jobs", "GET")):
                    await answer(await client.request(method, path, headers=surface_headers, json={}))
                await answer(await client.post("/v3/auth/token", json={
                    "grant_type": "client_credentials", "client_id": account.client_id, "client_secret": bad}))
                await answer(await client.post("/v3/auth/token", json={
                    "grant_type": "client_credentials", "client_id": bad, "client_secret": bad}))

    logs = [(r.name, f"{r.getMessage()} {r.exc_text or ''} {r.args!r}") for r in caplog.records
            if not (r.name == "httpx" and "http://gateway/" in r.getMessage())]  # (this test's own client)
    spans = _span_text(exporter)
    assert logs and spans and len(checked) > 300  # the flows were captured
    leaks = [f"{name} in a log line of {logger}: {line[:300]}" for name, secret in secrets.items()
             for logger, line in logs if secret in line]
    leaks += [f"{name} in a span" for name, secret in secrets.items() if secret in spans]
    leaks += [f"{name} in an answer: {text[:300]}" for name, secret in secrets.items() for text in checked
              if secret in text]
    assert not leaks, "\n".join(leaks)


async def _finished(client: httpx.AsyncClient, admin: dict[str, str], run_id: str) -> bool:
    return (await client.get(f"/v1/runs/{run_id}", headers=admin)).json()["status"] == "completed"


async def _all_online(client: httpx.AsyncClient, admin: dict[str, str]) -> bool:
    listed = (await client.get("/v1/devices", headers=admin)).json()["devices"]
    return len(listed) == 2 and all(device["online"] for device in listed)
