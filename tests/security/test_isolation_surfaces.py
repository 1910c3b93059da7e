"""Every surface: two tenants with the same job names, slugs, device and group ids, template, mission and run
names. On every route of every surface (walked from the gateway app's own routes: a route added without a
probe fails this test; C's routes with path variables are test_isolation.py's matrix, the rest are here),
tenant 1's credential on tenant 2's objects — in the path, the query or the body — gets exactly the answer
of a missing object, listings never show tenant 2's objects, and nothing of tenant 2 changes."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from starlette.routing import Match

from . import test_isolation
from .conftest import Stack
from .surfaces import Caller, Drones, eventually, new_caller, served, surface_of

MISSING_UUID = "00000000-0000-4000-8000-00000000dead"
MISSING_NUMBER = 987654321
ANSWER_WITHIN = 10.0  # seconds
# What each kind of placeholder is when the object is missing.
NUMBERS = ("execution", "template", "invocation", "host", "host_only")
UUIDS = ("job", "job_only", "deployment", "mission", "run")


def missing(name: str) -> str:
    """A missing object of the placeholder's kind (distinct per placeholder: answers are normalised by value)."""
    if name in NUMBERS:
        return str(MISSING_NUMBER + NUMBERS.index(name))
    if name in UUIDS:
        return MISSING_UUID[:-2] + f"{UUIDS.index(name):02d}"
    return f"missing-{name.replace('_', '-')}"


@dataclass(frozen=True)
class Probe:
    """A request naming objects by placeholder: `{x}` is tenant 2's object x (or a missing one),
    `{own:x}` tenant 1's own. Both answers must be the same (`status`, and the body with the placeholders'
    values normalised); `creates` probes succeed both ways, compared without the new objects' ids."""

    method: str
    url: str
    status: int
    body: Any = None
    creates: bool = False
    credential: bool = True


@dataclass(frozen=True)
class Listing:
    """A listing: never shows any of tenant 2's objects (their ids and names, and the numbers at `numbers`:
    JSON key -> the kinds of number it holds)."""

    url: str
    numbers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    method: str = "GET"


NEXT_WEEK = "{own:next_week}"
HOSTS = ("host", "host_only")
INVOCATION = {"targeting_type": "static_query", "search_query": "name = phone-1"}

