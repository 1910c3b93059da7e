"""The event loop of the services and the gateway: uvloop when it is installed (a dependency: cheaper
scheduling and socket I/O per request), else asyncio's own. The device agent keeps asyncio's. And
`wait_event`, how their background loops wait for a wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency; a platform without wheels still runs
    uvloop = None


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs `main` to completion on a new event loop (uvloop's when available)."""
    if uvloop is None:
        asyncio.run(main)
    else:
        uvloop.run(main)


def uvicorn_loop() -> str:
    """uvicorn's name for the same loop."""
    return "asyncio" if uvloop is None else "uvloop"


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Waits until `event` is set, at most `timeout` seconds; answers whether it was set.

    Not asyncio.wait_for: on Python 3.11 it loses a cancellation that arrives as the awaited thing
    completes (it answers the result instead), so a loop stopped while it is being woken would go on
    forever and its stop() would never return."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    except TimeoutError:
        return False
    return True
