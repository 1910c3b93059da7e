"""Context-only tracing (no exporter): a gRPC server makes the caller's trace context current for that call
alone, and the calls it makes to its peers carry it on; no span is built."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry import trace

from services.common import server, telemetry
from services.common.channels import Channels

TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
METHOD = "/test.Relay/Call"


class Relay:
    """Answers METHOD (raw bytes), recording what the handler sees; with `peer`, calls the peer first."""

    def __init__(self, channels: Channels, peer: str | None = None) -> None:
        self.channels, self.peer = channels, peer
        self.seen: list[tuple[str | None, bool, dict]] = []

    async def call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        span_built = trace.get_current_span().get_span_context().is_valid
        self.seen.append((telemetry.current_trace_id(), span_built, dict(context.invocation_metadata() or ())))
        if self.peer:
            await self.channels.get(self.peer).unary_unary(METHOD)(b"")
        return b"ok"

    def add_to(self, grpc_server: grpc.aio.Server) -> None:
        grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Relay", {"Call": grpc.unary_unary_rpc_method_handler(self.call)}),))


@pytest.fixture
async def relays(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Relay, Relay, str]]:
    monkeypatch.setattr(telemetry, "_provider", None)  # the default: no exporter, no span processor
    channels = Channels(service_token="")
    last = Relay(channels)
    last_server = await server.start(server.Registration([last.add_to], []), "127.0.0.1:0")
    first = Relay(channels, peer=f"127.0.0.1:{last_server.port}")
    first_server = await server.start(server.Registration([first.add_to], []), "127.0.0.1:0")
    yield first, last, f"127.0.0.1:{first_server.port}"
    await channels.close()
    await first_server.stop(0)
    await last_server.stop(0)


async def test_a_call_carries_its_trace_context_to_the_peers_it_calls(relays) -> None:
    first, last, addr = relays
    async with grpc.aio.insecure_channel(addr) as channel:
        await channel.unary_unary(METHOD)(b"", metadata=(("traceparent", TRACEPARENT), ("tracestate", "v=1")))
    assert first.seen[0][:2] == ("ab" * 16, False)  # current in the handler; no span built
    assert last.seen[0][:2] == ("ab" * 16, False)
    assert (last.seen[0][2]["traceparent"], last.seen[0][2]["tracestate"]) == (TRACEPARENT, "v=1")


async def test_a_trace_context_is_the_calls_alone(relays) -> None:
    first, last, addr = relays
    async with grpc.aio.insecure_channel(addr) as channel:
        call = channel.unary_unary(METHOD)
        await call(b"", metadata=(("traceparent", TRACEPARENT),))
        await call(b"")
        await call(b"", metadata=(("traceparent", "00-garbage-01"),))
    assert [trace_id for trace_id, _, _ in first.seen] == ["ab" * 16, None, None]
    assert ["traceparent" in metadata for _, _, metadata in last.seen] == [True, False, False]