PROBES: list[Probe | Listing] = [
    # -- A (X-API-Key) ---------------------------------------------------------------------------------------
    Probe("POST", "/job/api/jobs/execute", 404, {"jobName": "{job_name_only}", "deviceIds": ["phone-1"]}),
    Probe("POST", "/job/api/jobs/execute", 404, {"jobName": "qos-test", "deviceIds": ["{device_only}"]}),
    Probe("POST", "/job/api/jobs/execute", 404, {"jobName": "qos-test", "deviceIds": ["phone-1", "{device_only}"]}),
    Probe("GET", "/job/api/jobs/executions/{execution}", 404),
    # -- B (Bearer API key) ----------------------------------------------------------------------------------
    Probe("POST", "/api/svc/v1/jobs/trigger", 404, {"applicationId": "{job}"}),
    Probe("POST", "/api/svc/v1/jobs/trigger", 404, {"deploymentId": "{deployment}"}),
    Probe("POST", "/api/svc/v1/jobs/trigger", 404, {"applicationId": "{own:job}", "deploymentId": "{deployment}"}),
    Probe("POST", "/api/svc/v1/jobs/terminate", 404, {"deploymentId": "{deployment}", "jobRunName": "{run_name}"}),
    Probe("POST", "/api/svc/v1/jobs/terminate", 404, {"deploymentId": "{own:deployment}",
                                                      "jobRunName": "{run_name}"}),
    Probe("POST", "/api/svc/v1/jobs/terminate?deploymentId={deployment}&jobRunName={run_name}", 404),
    Probe("GET", "/api/svc/v1/jobs/{job}/runs", 404),
    Probe("GET", "/api/svc/v1/jobs/{own:job}/runs?searchPrefix={run_name}", 200),
    Probe("GET", "/api/svc/v1/jobs/{job}/runs/{run_name}", 404),
    Probe("GET", "/api/svc/v1/jobs/{own:job}/runs/{run_name}", 404),
    Probe("DELETE", "/api/svc/v1/jobs/{job}/runs/{run_name}", 404),
    Probe("DELETE", "/api/svc/v1/jobs/{own:job}/runs/{run_name}", 404),
    Listing("/api/svc/v1/jobs/{own:job}/runs"),
    # -- D (HTTP Basic: login + personal access token) -------------------------------------------------------
    Probe("GET", "/api/job_invocations/{invocation}", 404),
    Probe("GET", "/api/job_invocations/{invocation}/hosts", 404),
    Probe("GET", "/api/job_invocations/{invocation}/hosts/{host}", 404),
    Probe("GET", "/api/job_invocations/{own:invocation}/hosts/{host_only}", 404),
    Probe("GET", "/api/job_invocations/{invocation}/hosts/{host}/raw", 404),
    Probe("GET", "/api/job_invocations/{own:invocation}/hosts/{host_only}/raw", 404),
    Probe("GET", "/api/job_invocations/{invocation}/outputs", 404),
    Probe("GET", "/api/job_invocations/{own:invocation}/outputs?search_query=name = {device_only}", 200),
    Probe("POST", "/api/job_invocations/{invocation}/cancel?force=true", 404),
    Probe("POST", "/api/job_invocations/{invocation}/rerun", 404, {}),
    Probe("GET", "/api/job_invocations?search=id = {invocation}", 200),
    Probe("GET", "/api/job_invocations/?search=id = {invocation}", 200),
    Probe("POST", "/api/job_invocations", 404, {"job_invocation": {"job_template_id": "{template}", **INVOCATION}}),
    Probe("POST", "/api/job_invocations/", 404, {"job_invocation": {"job_template_id": "{template}", **INVOCATION}}),
    Probe("POST", "/api/job_invocations", 404, {"job_invocation": {"feature": "{feature_only}", **INVOCATION}}),
    Probe("GET", "/api/job_templates/{template}", 404),
    Probe("PUT", "/api/job_templates/{template}", 404, {"job_template": {"name": "stolen"}}),
    Probe("PATCH", "/api/job_templates/{template}", 404, {"job_template": {"locked": True}}),
    Probe("DELETE", "/api/job_templates/{template}", 404),
    Probe("POST", "/api/job_templates/{template}/clone", 404, {"job_template": {"name": "copied"}}),
    Probe("GET", "/api/job_templates?search=name = \"{template_name_only}\"", 200),
    Probe("GET", "/api/job_templates/?search=name = \"{template_name_only}\"", 200),
    Probe("GET", "/api/hosts/{host}", 404),
    Probe("GET", "/api/hosts/{device_only}", 404),
    Probe("GET", "/api/hosts?search=name = {device_only}", 200),
    Probe("GET", "/api/hosts?search=hostgroup = {group_only}", 200),
    Probe("GET", "/api/hosts/?search=id = {host_only}", 200),
    Listing("/api/job_invocations?per_page=all", (("id", ("invocation",)), ("template_id", ("template",)))),
    Listing("/api/job_invocations/{own:invocation}/hosts", (("id", HOSTS),)),
    Listing("/api/job_templates?per_page=all", (("id", ("template",)),)),
    Listing("/api/hosts?per_page=all", (("id", HOSTS),)),
    Listing("/api/hosts/?search=hostgroup = lab", (("id", HOSTS),)),
    # -- E (JWT from /v3/auth/token) -------------------------------------------------------------------------
    Probe("GET", "/v3/jobs/{mission}", 404),
    Probe("PATCH", "/v3/jobs/{mission}", 404, {"name": "stolen", "priority": 1}),
    Probe("DELETE", "/v3/jobs/{mission}", 404),
    Probe("POST", "/v3/jobs/{mission}/cancel", 404),
    Probe("POST", "/v3/jobs/create", 404, {"name": "Survey", "deviceGroupId": "{group_only}"}),
    Probe("POST", "/v3/jobs/create", 404, {"name": "Survey", "deviceGroupId": "{group_only}",
                                           "deviceId": "{drone_only}"}),
    Probe("POST", "/v3/jobs/create", 404, {"name": "Survey", "deviceGroupId": "dock-1", "deviceId": "{drone_only}",
                                           "scheduledAt": NEXT_WEEK}),
    Probe("POST", "/v3/auth/token", 401, {"grant_type": "client_credentials", "client_id": "{client_id}",
                                          "client_secret": "jlcs_not_the_secret"}, credential=False),
    Listing("/v3/jobs?limit=1000"),
    Listing("/v3/jobs?status=PENDING"),
    # -- C (Bearer API key): the routes test_isolation.py's matrix leaves out (no path variable; streaming) ----
    Probe("GET", "/v1/runs/{run}/stream", 404),
    Probe("GET", "/v1/runs?job_id={job}", 200),
    Probe("GET", "/v1/devices?group={group_only}", 200),
    Probe("GET", "/v1/devices?query=name = {device_only}", 200),
    Probe("GET", "/v1/devices?search_id={search_only}", 404),
    Probe("POST", "/v1/jobs/batch-enable", 404, {"job_ids": ["{job_only}"]}),
    Probe("POST", "/v1/jobs/batch-disable", 404, {"job_ids": ["{job}", "{own:job}"]}),
    Probe("POST", "/v1/runs/bulk-cancel", 200, {"run_ids": ["{run}"]}),
    Probe("POST", "/v1/runs/bulk-cancel-all?project_id=default", 200, {"job_id": "{job}"}),
    Probe("POST", "/v1/runs/bulk-replay", 200, {"run_ids": ["{run}"]}),
    Probe("POST", "/v1/runs/bulk-dlq-replay", 409, {"run_ids": ["{run}"]}),
    # (and object references in the bodies of C's routes with path variables, which that matrix sends empty)
    Probe("POST", "/v1/jobs/{own:job}/dependencies", 404, {"depends_on_job_id": "{job}"}),
    Probe("POST", "/v1/jobs/{own:job}/trigger", 404, {"device_ids": ["{device_only}"]}),
    Probe("POST", "/v1/jobs/{own:job}/trigger", 404, {"parent_run_id": "{run}"}),
    Listing("/v1/jobs"),
    Listing("/v1/runs"),
    Listing("/v1/runs/dlq"),
    Listing("/v1/devices"),
    Listing("/v1/device-groups"),
    Listing("/v1/device-searches"),
    Listing("/v1/enrollment-tokens"),
    Listing("/v1/api-keys"),
    # -- creations last (each creates objects of tenant 1's, with names only tenant 2 used so far) ----------
    Probe("POST", "/v1/jobs", 201, {"project_id": "default", "name": "{job_name_only}", "slug": "{job_name_only}",
                                    "command": "true", "targets": {"device_ids": ["{device_only}"]}}, creates=True),
    Probe("POST", "/v1/devices", 201, {"id": "{device_only}", "name": "{device_only}"}, creates=True),
    Probe("POST", "/v1/device-groups", 201, {"id": "{group_only}"}, creates=True),
    Probe("POST", "/v1/device-searches", 201, {"id": "{search_only}", "name": "s", "query": "name ~ phone%"},
          creates=True),
    Probe("POST", "/v1/api-keys", 201, {"name": "{template_name_only}", "scopes": ["READ"]}, creates=True),
    # (a saved search and an enrolment token's group are names, resolved when used: theirs is no different)
    Probe("POST", "/v1/jobs", 201, {"project_id": "default", "name": "n", "slug": "{search_only}", "command": "true",
                                    "targets": {"saved_search_id": "{search_only}"}}, creates=True),
    Probe("POST", "/v1/jobs/batch", 201, [{"project_id": "default", "name": "n", "slug": "{group_only}",
                                           "command": "true", "targets": {"saved_search_id": "{search_only}"}}],
          creates=True),
    Probe("POST", "/v1/enrollment-tokens", 201, {"description": "d", "group": "{group_only}"}, creates=True),
    Probe("PATCH", "/v1/jobs/{own:job_only}", 200, {"targets": {"device_ids": ["{device_only}"]}}, creates=True),
    Probe("POST", "/api/job_invocations", 201, {"job_invocation": {
        "job_template_id": "{own:template}", "targeting_type": "static_query",
        "search_query": "name = {device_only} or id = {host_only}"}}, creates=True),
    Probe("POST", "/api/job_invocations/", 201, {"job_invocation": {
        "job_template_id": "{own:template}", "targeting_type": "dynamic_query", "search_query": "id ^ ({host_only})"}},
        creates=True),
    Probe("POST", "/api/job_templates", 201, {"job_template": {
        "name": "{template_name_only}", "job_category": "Commands", "template": "true"}}, creates=True),
    Probe("POST", "/api/job_templates/", 201, {"job_template": {
        "name": "{template_name_b_only}", "job_category": "Commands", "template": "true"}}, creates=True),
]

