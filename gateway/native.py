"""The native `/v1` API (surface C): one route per `google.api.http` binding of the services."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobline.auth.v1 import auth_pb2
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.channels import Channels
from services.common.config import Settings
from services.common.principal import to_metadata

from . import streaming, transcoding
from .auth import Authenticator, scope_for
from .rate_limit import CallerRateLimiter
from .transcoding import Binding

# Each proto service and the peer (settings.peers key) that serves it.
SERVICES: tuple[tuple[ServiceDescriptor, str], ...] = (
    (jobs_pb2.DESCRIPTOR.services_by_name["JobService"], "jobs"),
    (runs_pb2.DESCRIPTOR.services_by_name["RunService"], "runs"),
    (devices_pb2.DESCRIPTOR.services_by_name["DeviceService"], "devices"),
    (auth_pb2.DESCRIPTOR.services_by_name["AuthService"], "auth"),
)
RPC_TIMEOUT_SECS = 30.0


def routes(settings: Settings, channels: Channels, authenticator: Authenticator,
           rate_limiter: CallerRateLimiter | None = None) -> list[BaseRoute]:
    """Starlette routes for every binding, most specific path first; one route per path. Calls to the
    RPCs `rate_limiter` limits are counted per caller after authentication (429 when over)."""
    rate_limiter = rate_limiter or CallerRateLimiter({})
    peers = {service.full_name: settings.peers[peer] for service, peer in SERVICES}
    every = [binding for service, _ in SERVICES for binding in transcoding.bindings(service)]
    by_path: dict[str, dict[str, Binding]] = {}
    for binding in sorted(every, key=lambda b: b.path.sort_key):
        methods = by_path.setdefault(binding.path.route_path, {})
        if binding.http_method in methods:
            raise ValueError(f"two bindings for {binding.http_method} {binding.path.template}")
        methods[binding.http_method] = binding
    return [*streaming.routes(settings, channels, authenticator), *(
        Route(path, _endpoint(methods, channels, peers, authenticator, rate_limiter), methods=list(methods))
        for path, methods in by_path.items()
    )]


def _endpoint(methods: Mapping[str, Binding], channels: Channels, peers: Mapping[str, str],
              authenticator: Authenticator, rate_limiter: CallerRateLimiter):
    scopes = {verb: scope_for(verb, binding.path.template) for verb, binding in methods.items()}

    async def endpoint(request: Request) -> Response:
        verb = "GET" if request.method == "HEAD" else request.method
        binding = methods[verb]
        principal = await authenticator.authorize(request.headers, scopes[verb])
        rate_limiter.admit(binding.method.full_name, principal)
        message = await transcoding.read_request(binding, request)
        channel = channels.get(peers[binding.method.containing_service.full_name])
        call = channel.cached(binding, binding.multicallable)
        reply: Message = await call(message, metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        return transcoding.render(binding, reply)

    return endpoint
