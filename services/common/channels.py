"""gRPC channels to peer services: one channel per peer, traced, principal forwarded."""

from __future__ import annotations

import grpc

from . import telemetry

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class Channels:
    """Lazily opened channels, one per address, shared by every stub of the process."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, addr: str) -> grpc.aio.Channel:
        channel = self._channels.get(addr)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                addr, options=CHANNEL_OPTIONS, interceptors=telemetry.client_interceptors()
            )
            self._channels[addr] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
