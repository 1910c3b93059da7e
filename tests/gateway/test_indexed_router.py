"""The gateway's IndexedRouter routes every request exactly like Starlette's Router (it only skips routes
that cannot match)."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Mount, Route, Router

from gateway.app import IndexedRouter, create_app
from services.common.config import Settings


def _named(name: str):
    async def endpoint(request) -> PlainTextResponse:
        return PlainTextResponse(f"{name} {dict(request.path_params)}")

    return endpoint


def _routes() -> list:
    return [
        Route("/health", _named("health")),
        Route("/v1/jobs/{job_id}/trigger", _named("trigger"), methods=["POST"]),
        Route("/v1/jobs/{job_id}", _named("get-job"), methods=["GET"]),
        Route("/v1/jobs/{job_id}", _named("patch-job"), methods=["PATCH"]),
        Route("/v1/jobs", _named("jobs")),
        Route("/v1/runs/{run_id}:cancel", _named("cancel"), methods=["POST"]),
        Route("/v1/{anything}/x", _named("wide")),
        Route("/api/svc/v1/jobs/trigger", _named("svc-trigger"), methods=["POST"]),
        Route("/{first}/jobs", _named("first-param")),
        Route("/files/{path:path}", _named("files")),
        Mount("/static", routes=[Route("/{name}", _named("static"))]),
    ]


PATHS = ["/health", "/health/", "/v1/jobs/j1/trigger", "/v1/jobs/j1", "/v1/jobs", "/v1/jobs/", "/v1/runs/r1:cancel",
         "/v1/runs/r1", "/v1/jobs/x", "/v1/abc/x", "/api/svc/v1/jobs/trigger", "/api/jobs", "/v2/jobs",
         "/files/a/b/c", "/static/logo", "/nothing", "/", "/v1", "/api/svc"]


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
async def test_every_request_is_routed_as_starlette_routes_it(method: str) -> None:
    plain, indexed = Starlette(), Starlette()
    plain.router = Router(_routes())
    indexed.router = IndexedRouter(_routes())
    for app in (plain, indexed):
        app.router.routes.append(Route("/added/later", _named("later")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://t") as a, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=indexed), base_url="http://t") as b:
        for path in [*PATHS, "/added/later"]:
            expected, got = await a.request(method, path), await b.request(method, path)
            assert (got.status_code, got.text, got.headers.get("location")) == \
                (expected.status_code, expected.text, expected.headers.get("location")), (method, path)


def _first_match(routes, scope: dict):
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def test_the_gateways_own_routes_are_found_as_starlette_finds_them() -> None:
    peers = {name: "127.0.0.1:1" for name in ("auth", "jobs", "runs", "devices")}
    app = create_app(Settings(service="gateway", listen_addr="", database_url="", peers=peers))
    router = app.router
    assert isinstance(router, IndexedRouter)
    paths = set()
    for route in router.routes:
        template = getattr(route, "path", "")
        filled = re.sub(r"\{[^}]*\}", "x1", template)
        paths.update({filled, filled + "/", filled + "/extra", filled.rsplit("/", 1)[0] or "/"})
    assert len(paths) > 100
    for path in sorted(paths):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            scope = {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}
            assert _first_match(router._routes_for(path), dict(scope)) is _first_match(router.routes, dict(scope)), \
                (method, path)
