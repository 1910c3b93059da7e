"""Surface C's job endpoints over REST on the real platform: batches, clone, filters,
validation, delete with active runs, versions and dependencies."""

from __future__ import annotations

import uuid

import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e


def unique(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def body(slug: str, **fields) -> dict:
    return {"project_id": "default", "name": slug, "slug": slug, "endpoint_url": "https://example.test/hook",
            **fields}


def create(client: Client, **fields) -> dict:
    reply = client.http.post("/v1/jobs", json=body(unique(), **fields))
    assert reply.status_code == 201, reply.text
    return reply.json()


def error_of(reply, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code, reply.text
    return reply.json()["error"]["message"]


def test_batch_create_answers_a_bare_array_and_is_all_or_nothing(client: Client) -> None:
    tag = unique("batch")
    reply = client.http.post("/v1/jobs/batch", json=[body(unique(), tags={"batch": tag}),
                                                     body(unique(), tags={"batch": tag}, max_attempts=5)])
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert isinstance(created, list) and [j["max_attempts"] for j in created] == [3, 5]
    assert all(j["id"] and j["version"] == 1 and j["enabled"] for j in created)

    other = unique("batch")
    bad = client.http.post("/v1/jobs/batch", json=[body(unique(), tags={"batch": other}),
                                                   body(unique(), tags={"batch": other}, cron="every minute")])
    assert "jobs[1]" in error_of(bad, 400, "validation_error")
    assert client.http.get("/v1/jobs", params={"project_id": "default", "tag_key": "batch",
                                               "tag_value": other}).json() == []
    listed = client.http.get("/v1/jobs", params={"project_id": "default", "tag_key": "batch", "tag_value": tag})
    assert sorted(j["id"] for j in listed.json()) == sorted(j["id"] for j in created)
    error_of(client.http.post("/v1/jobs/batch", json={"jobs": []}), 400, "validation_error")


def test_batch_disable_and_enable(client: Client) -> None:
    a, b = create(client), create(client)
    reply = client.http.post("/v1/jobs/batch-disable", json={"job_ids": [a["id"], b["id"]]})
    assert reply.status_code == 200 and reply.json()["updated"] == 2, reply.text
    got = client.http.get(f"/v1/jobs/{a['id']}").json()
    assert (got["enabled"], got["version"]) == (False, 2)
    error_of(client.http.post(f"/v1/jobs/{a['id']}/trigger", json={}), 400, "validation_error")
    error_of(client.http.post("/v1/jobs/batch-enable", json={"job_ids": [a["id"], "no-such-job"]}), 404, "not_found")
    assert client.http.get(f"/v1/jobs/{a['id']}").json()["enabled"] is False
    reply = client.http.post("/v1/jobs/batch-enable", json={"job_ids": [a["id"], b["id"]]})
    assert reply.status_code == 200 and sorted(reply.json()["job_ids"]) == sorted([a["id"], b["id"]])
    assert client.http.get(f"/v1/jobs/{b['id']}").json()["enabled"] is True


def test_clone_and_the_name_filter(client: Client) -> None:
    source = create(client, tags={"team": "qa"})
    reply = client.http.post(f"/v1/jobs/{source['id']}/clone", json={})
    assert reply.status_code == 201, reply.text
    copy = reply.json()
    assert (copy["slug"], copy["name"], copy["version"], copy["tags"]) == (
        source["slug"] + "-copy", source["name"] + " (copy)", 1, {"team": "qa"})
    name = unique("Named clone")
    named = client.http.post(f"/v1/jobs/{source['id']}/clone", json={"name": name, "slug": unique()}).json()
    assert named["name"] == name
    listed = client.http.get("/v1/jobs", params={"project_id": "default", "name": name}).json()
    assert [j["id"] for j in listed] == [named["id"]]
    error_of(client.http.post(f"/v1/jobs/{source['id']}/clone", json={"slug": source["slug"]}), 409, "conflict")
    error_of(client.http.post("/v1/jobs/no-such-job/clone", json={}), 404, "not_found")


@pytest.mark.parametrize("fields", [{"cron": "61 * * * *"}, {"execution_window_cron": "* * *"},
                                    {"timezone": "Mars/Olympus"}, {"version_policy": "newest"},
                                    {"tags": {"": "empty key"}}, {"slug": "Not A Slug"}])
def test_invalid_jobs_get_a_validation_error(client: Client, fields: dict) -> None:
    error_of(client.http.post("/v1/jobs", json={**body(unique()), **fields}), 400, "validation_error")


def test_a_duplicate_slug_conflicts(client: Client) -> None:
    job = create(client)
    error_of(client.http.post("/v1/jobs", json=body(job["slug"])), 409, "conflict")


def test_a_valid_cron_job_keeps_its_schedule_fields(client: Client) -> None:
    job = create(client, cron="0 9 * * mon-fri", timezone="Europe/Paris", version_policy="latest")
    assert (job["cron"], job["timezone"], job["version_policy"]) == ("0 9 * * mon-fri", "Europe/Paris", "latest")


def test_delete_conflicts_while_runs_are_active(client: Client) -> None:
    busy = create(client)
    run = client.http.post(f"/v1/jobs/{busy['id']}/trigger", json={"scheduled_at": "2099-01-01T00:00:00Z"})
    assert run.status_code == 202 and run.json()["status"] == "delayed", run.text
    error_of(client.http.delete(f"/v1/jobs/{busy['id']}"), 409, "conflict")
    assert client.http.get(f"/v1/jobs/{busy['id']}").status_code == 200
    idle = create(client)
    assert client.http.delete(f"/v1/jobs/{idle['id']}").status_code == 204
    error_of(client.http.get(f"/v1/jobs/{idle['id']}"), 404, "not_found")


def test_versions_list_and_get(client: Client) -> None:
    job = create(client)
    client.http.patch(f"/v1/jobs/{job['id']}", json={"description": "second"})
    versions = client.http.get(f"/v1/jobs/{job['id']}/versions").json()
    assert [(v["version"], v["description"]) for v in versions] == [(1, ""), (2, "second")]
    assert {"id", "job_id", "version", "name", "slug", "endpoint_url", "max_attempts", "created_at"} <= set(versions[0])
    one = client.http.get(f"/v1/jobs/{job['id']}/versions/{versions[0]['id']}").json()
    assert (one["version"], one["job_id"]) == (1, job["id"])


def test_dependencies(client: Client) -> None:
    a, b, c = create(client), create(client), create(client)
    reply = client.http.post(f"/v1/jobs/{a['id']}/dependencies", json={"depends_on_job_id": b["id"]})
    assert reply.status_code == 201, reply.text
    dep = reply.json()
    assert (dep["job_id"], dep["depends_on_job_id"], dep["condition"]) == (a["id"], b["id"], "on_success")
    client.http.post(f"/v1/jobs/{b['id']}/dependencies", json={"depends_on_job_id": c["id"],
                                                               "condition": "on_failure"})
    listed = client.http.get(f"/v1/jobs/{a['id']}/dependencies").json()
    assert [d["id"] for d in listed] == [dep["id"]]
    assert "cycle" in error_of(client.http.post(f"/v1/jobs/{c['id']}/dependencies",
                                                json={"depends_on_job_id": a["id"]}), 400, "validation_error")
    error_of(client.http.post(f"/v1/jobs/{a['id']}/dependencies", json={"depends_on_job_id": a["id"]}),
             400, "validation_error")
    error_of(client.http.post(f"/v1/jobs/{a['id']}/dependencies", json={"depends_on_job_id": c["id"],
                                                                       "condition": "sometimes"}),
             400, "validation_error")
    error_of(client.http.post(f"/v1/jobs/{a['id']}/dependencies", json={"depends_on_job_id": "no-such-job"}),
             404, "not_found")
    assert client.http.delete(f"/v1/jobs/{a['id']}/dependencies/{dep['id']}").status_code == 204
    assert client.http.get(f"/v1/jobs/{a['id']}/dependencies").json() == []
    error_of(client.http.delete(f"/v1/jobs/{a['id']}/dependencies/{dep['id']}"), 404, "not_found")
