"""gRPC channels to peer services: one channel per peer, traced, carrying the service credential."""

from __future__ import annotations

import grpc

from . import service_auth, telemetry

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class Channels:
    """Lazily opened channels, one per address, shared by every stub of the process."""

    def __init__(self, service_token: str | None = None) -> None:
        """`service_token`: the credential every call carries (default: this process's, see service_auth)."""
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._service_token = service_token

    def get(self, addr: str) -> grpc.aio.Channel:
        channel = self._channels.get(addr)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                addr, options=CHANNEL_OPTIONS,
                interceptors=[*service_auth.client_interceptors(self._service_token), *telemetry.client_interceptors()],
            )
            self._channels[addr] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
