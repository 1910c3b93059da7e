"""A credential bound to a project reaches only that project's jobs and runs; ADMIN credentials are tenant-wide.

Through REST on the real services: a key of project `default` on project `beta`'s jobs and runs is answered
exactly like a missing object on every native route that names a job or a run (taken from the descriptors),
lists show only its project, and creating in another project is refused. The same for a service account's JWT."""

from __future__ import annotations

import re

import httpx

from jobline.auth.v1 import auth_pb2

from .conftest import BOOTSTRAP_KEY, Stack
from .test_isolation import MISSING, _url, routes

ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
PROJECT_FIELDS = {"job_id", "run_id", "version_id", "dep_id"}


async def job(client: httpx.AsyncClient, project: str, slug: str) -> dict:
    response = await client.post("/v1/jobs", headers=ADMIN, json={
        "project_id": project, "name": slug, "slug": slug, "endpoint_url": f"http://x.test/{slug}"})
    assert response.status_code == 201, response.text
    return response.json()


async def key(client: httpx.AsyncClient, project: str, **fields) -> dict[str, str]:
    response = await client.post("/v1/api-keys", headers=ADMIN, json={"name": f"{project}-ci", "project_id": project,
                                                                      **fields})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def setup(stack: Stack, client: httpx.AsyncClient) -> tuple[str, dict[str, str], dict[str, str]]:
    principal = (await stack.auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal
    await stack.admin.CreateProject(auth_pb2.CreateProjectRequest(tenant=principal.tenant_id, id="beta",
                                                                  name="Beta"))
    beta_job, upstream = await job(client, "beta", "beta-job"), await job(client, "beta", "beta-upstream")
    run = await client.post(f"/v1/jobs/{beta_job['id']}/trigger", headers=ADMIN,
                            json={"scheduled_at": "2099-01-01T00:00:00Z"})
    assert run.status_code == 202, run.text
    dependency = await client.post(f"/v1/jobs/{beta_job['id']}/dependencies", headers=ADMIN,
                                   json={"depends_on_job_id": upstream["id"]})
    assert dependency.status_code == 201, dependency.text
    beta = {"job_id": beta_job["id"], "run_id": run.json()["id"], "version_id": beta_job["version_id"],
            "dep_id": dependency.json()["id"]}
    return principal.tenant_id, beta, await key(client, "default")


async def test_a_project_key_answers_another_projects_jobs_and_runs_like_missing_ones(stack: Stack) -> None:
    async with stack.client() as client:
        _, beta, alpha = await setup(stack, client)
        before = [(await client.get(path, headers=ADMIN)).text for path in (
            f"/v1/jobs/{beta['job_id']}", f"/v1/runs/{beta['run_id']}", f"/v1/jobs/{beta['job_id']}/dependencies")]
        checked = []
        for binding in routes():
            fields = {fields[-1].name for fields in binding.path_fields.values()}
            if not fields or not fields <= PROJECT_FIELDS:
                continue
            answers = []
            for values in (beta, {name: MISSING for name in beta}):
                response = await client.request(binding.http_method, _url(binding, values), headers=alpha,
                                                json={} if binding.body else None)
                body = response.text
                for value in values.values():
                    body = body.replace(value, "<id>")
                answers.append((response.status_code, body))
            assert answers[0] == answers[1], f"{binding.http_method} {binding.path.template}: {answers}"
            assert answers[0][0] >= 400, f"{binding.http_method} {binding.path.template}: {answers[0]}"
            checked.append(f"{binding.http_method} {binding.path.template}")
        assert {"GET /v1/jobs/{job_id}", "POST /v1/jobs/{job_id}/trigger", "DELETE /v1/jobs/{job_id}",
                "GET /v1/runs/{run_id}", "POST /v1/runs/{run_id}:cancel", "GET /v1/runs/{run_id}/logs",
                "DELETE /v1/jobs/{job_id}/dependencies/{dep_id}"} <= set(checked), checked
        after = [(await client.get(path, headers=ADMIN)).text for path in (
            f"/v1/jobs/{beta['job_id']}", f"/v1/runs/{beta['run_id']}", f"/v1/jobs/{beta['job_id']}/dependencies")]
        assert after == before  # nothing of project beta changed
        assert (await client.get(f"/v1/runs/{beta['run_id']}", headers=ADMIN)).json()["status"] == "delayed"


async def test_a_project_key_lists_and_changes_only_its_project(stack: Stack) -> None:
    async with stack.client() as client:
        _, beta, alpha = await setup(stack, client)
        mine = await job(client, "default", "alpha-job")
        run = await client.post(f"/v1/jobs/{mine['id']}/trigger", headers=alpha,
                                json={"scheduled_at": "2099-01-01T00:00:00Z"})
        assert run.status_code == 202, run.text

        assert [j["id"] for j in (await client.get("/v1/jobs", headers=alpha)).json()] == [mine["id"]]
        assert (await client.get("/v1/jobs", headers=alpha, params={"project_id": "beta"})).json() == []
        assert len((await client.get("/v1/jobs", headers=ADMIN, params={"project_id": "beta"})).json()) == 2
        runs = (await client.get("/v1/runs", headers=alpha, params={"project_id": "default"})).json()
        assert [r["id"] for r in runs] == [run.json()["id"]]
        assert (await client.get("/v1/runs", headers=alpha, params={"project_id": "beta"})).json() == []
        assert beta["run_id"] in {r["id"] for r in (await client.get(
            "/v1/runs", headers=ADMIN, params={"project_id": "beta"})).json()}

        refused = await client.post("/v1/jobs", headers=alpha, json={
            "project_id": "beta", "name": "sneak", "slug": "sneak", "endpoint_url": "http://x.test/"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == "this credential reaches only project 'default', not 'beta'"
        batch = await client.post("/v1/jobs/batch", headers=alpha, json=[
            {"project_id": "default", "name": "a", "slug": "a", "endpoint_url": "http://x.test/"},
            {"project_id": "beta", "name": "b", "slug": "b", "endpoint_url": "http://x.test/"}])
        assert batch.status_code == 403, batch.text
        assert [j["slug"] for j in (await client.get("/v1/jobs", headers=alpha)).json()] == ["alpha-job"]
        enabled = await client.post("/v1/jobs/batch-disable", headers=alpha,
                                    json={"job_ids": [mine["id"], beta["job_id"]]})
        assert enabled.status_code == 404 and beta["job_id"] in enabled.text  # all or nothing
        bulk = (await client.post("/v1/runs/bulk-cancel", headers=alpha,
                                  json={"run_ids": [run.json()["id"], beta["run_id"]]})).json()
        assert [(r["id"], r["status"]) for r in bulk["results"]] == [(run.json()["id"], "canceled"),
                                                                      (beta["run_id"], "not_found")]
        assert (await client.get(f"/v1/runs/{beta['run_id']}", headers=ADMIN)).json()["status"] == "delayed"


async def test_the_job_cache_of_the_runs_service_does_not_leak_across_projects(stack: Stack) -> None:
    async with stack.client() as client:
        _, beta, alpha = await setup(stack, client)
        # The admin's trigger leaves project beta's job in the runs service's job cache...
        warm = await client.post(f"/v1/jobs/{beta['job_id']}/trigger", headers=ADMIN,
                                 json={"scheduled_at": "2099-01-01T00:00:00Z"})
        assert warm.status_code == 202
        # ... which a key of project default must not reach through it.
        sneak = await client.post(f"/v1/jobs/{beta['job_id']}/trigger", headers=alpha, json={})
        assert sneak.status_code == 404 and "not found" in sneak.text
        health = await client.get(f"/v1/jobs/{beta['job_id']}/health", headers=alpha)
        assert health.status_code == 404


async def test_a_service_accounts_token_and_the_api_key_list_follow_the_same_rule(stack: Stack) -> None:
    async with stack.client() as client:
        tenant, beta, alpha = await setup(stack, client)
        mine = await job(client, "default", "alpha-job")
        account = await stack.admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(
            tenant=tenant, project_id="beta", name="beta-bot", scopes=["READ", "TRIGGER"]))
        token = (await stack.auth.IssueToken(auth_pb2.IssueTokenRequest(
            client_id=account.client_id, client_secret=account.client_secret))).access_token
        bot = {"Authorization": f"Bearer {token}"}
        assert (await client.get(f"/v1/jobs/{beta['job_id']}", headers=bot)).status_code == 200
        assert (await client.get(f"/v1/jobs/{mine['id']}", headers=bot)).status_code == 404
        assert {j["project_id"] for j in (await client.get("/v1/jobs", headers=bot)).json()} == {"beta"}

        beta_key = await key(client, "beta")
        listed = (await client.get("/v1/api-keys", headers=alpha)).json()
        keys = listed if isinstance(listed, list) else next(v for v in listed.values() if isinstance(v, list))
        assert {k["project_id"] for k in keys} == {"default"}
        assert (await client.get("/v1/jobs", headers=beta_key)).json()[0]["project_id"] == "beta"
        # An ADMIN key of a project is tenant-wide, like the bootstrap key.
        wide = await key(client, "beta", scopes=["ADMIN"])
        assert (await client.get(f"/v1/jobs/{mine['id']}", headers=wide)).status_code == 200
        assert re.fullmatch(r"[0-9a-f-]{36}", mine["id"])
