"""Surface D's time-driven behaviour through the gateway: the real services in-process on real gRPC ports with
one FakeClock, real agent streams (the fleet simulator), ticks driven by the test.

Recurring invocations fire through the jobs service's scheduler (a schedule carrying its trigger request);
a dynamic_query re-resolves its hosts at each occurrence, a static_query keeps them; max_iteration and end_time
end the recurrence. start_at delays the runs; start_before and time_to_pickup cancel what was not picked up."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from agent.fleet import Fleet
from cli.platform import free_port
from gateway.app import create_app
from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.app import build as build_auth
from services.common import server, service_auth
from services.common.channels import Channels
from services.common.clock import FakeClock
from services.common.config import SERVICES, Settings
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs.app import build as build_runs

BOOTSTRAP_KEY = "jl_live_surface_d_timed_bootstrap_0123456789"
# The runs replica renews its presence lease on the event loop's real clock while the devices service judges it on
# the FakeClock: a tick of minutes would otherwise expire it and take the agents offline until the next renewal,
# and a dynamic query resolved in that gap would find no online host.
LEASE_OUTLIVING_TICKS = 86_400


@dataclass
class Platform:
    clock: FakeClock
    running: dict[str, server.RunningServer]
    http: httpx.AsyncClient  # surface D, as the bootstrap admin's personal access token
    native: httpx.AsyncClient  # the native API, as the bootstrap admin key
    fleet: Fleet | None = None

    async def tick(self, seconds: float = 0.0) -> None:
        """Moves the clock, fires due schedules and advances the runs' timers."""
        self.clock.advance(seconds)
        await self.running["jobs"].registration.handle.scheduler.tick()
        await self.running["runs"].registration.handle.tick()

    async def device(self, device_id: str, groups: list[str]) -> str:
        response = await self.native.post("/v1/devices", json={"id": device_id, "name": device_id, "groups": groups})
        assert response.status_code == 201, response.text
        return response.json()["credential"]

    async def template(self, name: str, template: str = "echo <%= input('message') %>") -> dict:
        response = await self.http.post("/api/job_templates", json={"job_template": {
            "name": name, "job_category": "Commands", "template": template,
            "template_inputs_attributes": [{"name": "message", "default": "hi"}]}})
        assert response.status_code == 201, response.text
        return response.json()

    async def invoke(self, **job_invocation) -> dict:
        response = await self.http.post("/api/job_invocations", json={"job_invocation": job_invocation})
        assert response.status_code == 201, response.text
        return response.json()

    async def show(self, invocation_id: int) -> dict:
        response = await self.http.get(f"/api/job_invocations/{invocation_id}", params={"host_status": "true"})
        assert response.status_code == 200, response.text
        return response.json()

    async def settle(self, invocation_id: int, timeout: float = 10.0) -> dict:
        """The invocation once nothing of it runs any more (the simulated agents answer at once)."""
        async with asyncio.timeout(timeout):
            while (shown := await self.show(invocation_id))["status_label"] in ("queued", "running"):
                await asyncio.sleep(0.05)
        return shown

    async def latest_ids(self) -> list[int]:
        listed = (await self.http.get("/api/job_invocations", params={"per_page": "all"})).json()
        return [i["id"] for i in listed["results"]]


@pytest.fixture
async def platform(tmp_path) -> AsyncIterator[Platform]:
    token = "svc-" + secrets.token_urlsafe(24)
    service_auth.configure(token)
    clock = FakeClock()
    peers = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    builders = {"auth": build_auth, "jobs": build_jobs, "devices": build_devices, "runs": build_runs}
    running: dict[str, server.RunningServer] = {}
    channels = Channels(service_token=token)
    try:
        for name in ("auth", "devices", "jobs", "runs"):
            settings = Settings(service=name, listen_addr=peers[name], database_url=f"sqlite:///{tmp_path}/{name}.db",
                                peers=peers, bootstrap_api_key=BOOTSTRAP_KEY if name == "auth" else None,
                                presence_lease_secs=LEASE_OUTLIVING_TICKS)
            extra = {"ticking": False} if name in ("jobs", "runs") else {}
            running[name] = await server.start(await builders[name](settings, clock=clock, **extra), peers[name],
                                               service_token=token)
        admin = auth_pb2_grpc.AuthAdminServiceStub(channels.get(peers["auth"]))
        tenant = (await admin.ListTenants(auth_pb2.ListTenantsRequest())).tenants[0]
        pat = await admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, user_login="admin", name="foreman", scopes=["READ", "TRIGGER", "WRITE"],
            kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))
        app = create_app(Settings(service="gateway", listen_addr="", database_url="", peers=peers,
                                  auth_cache_secs=0.0), Channels(service_token=token))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", auth=("admin", pat.key)) as http, \
                httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                  headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}) as native:
            yield Platform(clock, running, http, native)
    finally:
        await channels.close()
        for item in reversed(list(running.values())):
            await item.stop(0)
        service_auth.configure(None)


