"""services.common.server: a port already served is refused, never shared; test ports never repeat."""

from __future__ import annotations

import pytest

from cli.platform import free_port
from services.common import server


async def test_a_second_server_on_a_served_port_is_refused() -> None:
    first = await server.start(server.Registration([], []), "127.0.0.1:0")
    try:
        # gRPC's default SO_REUSEPORT would let both listen and split the calls between them.
        with pytest.raises(RuntimeError, match="Failed to bind"):
            await server.start(server.Registration([], []), f"127.0.0.1:{first.port}")
    finally:
        await first.stop(0)


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
