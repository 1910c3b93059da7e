"""The event loop of the services and the gateway: uvloop when it is installed (a dependency: cheaper
scheduling and socket I/O per request), else asyncio's own. The device agent keeps asyncio's."""

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