@pytest.fixture
async def agents(platform: Platform) -> AsyncIterator[Fleet]:
    """d1 (group g) and d2 (group other) connected through real agent streams; d3 (group g) never connects."""
    credentials = [("d1", await platform.device("d1", ["g"])), ("d2", await platform.device("d2", ["other"]))]
    await platform.device("d3", ["g"])
    fleet = Fleet(f"127.0.0.1:{platform.running['runs'].port}", credentials, capacity=4)
    task = asyncio.create_task(fleet.run())
    async with asyncio.timeout(10):  # connected, and online in the registry (presence is flushed in batches)
        while fleet.connected < 2 or len((await platform.native.get(
                "/v1/devices", params={"online": "true"})).json()["devices"]) < 2:
            await asyncio.sleep(0.02)
    platform.fleet = fleet
    yield fleet
    await fleet.stop()
    await task


async def hosts_of(platform: Platform, invocation_id: int) -> dict[str, str]:
    return {h["name"]: h["job_status"] for h in (await platform.show(invocation_id))["targeting"]["hosts"]}


async def test_a_recurring_dynamic_query_re_resolves_its_hosts_at_each_occurrence(platform: Platform,
                                                                                 agents: Fleet) -> None:
    template = await platform.template("Echo")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="dynamic_query",
                                    search_query="hostgroup = g and online = true",
                                    recurrence={"cron_line": "*/5 * * * *", "max_iteration": 3},
                                    inputs={"message": "tick"})
    assert created["mode"] == "recurring" and created["status_label"] == "queued"
    assert created["start_at"] == "2026-01-01 12:05:00 UTC" and created["total_hosts"] == "N/A"
    assert created["targeting"]["hosts"] == [] and created["recurrence"]["max_iteration"] == 3
    first = created["id"]

    await platform.tick(60)  # not due yet
    assert (await platform.show(first))["status_label"] == "queued"
    await platform.tick(240)  # 12:05: the first occurrence runs in the invocation made at creation
    done = await platform.settle(first)
    assert (done["status_label"], done["total_hosts"], done["succeeded"]) == ("succeeded", 1, 1), done
    assert await hosts_of(platform, first) == {"d1": "success"}
    assert done["recurrence"]["iteration"] == 2 and done["recurrence"]["last_occurence"] == "2026-01-01 12:05:00 UTC"
    second = max(await platform.latest_ids())
    waiting = await platform.show(second)
    assert second > first and waiting["status_label"] == "queued" and waiting["start_at"] == "2026-01-01 12:10:00 UTC"

    patched = await platform.native.patch("/v1/devices/d2", json={"groups": ["g"]})  # d2 joins the group
    assert patched.status_code == 200, patched.text
    await platform.tick(300)  # 12:10: the query is resolved again
    assert (await platform.settle(second))["total_hosts"] == 2
    assert await hosts_of(platform, second) == {"d1": "success", "d2": "success"}

    await platform.tick(300)  # 12:15: the third and last occurrence
    third = max(await platform.latest_ids())
    last = await platform.settle(third)
    assert last["total_hosts"] == 2 and last["recurrence"]["state"] == "finished" and \
        last["recurrence"]["iteration"] == 3 and last["recurrence"]["next_occurence"] is None
    await platform.tick(300)
    assert max(await platform.latest_ids()) == third  # no fourth occurrence