# Routes that address no object at all.
EXEMPT = {
    "/v1/openapi.json": "the static OpenAPI document: no credential, nothing of any tenant",
    "/apidoc/v2.json": "the static Apipie description: no credential, nothing of any tenant",
    "/v3/{path:path}": "unknown /v3 endpoints: 404 / 405 in E's shape, before any credential or lookup",
    "/v3": "the same, for /v3 itself",
}
# Keys whose values are the new objects' own, or their new version's (creates probes).
NEW_OBJECT_KEYS = {"id", "targeting_id", "created_at", "updated_at", "start_at", "started_at", "task", "key",
                   "key_prefix", "credential", "version_id", "version", "number", "token"}


async def seed(client: httpx.AsyncClient, caller: Caller, only: str) -> tuple[dict[str, str], list]:
    """The same objects in each tenant (same names, slugs, device and group ids), plus a few whose names only
    this tenant uses (suffix `only`). Answers the placeholders' values and the drones' credentials."""
    native = caller.headers("C")
    values = {"job_name_only": f"qos-{only}", "device_only": f"phone-{only}", "drone_only": f"drone-{only}",
              "group_only": f"dock-{only}", "template_name_only": f"Template {only}",
              "template_name_b_only": f"Template {only} b", "feature_only": f"feature-{only}",
              "client_id": caller.client_id}
    drones = []
    for group in ("dock-1", f"dock-{only}", "lab"):
        assert (await client.post("/v1/device-groups", headers=native, json={"id": group})).status_code == 201
    for device_id, group in (("phone-1", "lab"), (f"phone-{only}", "lab"), ("drone-1", "dock-1"),
                             (f"drone-{only}", f"dock-{only}")):
        created = await client.post("/v1/devices", headers=native,
                                    json={"id": device_id, "name": device_id, "groups": [group]})
        assert created.status_code == 201, created.text
        if device_id.startswith("drone"):
            drones.append((device_id, created.json()["credential"]))
    for name, key in (("qos-test", "job"), (f"qos-{only}", "job_only")):
        job = await client.post("/v1/jobs", headers=native, json={
            "project_id": "default", "name": name, "slug": name, "command": "echo hi",
            "targets": {"device_ids": ["phone-1"]}})
        assert job.status_code == 201, job.text
        values[key] = job.json()["id"]
    versions = (await client.get(f"/v1/jobs/{values['job']}/versions", headers=native)).json()
    values["deployment"] = versions[0]["id"]
    values["search_only"] = f"phones-{only}"
    search = await client.post("/v1/device-searches", headers=native, json={
        "id": values["search_only"], "name": "Phones", "query": "name ~ phone%"})
    assert search.status_code == 201, search.text
    token = await client.post("/v1/enrollment-tokens", headers=native, json={"description": "lab", "group": "lab"})
    assert token.status_code == 201, token.text
    return values, drones


