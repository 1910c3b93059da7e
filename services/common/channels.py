"""gRPC channels to peer services: one channel per peer, traced, carrying the service credential.

Every call made through a `Channels` channel carries, in its metadata, the service credential
(services/common/service_auth.py) and the trace context of the request being served
(services/common/telemetry.py). Both are added here, where the call is made, rather than by
grpc.aio client interceptors: an intercepted call runs its interceptors in a task of its own and
wraps the call in more objects, which cost the gateway more than the rest of its gRPC client.

When a span processor is installed (`telemetry.recording()`), calls go through a second channel to the same
peer that carries OpenTelemetry's client interceptors (the full client spans, as ever); it is opened on first
need only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from . import service_auth, telemetry

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class Channels:
    """Lazily opened channels, one per address, shared by every stub of the process."""

    def __init__(self, service_token: str | None = None) -> None:
        """`service_token`: the credential every call carries (default: this process's, see service_auth;
        "" for none)."""
        self._channels: dict[str, PeerChannel] = {}
        self._service_token = service_token

    def get(self, addr: str) -> PeerChannel:
        channel = self._channels.get(addr)
        if channel is None:
            channel = self._channels[addr] = PeerChannel(addr, self._token)
        return channel

    def _token(self) -> str | None:
        """The credential to attach, resolved on first use (so a credential file created by a sibling process
        after this one started is still found)."""
        token = self._service_token
        if token is None:
            token = self._service_token = service_auth.resolve(create=False)
        return token

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class PeerChannel:
    """A grpc.aio channel (anything but the four multi-callable factories is the channel's own) whose calls
    carry the service credential and the trace context."""

    def __init__(self, addr: str, token: Callable[[], str | None]) -> None:
        self._addr = addr
        self._token = token
        self.channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        self._traced: grpc.aio.Channel | None = None
        self._made: dict[Any, Any] = {}

    def cached(self, key: Any, make: Callable[[PeerChannel], T]) -> T:
        """What `make(this channel)` builds, built once per channel: a generated stub (`cached(Stub, Stub)`:
        a stub makes a multi-callable for each method of its service), a gateway binding's multi-callable.
        A closed Channels opens new channels, with nothing cached."""
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = make(self)
        return made

    def traced(self) -> grpc.aio.Channel:
        """The channel through OpenTelemetry's client interceptors (recording mode)."""
        if self._traced is None:
            self._traced = grpc.aio.insecure_channel(self._addr, options=CHANNEL_OPTIONS,
                                                     interceptors=telemetry.recording_client_interceptors())
        return self._traced

    def metadata(self, metadata: Any, recording: bool) -> Any:
        """The caller's metadata plus the service credential and (context-only mode) the trace context, each
        replacing any value the caller set under the same key."""
        token = self._token()
        trace = () if recording else telemetry.outgoing_trace_context()
        if not token and not trace:
            return metadata
        added: list[tuple[str, str]] = [(service_auth.METADATA_KEY, token)] if token else []
        added += trace
        if metadata:
            replaced = {service_auth.METADATA_KEY} if token else set()
            if trace:
                replaced.update(telemetry.TRACE_KEYS)
            return grpc.aio.Metadata(*[(k, v) for k, v in metadata if k not in replaced], *added)
        return grpc.aio.Metadata(*added)

    def unary_unary(self, method: str, request_serializer=None, response_deserializer=None,
                    _registered_method: bool | None = False) -> _MultiCallable:
        return _MultiCallable(self, "unary_unary", method, request_serializer, response_deserializer,
                              _registered_method)

    def unary_stream(self, method: str, request_serializer=None, response_deserializer=None,
                     _registered_method: bool | None = False) -> _MultiCallable:
        return _MultiCallable(self, "unary_stream", method, request_serializer, response_deserializer,
                              _registered_method)

    def stream_unary(self, method: str, request_serializer=None, response_deserializer=None,
                     _registered_method: bool | None = False) -> _MultiCallable:
        return _MultiCallable(self, "stream_unary", method, request_serializer, response_deserializer,
                              _registered_method)

    def stream_stream(self, method: str, request_serializer=None, response_deserializer=None,
                      _registered_method: bool | None = False) -> _MultiCallable:
        return _MultiCallable(self, "stream_stream", method, request_serializer, response_deserializer,
                              _registered_method)

    def __getattr__(self, name: str) -> Any:  # get_state, channel_ready, wait_for_state_change, ...
        if name == "channel":  # not opened (its __init__ failed)
            raise AttributeError(name)
        return getattr(self.channel, name)

    async def close(self, grace: float | None = None) -> None:
        await self.channel.close(grace)
        if self._traced is not None:
            await self._traced.close(grace)

    async def __aenter__(self) -> PeerChannel:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class _MultiCallable:
    """One RPC of a PeerChannel: the channel's own multi-callable, called with the added metadata."""

    __slots__ = ("_peer", "_args", "_plain", "_traced")

    def __init__(self, peer: PeerChannel, kind: str, *args: Any) -> None:
        self._peer = peer
        self._args = (kind, *args)
        self._plain = getattr(peer.channel, kind)(*args)
        self._traced: Any = None

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        if telemetry.recording():
            traced = self._traced
            if traced is None:
                kind, *rest = self._args
                traced = self._traced = getattr(self._peer.traced(), kind)(*rest)
            return traced(*args, metadata=self._peer.metadata(metadata, True), **kwargs)
        return self._plain(*args, metadata=self._peer.metadata(metadata, False), **kwargs)
