"""services.common.eventloop.wait_event: how background loops wait for a wake-up."""

from __future__ import annotations

import asyncio

from services.common.eventloop import wait_event


async def test_it_answers_whether_the_event_was_set_within_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, 0) is True  # already set


async def test_a_loop_canceled_as_it_is_woken_stops() -> None:
    """asyncio.wait_for (Python 3.11) answers instead of raising when the cancel meets the wake-up, and
    the loop goes on: its service's stop() (cancel, then await) hung the test suite."""
    for turns in range(60):
        event = asyncio.Event()

        async def loop() -> None:
            while True:
                await wait_event(event, 10)
                event.clear()

        task = asyncio.create_task(loop())
        for _ in range(turns % 4):
            await asyncio.sleep(0)
        event.set()
        for _ in range(turns % 3):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1)
        assert done and task.cancelled(), f"the cancel was lost ({turns} turns)"
