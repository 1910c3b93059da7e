"""Surface C's runs API through the real gateway and services: triggering, bulk, listing, cancel,
health and the SSE stream, as a REST user sees them."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e


def new_job(client: Client, **fields) -> dict:
    slug = f"api-{uuid.uuid4().hex[:8]}"
    body = {"project_id": "default", "name": slug, "slug": slug, "endpoint_url": "http://127.0.0.1:9/none", **fields}
    response = client.http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_trigger_idempotency_schema_and_cancel(client: Client) -> None:
    job = new_job(client, payload_schema={"type": "object", "required": ["n"]})
    later = "2999-01-01T00:00:00Z"
    first = client.http.post(f"/v1/jobs/{job['id']}/trigger", headers={"Idempotency-Key": "e2e-1"},
                             json={"payload": {"n": 1}, "scheduled_at": later})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "delayed" and first.json()["idempotency_hit"] is False
    again = client.http.post(f"/v1/jobs/{job['id']}/trigger", headers={"Idempotency-Key": "e2e-1"},
                             json={"payload": {"n": 1}})
    assert (again.json()["id"], again.json()["idempotency_hit"]) == (first.json()["id"], True)
    bad = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={"payload": {}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    run_id = first.json()["id"]
    deleted = client.http.delete(f"/v1/runs/{run_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.http.get(f"/v1/runs/{run_id}").json()["status"] == "canceled"
    events = client.http.get(f"/v1/runs/{run_id}/events").json()
    assert [e["type"] for e in events] == ["run.created", "run.canceled"]
    assert client.http.delete(f"/v1/runs/{run_id}").status_code == 409


def test_bulk_trigger_list_and_bulk_cancel(client: Client) -> None:
    job = new_job(client)
    items = [{"payload": {"i": i}, "scheduled_at": "2999-01-01T00:00:00Z"} for i in range(1000)]
    items[0]["idempotency_key"] = "bulk-0"
    response = client.http.post(f"/v1/jobs/{job['id']}/trigger/bulk", json={"items": items})
    assert response.status_code == 201, response.text
    reply = response.json()
    assert (reply["total"], reply["created"]) == (1000, 1000)
    assert reply["results"][0]["run_token"] and reply["results"][0]["idempotency_hit"] is False
    runs = client.http.get("/v1/runs", params={"project_id": "default", "batch_id": reply["batch_id"],
                                               "limit": 600}).json()
    assert isinstance(runs, list) and len(runs) == 600
    rest = client.http.get("/v1/runs", params={"project_id": "default", "batch_id": reply["batch_id"],
                                               "limit": 600, "cursor": runs[-1]["created_at"]}).json()
    assert len(rest) == 400 and not {r["id"] for r in runs} & {r["id"] for r in rest}
    found = client.http.get("/v1/runs", params={"project_id": "default", "payload_contains": '{"i": 7}',
                                                "batch_id": reply["batch_id"]}).json()
    assert [r["payload"] for r in found] == [{"i": 7}]
    canceled = client.http.post("/v1/runs/bulk-cancel-all", params={"project_id": "default"},
                                json={"batch_id": reply["batch_id"]}).json()
    assert canceled["canceled"] == 1000
    assert client.http.get("/v1/runs/dlq", params={"project_id": "default"}).json() == []


def test_health_and_the_sse_stream_of_a_finished_run(client: Client) -> None:
    job = new_job(client, endpoint_url="http://127.0.0.1:9/refused", max_attempts=1)
    assert client.http.get(f"/v1/jobs/{job['id']}/health").json()["health_score"] == -1
    run = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={}).json()
    done = client.wait_run(run["id"], {"failed", "completed"})
    assert done["status"] == "failed"
    health = client.http.get(f"/v1/jobs/{job['id']}/health", params={"window": "1h"}).json()
    assert (health["total_runs"], health["failed_runs"], health["success_rate"]) == (1, 1, 0)
    assert client.http.get(f"/v1/jobs/{job['id']}/health", params={"window": "5m"}).status_code == 400

    key = client.http.headers["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=client.platform.base_url, timeout=10) as browser:  # EventSource: no headers
        with browser.stream("GET", f"/v1/runs/{run['id']}/stream", params={"access_token": key}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join(response.iter_text())
        assert browser.get(f"/v1/runs/{run['id']}/stream").status_code == 401
        missing = browser.get("/v1/runs/nope/stream", params={"access_token": key})
        assert missing.status_code == 404
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[-1].startswith("event: run\ndata: ")
    assert json.loads(events[-1].split("data: ", 1)[1])["status"] == "failed"
