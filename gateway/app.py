"""The gateway's ASGI app: health, the native `/v1` API, and later the other surfaces beside it.

Surfaces are sibling modules; each gets the same `Authenticator` and `Channels`. The native
surface's error shape is the app's default (unknown routes, 405, 413, unexpected errors).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import telemetry
from services.common.channels import Channels
from services.common.config import Settings

from . import health, metrics, native, openapi, surface_a, surface_b, surface_d, surface_e
from .auth import Authenticator, client_address
from .errors import EXCEPTION_HANDLERS
from .rate_limit import CallerRateLimiter, limits_from

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, channels: Channels | None = None) -> Starlette:
    """The gateway for `settings.peers`; its lifespan closes `channels` when the app stops."""
    channels = channels or Channels()
    authenticator = Authenticator(channels, settings.peers["auth"], settings.auth_cache_secs)
    rate_limiter = CallerRateLimiter(limits_from(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await channels.close()

    app = Starlette(
        middleware=[
            Middleware(QueryCredentialMiddleware),  # first: before anything records the URL
            # The request's trace context (when recording, its server span: parent of the gRPC client spans).
            Middleware(telemetry.TraceContextMiddleware, exclude_spans=["receive", "send"]),
            Middleware(ClientAddressMiddleware),
            Middleware(CredentialChangeMiddleware, authenticator=authenticator),
            Middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.router = IndexedRouter(
        [*health.routes(settings, channels), openapi.route(),
         *native.routes(settings, channels, authenticator, rate_limiter),
         *surface_a.routes(settings, channels, authenticator),
         *surface_b.routes(settings, channels, authenticator),
         *surface_d.routes(settings, channels, authenticator),
         *surface_e.routes(settings, channels, authenticator)],
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator
    app.state.rate_limiter = rate_limiter
    app.state.channels = channels
    metrics.install(app, settings, channels)
    return app


class IndexedRouter(Router):
    """Starlette's router, trying for each request only the routes that may match its path — leading literal
    segments that agree, as many segments — in their order, instead of every route in turn (the others cannot
    match: the first full match, else the first partial one, is the same route). A request none matches goes
    to Starlette's own loop (slash redirects, 404)."""

    DEPTH = 2  # candidates are kept per this many leading segments of the path (and its number of segments)
    MAX_KEYS = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shapes: list[tuple[BaseRoute, _Shape]] = []
        self._candidates: dict[tuple[tuple[str, ...], int], list[BaseRoute]] = {}
        self._indexed: tuple[int, int] = (0, -1)  # (id, length) of the routes list indexed

    def _routes_for(self, route_path: str) -> list[BaseRoute]:
        if self._indexed != (id(self.routes), len(self.routes)):  # routes added since
            self._shapes = [(route, _shape(route)) for route in self.routes]
            self._candidates.clear()
            self._indexed = (id(self.routes), len(self.routes))
        key = (tuple(route_path.split("/", self.DEPTH + 1)[1:self.DEPTH + 1]), route_path.count("/"))
        found = self._candidates.get(key)
        if found is None:
            found = [route for route, shape in self._shapes if _may_match(shape, *key)]
            if len(self._candidates) < self.MAX_KEYS:
                self._candidates[key] = found
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        partial = partial_scope = None
        for route in self._routes_for(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:  # e.g. 405 Method Not Allowed
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)


# What a route may match: its leading literal segments, its number of segments, and whether a path may have
# more (a `{...:path}` parameter, a Mount, or a route of unknown shape).
_Shape = tuple[tuple[str, ...], int, bool]


def _shape(route: BaseRoute) -> _Shape:
    path = getattr(route, "path", None) if isinstance(route, (Route, Mount)) else None
    if not path:
        return (), 0, True
    literal: list[str] = []
    for segment in path.split("/")[1:]:
        if "{" in segment:
            break
        literal.append(segment)
    return tuple(literal), path.count("/"), isinstance(route, Mount) or ":path}" in path


def _may_match(shape: _Shape, leading: tuple[str, ...], segments: int) -> bool:
    """Whether a path of `segments` segments whose first ones are `leading` (at most DEPTH) may match."""
    prefix, count, longer = shape
    shared = min(len(prefix), len(leading))
    return prefix[:shared] == leading[:shared] and (segments == count or longer and segments >= count)


class BodyLimitMiddleware:
    """Refuses a request body over `max_bytes` with 413, raised where the body is read.

    Raising (rather than answering here) lets each surface render the error in its own shape,
    and a request refused before its body is read (401, 404) is refused as that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_bytes:
                raise HTTPException(413, "request body larger than 1 MiB")
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, "request body larger than 1 MiB")
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# The routes that take a credential as `?access_token=`: the SSE stream (browsers' EventSource cannot set headers).
_QUERY_CREDENTIAL_PATHS = re.compile(r"^/v1/runs/[^/]+/stream$")


class QueryCredentialMiddleware:
    """Takes `?access_token=` out of every URL before the request's span records it (a credential never lands
    in a trace or a log line); on the routes that accept it, it becomes `Authorization: Bearer` (unless the
    request has one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"access_token" not in query:
            await self.app(scope, receive, send)
            return
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        tokens = [value for name, value in pairs if name == "access_token"]
        headers = list(scope.get("headers", ()))
        if tokens and tokens[0] and _QUERY_CREDENTIAL_PATHS.match(scope.get("path", "")) \
                and not any(name == b"authorization" for name, _ in headers):
            headers.append((b"authorization", f"Bearer {tokens[0]}".encode()))
        kept = urlencode([(name, value) for name, value in pairs if name != "access_token"])
        await self.app({**scope, "headers": headers, "query_string": kept.encode("ascii")}, receive, send)


class ClientAddressMiddleware:
    """Makes the client's address (the TCP peer) known to the Authenticator's per-source failure limiter.

    Behind a proxy every caller shares the proxy's address: have the proxy rate-limit failed
    authentications itself, or teach this middleware its trusted X-Forwarded-For hop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = client_address.set(client[0] if client else "")
        try:
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)


# Requests that revoke or replace an API key: (method, path) -> the key id.
_KEY_CHANGES = (("DELETE", re.compile(r"^/v1/api-keys/(?P<id>[^/]+)$")),
                ("POST", re.compile(r"^/v1/api-keys/(?P<id>[^/]+)/rotate$")))


class CredentialChangeMiddleware:
    """After a successful revocation or rotation, drops the key's cached authentications on this
    gateway at once (other gateways drop them within JOBLINE_AUTH_CACHE_SECS)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key_id = None
        if scope["type"] == "http":
            for method, pattern in _KEY_CHANGES:
                match = pattern.match(scope.get("path", ""))
                if scope.get("method") == method and match:
                    key_id = match["id"]
        if key_id is None:
            await self.app(scope, receive, send)
            return

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                self.authenticator.forget(key_id)
            await send(message)

        await self.app(scope, receive, watching_send)
