"""Two tenants with the same job slugs and device ids: tenant 1's credential on tenant 2's objects is answered
exactly like a missing object on every native /v1 route (taken from the descriptors: new routes are covered)."""

from __future__ import annotations

import re
import warnings

import httpx

from gateway import native, transcoding

from .conftest import Stack, Tenant

MISSING = "00000000-0000-4000-8000-00000000dead"


async def seed(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """The same objects in each tenant; answers the path-variable values of this tenant's objects."""
    h = tenant.headers
    device = await client.post("/v1/devices", headers=h, json={"id": "phone-1", "name": "Phone"})
    assert device.status_code == 201, device.text
    job = await client.post("/v1/jobs", headers=h, json={
        "project_id": "default", "name": "Probe", "slug": "probe", "endpoint_url": "http://x.test/hook"})
    assert job.status_code == 201, job.text
    run = await client.post(f"/v1/jobs/{job.json()['id']}/trigger", headers=h, json={})
    assert run.status_code == 202, run.text
    versions = (await client.get(f"/v1/jobs/{job.json()['id']}/versions", headers=h)).json()
    key = await client.post("/v1/api-keys", headers=h, json={"name": "spare"})
    assert key.status_code == 201, key.text
    ids = {"job_id": job.json()["id"], "device_id": "phone-1", "run_id": run.json()["id"],
           "version_id": versions[0]["id"], "id": key.json()["id"]}
    upstream = await client.post("/v1/jobs", headers=h, json={
        "project_id": "default", "name": "Upstream", "slug": "upstream", "endpoint_url": "http://x.test/up"})
    dependency = await client.post(f"/v1/jobs/{ids['job_id']}/dependencies", headers=h,
                                   json={"depends_on_job_id": upstream.json()["id"]})
    if dependency.status_code < 300:  # (while the dependencies endpoints are being built)
        ids["dep_id"] = dependency.json()["id"]
    token = await client.post("/v1/enrollment-tokens", headers=h, json={"description": "probe", "max_uses": 2})
    assert token.status_code == 201, token.text
    ids["token_id"] = token.json()["id"]
    # Saved search ids are chosen by users: each tenant's own (the same id would be the prober's own too).
    search = await client.post("/v1/device-searches", headers=h, json={
        "id": f"phones-{tenant.id[:8]}", "name": "Phones", "query": "name ~ phone%"})
    assert search.status_code == 201, search.text
    ids["search_id"] = search.json()["id"]
    return ids


async def snapshot(client: httpx.AsyncClient, tenant: Tenant, ids: dict[str, str]) -> dict[str, object]:
    """Everything tenant 2 can read of its objects (volatile fields dropped)."""
    h = tenant.headers
    paths = [f"/v1/jobs/{ids['job_id']}", f"/v1/jobs/{ids['job_id']}/versions", f"/v1/devices/{ids['device_id']}",
             f"/v1/runs/{ids['run_id']}", "/v1/jobs", "/v1/devices", "/v1/runs", "/v1/api-keys",
             f"/v1/device-searches/{ids['search_id']}", "/v1/device-searches", "/v1/enrollment-tokens"]
    state = {}
    for path in paths:
        response = await client.get(path, headers=h)
        state[path] = (response.status_code, _stable(response.json()))
    return state


def _stable(data: object) -> object:
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in ("last_used_at", "last_seen_at", "online")}
    if isinstance(data, list):
        return [_stable(v) for v in data]
    return data


def routes() -> list[transcoding.Binding]:
    return [binding for service, _ in native.SERVICES for binding in transcoding.bindings(service)
            if binding.path_fields]


def _url(binding: transcoding.Binding, values: dict[str, str]) -> str:
    url = binding.path.route_path
    for name, fields in binding.path_fields.items():
        field = fields[-1].name
        assert field in values, f"add a tenant-2 object for path variable {field!r} ({binding.path.template})"
        url = re.sub(r"\{" + name + r"(:path)?\}", values[field], url)
    return url


async def seed_generically(client: httpx.AsyncClient, tenant: Tenant, values: dict[str, str]) -> None:
    """For a path variable no seed covers (a new resource), creates one in tenant 2 by POSTing
    `{"id", "name"}` to its collection (the template before `/{variable}`)."""
    for binding in routes():
        for name, fields in binding.path_fields.items():
            field = fields[-1].name
            if field in values:
                continue
            collection = binding.path.route_path.split("/{" + name)[0]
            try:
                url = _url(_Prefix(binding, collection), values)
            except AssertionError:
                continue
            created = await client.post(url, headers=tenant.headers, json={"id": f"two-{field}", "name": "probe"})
            if created.status_code < 300 and created.json().get("id"):
                values[field] = created.json()["id"]


class _Prefix:
    """A binding's path cut before one variable (for seed_generically)."""

    def __init__(self, binding: transcoding.Binding, route_path: str) -> None:
        self.path = type("P", (), {"route_path": route_path, "template": binding.path.template})()
        self.path_fields = {n: f for n, f in binding.path_fields.items() if "{" + n in route_path}


async def test_another_tenants_objects_are_answered_like_missing_ones_and_stay_unchanged(stack: Stack) -> None:
    async with stack.client() as client:
        one, two = await stack.tenant("one"), await stack.tenant("two")
        await seed(client, one)
        theirs = await seed(client, two)
        # The shared id "phone-1" is tenant 1's own too: probe with a device only tenant 2 has.
        only_two = await client.post("/v1/devices", headers=two.headers, json={"id": "phone-2", "name": "Two's"})
        assert only_two.status_code == 201
        theirs["device_id"] = "phone-2"
        await seed_generically(client, two, theirs)
        before = await snapshot(client, two, theirs)
        checked, uncovered = [], []
        for binding in routes():
            if any(fields[-1].name not in theirs for fields in binding.path_fields.values()):
                uncovered.append(f"{binding.http_method} {binding.path.template}")
                continue
            body = {} if binding.body else None
            missing = {name: MISSING for name in theirs}
            answers = []
            for values in (theirs, missing):
                response = await client.request(binding.http_method, _url(binding, values), headers=one.headers,
                                                json=body)
                text = response.text
                for value in values.values():
                    text = text.replace(value, "<id>")
                answers.append((response.status_code, text))
            assert answers[0] == answers[1], f"{binding.http_method} {binding.path.template}: {answers}"
            assert answers[0][0] >= 400, f"{binding.http_method} {binding.path.template}: {answers[0]}"
            checked.append(f"{binding.http_method} {binding.path.template}")
        assert await snapshot(client, two, theirs) == before
        # Listing never shows the other tenant's objects.
        for path in ("/v1/jobs", "/v1/devices", "/v1/runs", "/v1/api-keys", "/v1/device-searches",
                     "/v1/enrollment-tokens"):
            listed = (await client.get(path, headers=one.headers)).json()
            items = listed if isinstance(listed, list) else next(v for v in listed.values() if isinstance(v, list))
            assert not {item.get("id") for item in items} & set(theirs.values()), path
    assert "DELETE /v1/api-keys/{id}" in checked and "GET /v1/runs/{run_id}/logs" in checked
    assert "POST /v1/enrollment-tokens/{token_id}:revoke" in checked
    assert "PATCH /v1/device-searches/{search_id}" in checked
    if uncovered:  # routes of resources still being built, whose objects no seed could create yet
        warnings.warn(f"isolation not checked (seed a tenant-2 object for them): {uncovered}", stacklevel=1)
