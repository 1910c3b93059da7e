"""Wake-ups across runs replicas on PostgreSQL: LISTEN/NOTIFY on one channel.

In one process the engine wakes its dispatchers directly (`RunEngine._wake`, `_stop_where_it_runs`).
With several replicas sharing a PostgreSQL database, the run queued or canceled on one replica may
belong to a device whose stream another replica holds. `PgWakeups` is one more dispatcher of the
engine: it forwards what its replica's engine announces — "queued runs for these targets may be
ready", "stop this run" — as NOTIFY on CHANNEL, and hands what the other replicas announce to its
replica's own dispatchers (the agent hub dispatches or cancels on the streams it holds; the HTTP
executor looks at the endpoint queue).

Notifications are only wake-ups: every one is sent after the change it announces was committed, and
nothing depends on its delivery — a lost one is caught by the hub's periodic rescan (runs) or, for a
stop, by the run's end being refused. Announcements are coalesced: one NOTIFY carries every target
named since the last one (above MAX_KEYS targets it says "all"), so a burst of triggers costs a few
notifications. One dedicated connection listens and sends; it reconnects with backoff, and after
reconnecting wakes its own dispatchers for everything, since notifications may have been missed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "jobline_runs_wakeups"
MAX_PAYLOAD_BYTES = 7000  # PostgreSQL refuses payloads of 8000 bytes and more
MAX_KEYS = 500  # more targets than this in one announcement: wake every stream instead


@dataclass(frozen=True)
class RunHandle:
    """What a dispatcher needs to stop a run: which run, which attempt, where it executes."""

    id: str
    attempt: int
    target_key: str


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (any driver) as a plain libpq DSN for asyncpg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgWakeups:
    def __init__(self, url: str, engine: Any, replica_id: str) -> None:
        self.dsn = asyncpg_dsn(url)
        self.engine = engine
        self.replica_id = replica_id
        self.sent = 0  # notifications sent (for tests and metrics)
        self.received = 0  # notifications from other replicas handled
        self._keys: set[str] = set()
        self._all = False
        self._stops: list[tuple[str, int, str, bool]] = []
        self._pending = asyncio.Event()
        self._listening = asyncio.Event()
        self._task: asyncio.Task | None = None
        engine.dispatchers.append(self)

    # -- the engine's announcements, told to the other replicas -----------------------------------

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        if target_keys is None:
            self._all = True
        else:
            self._keys.update(target_keys)
        if self._all or self._keys:
            self._pending.set()

    def stop_run(self, row: Any, force: bool = False) -> None:
        self._stops.append((row.id, row.attempt, row.target_key, force))
        self._pending.set()

    def _payloads(self) -> Iterator[str]:
        """What is pending, as NOTIFY payloads under MAX_PAYLOAD_BYTES; clears it."""
        keys, every, stops = sorted(self._keys), self._all or len(self._keys) > MAX_KEYS, self._stops
        self._keys, self._all, self._stops = set(), False, []
        if every:
            yield json.dumps({"r": self.replica_id, "all": True}, separators=(",", ":"))
            keys = []
        batch: dict[str, Any] = {"r": self.replica_id, "w": [], "s": []}
        size = 64
        for kind, item in [*(("w", k) for k in keys), *(("s", list(s)) for s in stops)]:
            item_size = len(json.dumps(item)) + 1
            if size + item_size > MAX_PAYLOAD_BYTES and (batch["w"] or batch["s"]):
                yield json.dumps(batch, separators=(",", ":"))
                batch, size = {"r": self.replica_id, "w": [], "s": []}, 64
            batch[kind].append(item)
            size += item_size
        if batch["w"] or batch["s"]:
            yield json.dumps(batch, separators=(",", ":"))

    # -- the other replicas' announcements, handed to this replica's dispatchers ----------------------

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("r") == self.replica_id:
            return  # our own: our dispatchers were woken directly
        self.received += 1
        local = [d for d in self.engine.dispatchers if d is not self]
        if message.get("all"):
            for dispatcher in local:
                dispatcher.wake(None)
        if message.get("w"):
            for dispatcher in local:
                dispatcher.wake(set(message["w"]))
        for run_id, attempt, target_key, force in message.get("s") or ():
            for dispatcher in local:
                dispatcher.stop_run(RunHandle(run_id, attempt, target_key), force)

    # -- the connection ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts listening; returns once listening (or after a few seconds, retrying in the background)."""
        self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import asyncpg

        backoff = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c: (lost.set(), self._pending.set()))
                await connection.add_listener(CHANNEL, self._received)
                if self._listening.is_set():  # a reconnect: what was announced meanwhile is unknown
                    self._received(None, 0, CHANNEL, json.dumps({"r": "", "all": True}))
                self._listening.set()
                backoff = 0.5
                while not lost.is_set():
                    await self._pending.wait()
                    self._pending.clear()
                    for payload in self._payloads():
                        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                        self.sent += 1
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - reconnect whatever broke the connection
                log.warning("runs wake-ups: %s; reconnecting in %.1f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), timeout=2)
