"""Real flows through the gateway and the services; no secret they used may appear in a log line (DEBUG),
a span attribute, an error body or a list response."""

from __future__ import annotations

import base64
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobline.auth.v1 import auth_pb2
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.common import telemetry
from services.common.principal import to_metadata

from .conftest import BOOTSTRAP_KEY, Stack

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
            for path in ("/v1/jobs", "/v1/devices", "/v1/runs", "/v1/api-keys", f"/v1/devices/d1"):
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