async def seed_surfaces(client: httpx.AsyncClient, caller: Caller, values: dict[str, str]) -> None:
    """Each surface's objects of the tenant (its drones online): an execution, a job run, a template and an
    invocation, a mission."""
    executed = await client.post("/job/api/jobs/execute", headers=caller.headers("A"),
                                 json={"jobName": "qos-test", "deviceIds": ["phone-1"]})
    assert executed.status_code == 201, executed.text
    values["execution"] = str(executed.json()[0]["jobExecutionId"])
    triggered = await client.post("/api/svc/v1/jobs/trigger", headers=caller.headers("B"),
                                  json={"applicationId": values["job"]})
    assert triggered.status_code == 200, triggered.text
    values["run_name"], values["run"] = triggered.json()["jobRunName"], triggered.json()["data"]["id"]
    nightly = await client.post("/api/svc/v1/jobs/trigger", headers=caller.headers("B"), json={
        "applicationId": values["job"], "metadata": {"job_run_name_alias": "nightly"}})  # the same name in both
    assert nightly.status_code == 200 and nightly.json()["jobRunName"] == "nightly", nightly.text
    d = caller.headers("D")
    for name in ("Run Command", values["template_name_only"], values["template_name_b_only"]):
        template = await client.post("/api/job_templates", headers=d, json={"job_template": {
            "name": name, "job_category": "Commands", "template": "echo <%= input('message') %>",
            "template_inputs_attributes": [{"name": "message"}],
            "remote_execution_features": [values["feature_only"]] if name == "Run Command" else []}})
        assert template.status_code == 201, template.text
        values.setdefault("template", str(template.json()["id"]))
    invocation = await client.post("/api/job_invocations", headers=d, json={"job_invocation": {  # by its feature
        "feature": values["feature_only"], **INVOCATION, "inputs": {"message": "hi"}}})
    assert invocation.status_code == 201, invocation.text
    values["invocation"] = str(invocation.json()["id"])
    hosts = (await client.get("/api/hosts", headers=d, params={"per_page": "all"})).json()["results"]
    numbers = {host["name"]: str(host["id"]) for host in hosts}
    values["host"], values["host_only"] = numbers["phone-1"], numbers[values["device_only"]]

    async def drone_online() -> bool:
        device = (await client.get("/v1/devices/drone-1", headers=caller.headers("C"))).json()
        return device["online"]

    await eventually(drone_online, f"{caller.name}'s drone")
    mission = await client.post("/v3/jobs/create", headers=caller.headers("E"), json={
        "name": "Survey", "missionId": "m-1", "deviceGroupId": "dock-1", "scheduledAt": values["next_week"]})
    assert mission.status_code == 201, mission.text
    values["mission"] = mission.json()["job"]["jobId"]


