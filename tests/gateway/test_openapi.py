"""`GET /v1/openapi.json`: generated from the route table and descriptors the gateway serves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
from google.api import annotations_pb2 as google_annotations
from starlette.routing import Route

from gateway import native, openapi
from gateway.app import create_app
from gateway.transcoding import PathTemplate
from jobline.api.v1 import annotations_pb2 as jobline_annotations

from .conftest import Fakes

OPERATIONS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
async def doc(fakes: Fakes) -> dict[str, Any]:
    app = create_app(fakes.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as anonymous:
        response = await anonymous.get("/v1/openapi.json")  # no Authorization header
    assert response.status_code == 200, response.text
    return response.json()


def _served(app) -> set[tuple[str, str]]:
    return {(method, openapi.openapi_path(route.path)) for route in app.routes
            if isinstance(route, Route) and route.path.startswith("/v1/") for method in route.methods
            if method != "HEAD"}


def _documented(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert method in OPERATIONS, (path, method)
            yield method.upper(), path, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validates `instance` against a schema of the document (its $refs resolved in the document)."""
    jsonschema.Draft4Validator({"components": doc["components"], **schema}).validate(instance)


def _success(operation: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    (status,) = [code for code in operation["responses"] if code[0] == "2"]
    return int(status), operation["responses"][status]


def test_the_document_is_structurally_valid(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.0.") and doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                              "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    operation_ids = []
    for method, path, operation in _documented(doc):
        assert path.startswith("/v1/"), path
        operation_ids.append(operation["operationId"])
        params = operation.get("parameters", [])
        assert len({(p["name"], p["in"]) for p in params}) == len(params), (method, path)
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
        assert all(p["required"] for p in params if p["in"] == "path")
        if method in ("GET", "DELETE"):
            assert "requestBody" not in operation, (method, path)
        assert {"4XX", "5XX"} <= set(operation["responses"]) or path == openapi.PATH
        status, success = _success(operation)
        assert 200 <= status < 300 and success["description"]
        assert ("content" in success) == (status != 204), (method, path)
    assert len(operation_ids) == len(set(operation_ids)), "operationIds are unique"
    refs = set(_refs(doc))
    for ref in refs:
        _resolve(doc, ref)
    # Every component is reached and is a well-formed schema.
    reached = {ref.rsplit("/", 1)[1] for ref in refs if ref.startswith("#/components/schemas/")}
    assert reached == set(doc["components"]["schemas"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft4Validator.check_schema(schema)


def test_every_served_route_is_documented_and_nothing_else(doc: dict[str, Any], fakes: Fakes) -> None:
    served = _served(create_app(fakes.settings))
    documented = {(method, path) for method, path, _ in _documented(doc)}
    assert served == documented
    assert ("GET", "/v1/openapi.json") in served and ("GET", "/v1/runs/{run_id}/stream") in served


def test_operations_match_the_annotations(doc: dict[str, Any]) -> None:
    """Read the annotations independently: each binding is documented with its RPC, method and status."""
    expected = {}
    for service, _ in native.SERVICES:
        for method in service.methods:
            options = method.GetOptions()
            if method.server_streaming or not options.HasExtension(google_annotations.http):
                continue
            rule = options.Extensions[google_annotations.http]
            status = options.Extensions[jobline_annotations.http_success_status] or 200
            for one in (rule, *rule.additional_bindings):
                verb = one.WhichOneof("pattern")
                template = getattr(one, verb) if verb != "custom" else one.custom.path
                verb = one.custom.kind if verb == "custom" else verb
                path = openapi.openapi_path(PathTemplate.parse(template).route_path)
                expected[(verb.upper(), path)] = (method.full_name, status)
    documented = {(method, path): (operation["operationId"], _success(operation)[0])
                  for method, path, operation in _documented(doc)}
    assert {key: documented.get(key) for key in expected} == expected
    assert set(documented) - set(expected) == {("GET", "/v1/openapi.json"), ("GET", "/v1/runs/{run_id}/stream")}
    stream = doc["paths"]["/v1/runs/{run_id}/stream"]["get"]
    assert stream["operationId"] == "jobline.runs.v1.RunService.WatchRun"
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert doc["paths"]["/v1/openapi.json"]["get"]["security"] == []


def test_spot_checks(doc: dict[str, Any]) -> None:
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    create = paths["/v1/jobs"]["post"]
    assert create["operationId"] == "jobline.jobs.v1.JobService.CreateJob"
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    assert create["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
    # response_body renders one field; 204 has no content; body "*" is the whole request message.
    assert paths["/v1/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/Job"}}
    assert "content" not in paths["/v1/jobs/{job_id}"]["delete"]["responses"]["204"]
    trigger = paths["/v1/jobs/{job_id}/trigger"]["post"]
    assert trigger["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TriggerJobRequest"}
    assert "202" in trigger["responses"] and all(p["in"] == "path" for p in trigger["parameters"])
    # Query parameters: the request's fields not bound by the path.
    get_job = {p["name"]: p for p in paths["/v1/jobs/{job_id}"]["get"]["parameters"]}
    assert get_job["job_id"]["in"] == "path"
    list_jobs = {p["name"]: p for p in paths["/v1/jobs"]["get"]["parameters"]}
    assert list_jobs["page_size"] == {"name": "page_size", "in": "query", "required": False,
                                      "schema": {"type": "integer", "format": "int32"}}
    # protojson's rules in the schemas.
    job = schemas["Job"]["properties"]
    assert job["tags"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert job["payload_schema"] == {"type": "object", "additionalProperties": True}
    assert job["created_at"] == {"type": "string", "format": "date-time"}
    assert job["rate_limit_keys"]["type"] == "array"
    assert "Optional" in job["max_attempts"]["description"]
    assert "timed_out" in schemas["RunStatus"]["enum"] and "RUN_STATUS_TIMED_OUT" not in schemas["RunStatus"]["enum"]
    int64 = [s for m in schemas.values() for s in m.get("properties", {}).values() if s.get("format") == "int64"]
    assert all(s["type"] == "string" for s in int64 if "minimum" not in s)  # 64-bit: strings; uint32: integers
    error = schemas["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "details"}
    assert "not_found" in error["properties"]["code"]["enum"]


CALLS = [  # (method, URL, JSON body) of routes the fake services implement
    ("GET", "/v1/jobs/job-1", None),
    ("GET", "/v1/jobs", None),
    ("POST", "/v1/jobs", {"project_id": "p1", "name": "N", "slug": "n", "endpoint_url": "https://x.test",
                          "tags": {"env": "prod"}, "payload_schema": {"type": "object"}}),
    ("PATCH", "/v1/jobs/job-1", {"name": "M"}),
    ("DELETE", "/v1/jobs/job-1", None),
    ("GET", "/v1/jobs/job-1/versions", None),
    ("GET", "/v1/jobs/job-1/versions/v1", None),
    ("POST", "/v1/jobs/job-1/trigger", {"idempotency_key": "k"}),
    ("GET", "/v1/runs/run-1", None),
    ("GET", "/v1/runs", None),
    ("POST", "/v1/runs/run-1:cancel", {}),
    ("DELETE", "/v1/runs/run-1", None),
    ("GET", "/v1/runs/run-1/logs", None),
    ("POST", "/v1/devices", {"id": "d1", "name": "dev"}),
    ("GET", "/v1/devices/d1", None),
    ("GET", "/v1/devices", None),
]


def _operation_for(doc: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    """The documented operation `url` reaches: a literal path before a templated one."""
    matches = [path for path, item in doc["paths"].items() if method.lower() in item
               and re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/:]+", re.escape(path)), url)]
    assert matches, f"{method} {url} is not documented"
    return doc["paths"][min(matches, key=lambda path: path.count("{"))][method.lower()]


@pytest.mark.parametrize(("method", "url", "body"), CALLS)
async def test_real_responses_match_the_documented_status_and_schema(
    client: httpx.AsyncClient, doc: dict[str, Any], method: str, url: str, body: Any
) -> None:
    operation = _operation_for(doc, method, url)
    if body is not None:
        _validate(doc, operation["requestBody"]["content"]["application/json"]["schema"], body)
    response = await client.request(method, url, json=body)
    status, success = _success(operation)
    assert response.status_code == status, response.text
    if status != 204:
        _validate(doc, success["content"]["application/json"]["schema"], response.json())


async def test_errors_match_the_error_schema(client: httpx.AsyncClient, doc: dict[str, Any], fakes: Fakes) -> None:
    fakes.recorder.fail_with = grpc.StatusCode.NOT_FOUND
    response = await client.get("/v1/jobs/missing")
    assert response.status_code == 404
    _validate(doc, {"$ref": "#/components/schemas/Error"}, response.json())
    response = await client.get("/v1/jobs?nope=1")
    assert response.status_code == 400
    _validate(doc, doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"], response.json())
