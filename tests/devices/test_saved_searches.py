"""Saved searches through the gateway's native REST API on the real devices, jobs and runs services (SQLite
and PostgreSQL): CRUD under /v1/device-searches with the query checked when saved, device listing by a
saved search, and jobs targeting one, resolved when triggered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.app import create_app
from jobline.auth.v1 import auth_pb2_grpc
from services.common import server
from services.common.channels import Channels
from services.common.clock import FakeClock
from services.common.config import Settings
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs.app import build as build_runs

from ..gateway.conftest import ADMIN_KEY, FakeAuth


@dataclass
class Api:
    http: httpx.AsyncClient

    async def create(self, path: str, body: dict) -> dict:
        response = await self.http.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def device_ids(self, **params) -> list[str]:
        response = await self.http.get("/v1/devices", params={"page_size": 1000, **params})
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["devices"]]

    async def targeted(self, job_id: str) -> list[str]:
        """The devices one trigger of the job fans out to."""
        response = await self.http.post(f"/v1/jobs/{job_id}/trigger", json={})
        assert response.status_code == 202, response.text
        invocation = response.json()["invocation_id"]
        runs = (await self.http.get("/v1/runs", params={"project_id": "p1", "invocation_id": invocation,
                                                        "limit": 1000})).json()
        return sorted(run["device_id"] for run in runs)


@pytest.fixture
async def api(database_url: str, tmp_path) -> AsyncIterator[Api]:
    clock = FakeClock()
    running = []
    try:
        auth = await server.start(server.Registration(
            add_to_server=[lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(), s)],
            service_names=["jobline.auth.v1.AuthService"]), "127.0.0.1:0")
        running.append(auth)
        devices = await server.start(await build_devices(
            Settings(service="devices", listen_addr="", database_url=database_url), clock=clock), "127.0.0.1:0")
        running.append(devices)
        jobs = await server.start(await build_jobs(
            Settings(service="jobs", listen_addr="", database_url=f"sqlite:///{tmp_path}/jobs.db"), clock=clock,
            ticking=False), "127.0.0.1:0")
        running.append(jobs)
        peers = {"devices": f"127.0.0.1:{devices.port}", "jobs": f"127.0.0.1:{jobs.port}",
                 "auth": f"127.0.0.1:{auth.port}"}
        runs = await server.start(await build_runs(
            Settings(service="runs", listen_addr="", database_url=f"sqlite:///{tmp_path}/runs.db", peers=peers),
            clock=clock, ticking=False), "127.0.0.1:0")
        running.append(runs)
        peers["runs"] = f"127.0.0.1:{runs.port}"
        channels = Channels()
        app = create_app(Settings(service="gateway", listen_addr="", database_url="", peers=peers), channels)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            yield Api(http)
        await channels.close()
    finally:
        for item in reversed(running):
            await item.stop(0)


async def test_saved_searches_are_created_read_listed_changed_and_deleted(api: Api) -> None:
    created = await api.create("/v1/device-searches", {"id": "androids", "name": "Android phones",
                                                       "query": "label.os = android"})
    assert set(created) == {"id", "name", "description", "query", "created_at", "updated_at"}
    assert (created["id"], created["name"], created["query"]) == ("androids", "Android phones", "label.os = android")
    assert (await api.http.get("/v1/device-searches/androids")).json() == created

    again = await api.http.post("/v1/device-searches", json={"id": "androids", "query": "online = true"})
    assert again.status_code == 409
    for i in range(3):
        await api.create("/v1/device-searches", {"id": f"s{i}", "query": f"name = n{i}"})
    page = (await api.http.get("/v1/device-searches", params={"page_size": 2})).json()
    assert [s["id"] for s in page["searches"]] == ["androids", "s0"] and page["next_page_token"]
    rest = (await api.http.get("/v1/device-searches", params={"page_token": page["next_page_token"]})).json()
    assert [s["id"] for s in rest["searches"]] == ["s1", "s2"] and rest["next_page_token"] == ""
    assert (await api.http.get("/v1/device-searches/s0")).json()["name"] == "s0"  # the id, by default

    changed = await api.http.patch("/v1/device-searches/androids", json={"query": "label.os = android and online = true"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["query"] == "label.os = android and online = true"
    assert changed.json()["name"] == "Android phones"  # untouched: not in the body

    assert (await api.http.delete("/v1/device-searches/s2")).status_code == 204
    for method in ("GET", "DELETE"):
        gone = await api.http.request(method, "/v1/device-searches/s2")
        assert gone.status_code == 404 and "saved search s2 not found" in gone.text
    assert (await api.http.patch("/v1/device-searches/s2", json={"name": "x"})).status_code == 404


async def test_a_query_that_does_not_parse_is_refused_with_its_syntax_error(api: Api) -> None:
    for body, message in (
        ({"id": "bad", "query": "label.os = android and"}, "invalid query at position 23: expected a field"),
        ({"id": "bad", "query": "colour = red"}, "unknown field 'colour'"),
        ({"id": "bad", "query": "  "}, "query is required"),
        ({"id": "bad/slash", "query": "online = true"}, "the saved search id must be"),
        ({"id": "", "query": "online = true"}, "the saved search id must be"),
    ):
        response = await api.http.post("/v1/device-searches", json=body)
        assert response.status_code == 400 and message in response.json()["error"]["message"], response.text
    await api.create("/v1/device-searches", {"id": "ok", "query": "online = true"})
    refused = await api.http.patch("/v1/device-searches/ok", json={"query": "name ~"})
    assert refused.status_code == 400 and "invalid query at position 7" in refused.text, refused.text
    assert (await api.http.get("/v1/device-searches/ok")).json()["query"] == "online = true"  # unchanged
    unknown = await api.http.patch("/v1/device-searches/ok", json={"created_at": "2020-01-01T00:00:00Z"})
    assert unknown.status_code == 400 and "cannot be changed" in unknown.text
    assert (await api.http.get("/v1/device-searches")).json()["searches"] == [
        (await api.http.get("/v1/device-searches/ok")).json()]


async def test_devices_are_listed_by_a_saved_search(api: Api) -> None:
    for device_id, os in (("p1", "android"), ("p2", "ios"), ("p3", "android")):
        await api.create("/v1/devices", {"id": device_id, "labels": {"os": os}, "groups": ["lab"]})
    await api.create("/v1/device-searches", {"id": "androids", "query": "label.os = android"})
    assert await api.device_ids(search_id="androids") == ["p1", "p3"]
    assert await api.device_ids(search_id="androids", query="id != p1") == ["p3"]  # both must match
    missing = await api.http.get("/v1/devices", params={"search_id": "nope"})
    assert missing.status_code == 404 and "saved search nope not found" in missing.text


async def test_a_job_targeting_a_saved_search_runs_on_what_it_matches_when_triggered(api: Api) -> None:
    for device_id, os in (("a1", "android"), ("a2", "android"), ("i1", "ios"), ("x1", "other")):
        await api.create("/v1/devices", {"id": device_id, "labels": {"os": os}})
    await api.create("/v1/device-searches", {"id": "fleet", "query": "label.os = android"})
    job = await api.create("/v1/jobs", {"project_id": "p1", "name": "probe", "slug": "probe", "command": "echo hi",
                                        "targets": {"saved_search_id": "fleet"}})
    assert job["targets"]["saved_search_id"] == "fleet"
    assert await api.targeted(job["id"]) == ["a1", "a2"]

    # The search is read when the job is triggered: changing it changes where the next trigger goes.
    await api.http.patch("/v1/device-searches/fleet", json={"query": "label.os = ios"})
    assert await api.targeted(job["id"]) == ["i1"]

    # With ids and a query beside it: the union.
    both = await api.create("/v1/jobs", {"project_id": "p1", "name": "both", "slug": "both", "command": "true",
                                         "targets": {"saved_search_id": "fleet", "device_ids": ["x1"],
                                                     "query": "id = a1"}})
    assert await api.targeted(both["id"]) == ["a1", "i1", "x1"]

    await api.http.delete("/v1/device-searches/fleet")
    refused = await api.http.post(f"/v1/jobs/{job['id']}/trigger", json={})
    assert refused.status_code == 404 and "saved search fleet not found" in refused.text, refused.text