PLACEHOLDER = re.compile(r"\{(own:)?([a-z_]+)\}")


def render(value: Any, theirs: dict[str, str], mine: dict[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: (mine if m[1] else theirs)[m[2]], value)
    if isinstance(value, dict):
        return {k: render(v, theirs, mine) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, theirs, mine) for v in value]
    return value


def names_in(probe: Probe | Listing) -> set[str]:
    text = probe.url + json.dumps(getattr(probe, "body", None))
    return {m[2] for m in PLACEHOLDER.finditer(text) if not m[1]}


def normalised(text: str, values: dict[str, str], names: set[str]) -> str:
    for name in sorted(names, key=lambda n: -len(values[n])):
        text = re.sub(r"(?<![\w-])" + re.escape(values[name]) + r"(?![\w-])", f"<{name}>", text)
    return text


def without_new_ids(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: "<new>" if k in NEW_OBJECT_KEYS else without_new_ids(v) for k, v in data.items()}
    if isinstance(data, list):
        return [without_new_ids(v) for v in data]
    return data


def route_of(app, method: str, url: str) -> str:
    """The path of the app's route that serves this request (as Starlette's router picks it)."""
    path = httpx.URL(url).path
    for route in app.routes:
        match, _ = route.matches({"type": "http", "path": path, "method": method})
        if match == Match.FULL:
            return route.path
    raise AssertionError(f"no route serves {method} {url}")


async def snapshot(client: httpx.AsyncClient, caller: Caller, values: dict[str, str]) -> dict[str, Any]:
    """Everything tenant 2 reads of its objects, on every surface (fields that change by themselves dropped)."""
    reads = [("C", f"/v1/jobs/{values['job']}"), ("C", "/v1/jobs"), ("C", "/v1/runs"), ("C", "/v1/devices"),
             ("C", "/v1/device-groups"), ("A", f"/job/api/jobs/executions/{values['execution']}"),
             ("B", f"/api/svc/v1/jobs/{values['job']}/runs"),
             ("D", "/api/job_invocations?per_page=all"), ("D", f"/api/job_invocations/{values['invocation']}"),
             ("D", "/api/job_templates?per_page=all"), ("D", f"/api/job_templates/{values['template']}"),
             ("D", "/api/hosts?per_page=all"), ("E", "/v3/jobs"), ("E", f"/v3/jobs/{values['mission']}"),
             ("C", f"/v1/runs/{values['run']}"), ("C", "/v1/device-searches"), ("C", "/v1/enrollment-tokens"),
             ("C", "/v1/api-keys")]
    state = {}
    for surface, url in reads:
        response = await client.get(url, headers=caller.headers(surface))
        assert response.status_code == 200, (url, response.text)
        state[url] = _stable(response.json())
    return state