async def test_a_recurring_static_query_keeps_the_hosts_of_its_creation_until_end_time(platform: Platform,
                                                                                      agents: Fleet) -> None:
    template = await platform.template("Static")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="static_query",
                                    search_query="name = d1", recurrence={"cron_line": "0 * * * *",
                                                                          "end_time": "2026-01-01T14:30:00Z"})
    assert created["total_hosts"] == 1 and [h["name"] for h in created["targeting"]["hosts"]] == ["d1"]
    assert created["recurrence"]["end_time"] == "2026-01-01 14:30:00 UTC"
    await platform.native.patch("/v1/devices/d1", json={"name": "renamed"})  # the query would no longer match
    await platform.tick(3600)  # 13:00
    assert (await platform.settle(created["id"]))["succeeded"] == 1
    await platform.tick(3600)  # 14:00: the last tick before end_time
    latest = max(await platform.latest_ids())
    assert (await platform.settle(latest))["succeeded"] == 1
    assert (await platform.show(latest))["recurrence"]["state"] == "finished"
    await platform.tick(3600)
    assert max(await platform.latest_ids()) == latest


async def test_start_at_delays_the_runs_and_output_says_delayed(platform: Platform, agents: Fleet) -> None:
    template = await platform.template("Later")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="static_query",
                                    search_query="name = d1", scheduling={"start_at": "2026-01-01 12:30:00"})
    assert created["mode"] == "future" and created["status_label"] == "queued"
    output = (await platform.http.get(f"/api/job_invocations/{created['id']}/hosts/d1")).json()
    assert output == {"complete": False, "refresh": True, "output": [], "delayed": True,
                      "start_at": "2026-01-01T12:30:00.000+00:00"}
    await platform.tick(600)
    assert (await platform.show(created["id"]))["status_label"] == "queued"
    await platform.tick(1200)  # 12:30
    done = await platform.settle(created["id"])
    assert done["status_label"] == "succeeded", done
    output = (await platform.http.get(f"/api/job_invocations/{created['id']}/hosts/d1")).json()
    assert output["complete"] is True and output["output"][0]["output"] == "simulated: echo hi\n"


async def test_time_to_pickup_cancels_a_host_no_agent_picked_up(platform: Platform, agents: Fleet) -> None:
    template = await platform.template("Pickup")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="static_query",
                                    search_query="hostgroup = g", time_to_pickup=60)
    assert created["time_to_pickup"] == 60
    await asyncio.sleep(0.3)  # d1 runs at once; d3 is offline
    assert await hosts_of(platform, created["id"]) == {"d1": "success", "d3": "planned"}
    await platform.tick(30)
    assert (await platform.show(created["id"]))["status_label"] == "running"
    await platform.tick(31)
    done = await platform.settle(created["id"])
    assert (done["status"], done["succeeded"], done["cancelled"]) == (1, 1, 1), done
    assert await hosts_of(platform, created["id"]) == {"d1": "success", "d3": "cancelled"}


async def test_start_before_cancels_what_has_not_started_by_then(platform: Platform, agents: Fleet) -> None:
    template = await platform.template("Window")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="static_query",
                                    search_query="name = d3", scheduling={
                                        "start_at": "2026-01-01T12:10:00Z", "start_before": "2026-01-01T12:12:00Z"})
    await platform.tick(600)  # 12:10: due, but d3 is offline
    assert await hosts_of(platform, created["id"]) == {"d3": "planned"}
    await platform.tick(121)  # past start_before
    done = await platform.settle(created["id"])
    assert done["cancelled"] == 1 and await hosts_of(platform, created["id"]) == {"d3": "cancelled"}


async def test_cancelling_a_recurring_invocation_stops_its_recurrence(platform: Platform, agents: Fleet) -> None:
    template = await platform.template("Stop me")
    created = await platform.invoke(job_template_id=template["id"], targeting_type="static_query",
                                    search_query="name = d1", recurrence={"cron_line": "*/5 * * * *"})
    cancelled = await platform.http.post(f"/api/job_invocations/{created['id']}/cancel")
    assert cancelled.json() == {"cancelled": True, "id": created["id"]}
    shown = await platform.show(created["id"])
    assert (shown["status"], shown["status_label"], shown["recurrence"]["state"]) == (4, "cancelled", "cancelled")
    await platform.tick(600)
    assert await platform.latest_ids() == [created["id"]]