def _stable(data: Any) -> Any:
    volatile = ("online", "last_seen_at", "last_report", "updated_at", "facts", "agent_version", "last_used_at")
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in volatile}
    if isinstance(data, list):
        return [_stable(v) for v in data]
    return data


def visible(listing: Listing, text: str, theirs: dict[str, str], mine: dict[str, str]) -> list[str]:
    """Tenant 2's objects named in an answer to tenant 1: their ids and names (those tenant 1 does not share),
    and their numbers where the listing shows numbers."""
    seen = []
    for name, value in theirs.items():
        if value == mine.get(name) or name in NUMBERS or name == "next_week":
            continue
        if re.search(r"(?<![\w-])" + re.escape(value) + r"(?![\w-])", text):
            seen.append(f"{name}={value}")
    for key, kinds in listing.numbers:
        numbers = {int(theirs[kind]) for kind in kinds}
        seen += [f"{key}={n}" for n in _values_at(json.loads(text), key) if n in numbers]
    return seen


def _values_at(data: Any, key: str) -> list[Any]:
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == key] + [x for v in data.values() for x in _values_at(v, key)]
    if isinstance(data, list):
        return [x for v in data for x in _values_at(v, key)]
    return []


async def check(client: httpx.AsyncClient, probe: Probe | Listing, one: Caller, theirs: dict[str, str],
                mine: dict[str, str]) -> str | None:
    """Tenant 1 (`one`) asks; answers what is wrong, if anything."""
    url = render(probe.url, theirs, mine)
    headers = one.headers(surface_of(route_of(client.app, probe.method, url)) or "")
    if isinstance(probe, Listing):
        response = await asyncio.wait_for(client.request(probe.method, url, headers=headers), ANSWER_WITHIN)
        shown = visible(probe, response.text, theirs, mine) if response.status_code == 200 else []
        return f"{probe}: {response.status_code} {shown}" if response.status_code != 200 or shown else None
    names = names_in(probe)
    absent = {**theirs, **{name: missing(name) for name in names}}
    answers = []
    for values in (theirs, absent):
        response = await asyncio.wait_for(client.request(  # (a stream that never ends would be a leak too)
            probe.method, render(probe.url, values, mine), headers=headers if probe.credential else {},
            json=render(probe.body, values, mine) if probe.body is not None else None), ANSWER_WITHIN)
        text = normalised(response.text, values, names)
        answers.append((response.status_code, without_new_ids(json.loads(text)) if probe.creates else text))
    if answers[0] != answers[1] or answers[0][0] != probe.status:
        return f"{probe}:\n  theirs  {answers[0]}\n  missing {answers[1]}"
    return None


async def test_every_route_of_every_surface_answers_another_tenants_objects_as_missing(stack: Stack) -> None:
    async with stack.client() as client:
        one = await new_caller(stack, client, "one")
        two = await new_caller(stack, client, "two")
        mine, my_drones = await seed(client, one, "one")
        theirs, their_drones = await seed(client, two, "two")
        mine["next_week"] = theirs["next_week"] = (stack.clock.now() + timedelta(days=7)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        async with Drones(stack, my_drones + their_drones):
            await seed_surfaces(client, one, mine)
            await seed_surfaces(client, two, theirs)
            before = await snapshot(client, two, theirs)
            failures = [failure for probe in PROBES if (failure := await check(client, probe, one, theirs, mine))]
            assert not failures, "\n".join(failures)
            assert await snapshot(client, two, theirs) == before, "tenant 2's objects changed"
    covered = {(probe.method, route_of(client.app, probe.method, render(probe.url, theirs, mine)))
               for probe in PROBES}
    native_matrix = {(b.http_method, b.path.route_path) for b in test_isolation.routes()}
    routes = {(method, route.path) for _, method, route in served(client.app)} - native_matrix
    uncovered = sorted(f"{m} {p}" for m, p in routes - covered if p not in EXEMPT)
    assert not uncovered, f"routes with no isolation probe (add one to PROBES): {uncovered}"
