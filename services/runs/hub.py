"""The agent hub: the device streams this replica holds, and dispatch of queued runs to them.

Runs are stored before they are assigned: the dispatcher claims queued rows with a
lease (compare-and-set in the database, so replicas never assign a run twice) and then
sends Assign on the device's stream. In-memory state here is only a cache of who is
connected and what they hold; it is rebuilt from agents' Hello messages. A wake-up names
the devices to look at; they are claimed for DISPATCH_BATCH devices at a time (a fan-out to
10,000 devices is ten claims). A periodic scan every RESCAN_SECS catches what no wake-up named,
RESCAN_BATCH devices in turn (every device at least every 10 s with 10,000 streams), so that it
costs the same with any number of streams.

Claimed at insert (reserve): a new run this replica would dispatch at once anyway (queued now, not
flow-limited, not pooled, for a device streaming here with room whose queue is drained: its last read
found nothing more it could take and no wake-up named it since) is inserted already dequeued with this
replica's lease, the device's room taken synchronously, and assigned when the insert commits: no claim
round (read, then compare-and-set) after its commit. A failed insert gives the room back. Such a run
is recovered like any claimed one: its lease, the device's next reconcile. A Finished on a drained
device costs no read of its queue. Everything else is claimed from the queue as below.

Pools (services/runs/pools.py): a run for any one available device of a group or query is queued on
its pool's key. Every dispatch round also serves the pools known to have queued runs (named by
wake-ups, and looked up at every periodic scan): their runs go, most urgent first, to the pool's
devices streaming here with room, the claim setting each run's device.

Agent messages are handled in batches: every stream's reader hands its messages to one inbox, and
each drain of it makes one call per kind of change for the whole batch where the store allows it
(every output chunk of the batch in one insert; every accept in one engine call, one grouped
compare-and-set; every finish in one engine call, one read of their runs and one grouped update, each
answered on its own so one failing run fails no other), then sends the acks, once the store has answered. Which output
is stored is tracked per stream in memory (the database is asked only about runs a stream took over
from an earlier one, and before a Finished is refused for missing output). Heartbeats never reach
the database from here: the runs they name are collected in memory for the ticker's one batched
touch (RunsService.tick), and the devices' last_seen_at is refreshed at most every SEEN_REFRESH_SECS.

Presence is batched: connects, disconnects and refreshes queue a PresenceChange per device
(the latest wins) and one ReportPresence call per PRESENCE_BATCH carries them every PRESENCE_FLUSH_SECS,
so a reconnect storm of thousands of agents costs a few calls, and REST shows a change within
about half a second. A connected device's last_seen_at lags its last heartbeat by at most
SEEN_REFRESH_SECS plus a flush.

Presence heals itself: every report names this replica and renews its presence lease (at least
every third of `presence_lease_secs`, even with nothing to report). A replica that dies (kill -9,
a lost machine) stops renewing; the devices service then marks its devices offline within
`presence_lease_secs` plus about a second. A replica whose lease ran out anyway (a long pause) is
told to resync and reports every stream it holds again; a stopping replica releases its devices.

Credential revocation: the devices service keeps a credential revision, moved forward by every
revocation, rotation and deletion. Every VALIDATE_SECS the hub asks for it (one small
ValidateAgents call); only when it moved does the hub send the credentials of its streams (one
call per VALIDATE_BATCH streams) to learn which no longer hold. Those streams end with
UNAUTHENTICATED. A revoked device is therefore disconnected within VALIDATE_SECS + two RPCs
(about 1-1.5 s). AuthenticateAgent answers are cached (AUTH_CACHE_SECS at most) and used only
while the revision is the one they were verified at, so a reconnect storm costs no call per agent;
a connect with a credential revoked in the last VALIDATE_SECS may be let in from the cache, and
is then closed within the same bound. Other connects with a revoked credential are refused at once.

Reconnects: a device whose stream here ended (or is replaced) holding no run, back within
IDLE_RECONNECT_SECS holding none, is not reconciled with the database (a reconnect storm of idle agents costs no query per agent).
Only a replica holding its stream assigns a device runs; one that another replica assigned it in
between (the device connected there meanwhile) and that it never got is recovered by its lease
(LEASE_SECS) or its heartbeat timeout, like the run of a vanished device.

Enrolment: a Hello with an enrollment_token (and no credential) registers the device through
DeviceService.EnrollDevice; its Welcome carries the new credential, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2
from jobline.devices.v1.devices_pb2 import PresenceChange
from jobline.jobs.v1.jobs_pb2 import Job
from jobline.runs.v1 import agent_pb2
from services.common.clock import Clock, as_utc
from services.common.errors import InvalidArgument, Unauthenticated
from services.common.eventloop import wait_event
from services.common.secrets import secret_hash

from . import domain, pools
from .engine import Ending, RunEngine, target_key
from .mapping import timestamp
from .peers import Peers
from .store import Queued, RunRow, RunStore

log = logging.getLogger(__name__)

LEASE_SECS = 30
RESCAN_SECS = 1.0
DISPATCH_BATCH = 1000  # devices claimed for in one round
DISPATCH_CONCURRENCY = 3  # rounds in flight at once
RESCAN_BATCH = 1000  # devices looked at by one periodic scan
ON_DEVICE_BATCH = 500  # connecting devices whose runs are read in one query
CONNECT_WAKE_SECS = 0.05  # devices that connect are woken for dispatch together, this long after the first
PRESENCE_FLUSH_SECS = 0.2
PRESENCE_BATCH = 2000  # changes per ReportPresence call: each renews the lease, none runs long
VALIDATE_SECS = 1.0
VALIDATE_BATCH = 1000
AUTH_CACHE_SECS = 60.0  # the longest an AuthenticateAgent answer is reused
AUTH_CACHE_SIZE = 100_000
SEEN_REFRESH_SECS = 30.0  # how often a connected device's last_seen_at moves forward
IDLE_RECONNECT_SECS = 60.0  # a device that left holding no run and is back by then holding none is not reconciled
INBOX_LIMIT = 20_000  # agent messages waiting to be handled before the streams stop being read
PRESENCE_LEASE_SECS = 10  # default; JOBLINE_PRESENCE_LEASE_SECS
RunKey = tuple[str, int]  # (run_id, attempt)
# Upper bounds (seconds) of the dispatch latency histogram's buckets; +Inf is the total count.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class LatencyHistogram:
    """Bucket counters (not cumulative here) plus count and sum: cheap to observe, in memory."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[int]:
        total, out = 0, []
        for n in self.counts:
            total += n
            out.append(total)
        return out


def queued_since(row: Queued) -> datetime:
    """When the run became dispatchable: the latest of its creation, its scheduled time and its retry time."""
    moments = [as_utc(m) for m in (row.created_at, row.scheduled_at, row.next_retry_at) if m is not None]
    return max(moments)


class StoredOutput:
    """The output chunks of one (run, attempt) known to be stored: 1..upto, and some beyond."""

    __slots__ = ("upto", "beyond")

    def __init__(self, upto: int = 0) -> None:
        self.upto = upto
        self.beyond: set[int] | None = None

    def add(self, sequence: int) -> None:
        if sequence <= self.upto:
            return
        if sequence != self.upto + 1:
            self.beyond = self.beyond or set()
            self.beyond.add(sequence)
            return
        self.upto = sequence
        while self.beyond and self.upto + 1 in self.beyond:
            self.upto += 1
            self.beyond.discard(self.upto)


class Outbox:
    """A stream's outbound messages: a deque and at most one waiting reader (lighter than a Queue)."""

    __slots__ = ("_messages", "_waiter")

    def __init__(self) -> None:
        self._messages: deque[agent_pb2.ServerMessage | None] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: agent_pb2.ServerMessage | None) -> None:
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> agent_pb2.ServerMessage | None:
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()


class AgentSession:
    """One connected agent: its outbound messages, its capacity and the runs it holds."""

    __slots__ = ("tenant_id", "device_id", "key", "capacity", "held", "reserved", "stopping", "timeouts", "output",
                 "credential_sha256", "checked_revision", "revoked", "closed", "beating", "_outbox")

    def __init__(self, tenant_id: str, device_id: str, capacity: int, credential_sha256: str = "",
                 checked_revision: int = 0) -> None:
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.key = target_key(tenant_id, device_id)
        self.capacity = max(1, capacity)
        self.held: set[RunKey] = set()
        self.reserved = 0  # runs being claimed (at their insert, AgentHub.reserve, or from the queue): room taken
        # Held runs that are no longer this device's (an Accept refused, a pooled run that went on to another
        # device): the agent is told to stop them; their output is not the run's, their Finished is only acked.
        self.stopping: set[RunKey] = set()
        self.timeouts: dict[RunKey, int] = {}  # timeout_secs of the runs assigned and not yet accepted
        self.output: dict[RunKey, StoredOutput] = {}  # held runs whose stored output this stream knows
        self.credential_sha256 = credential_sha256
        self.checked_revision = checked_revision  # the credential revision this stream's credential held at
        self.revoked = False
        self.closed = False
        self.beating = False  # a heartbeat arrived since the last refresh of last_seen_at
        self._outbox = Outbox()

    @property
    def free(self) -> int:
        return self.capacity - len(self.held) - self.reserved

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self._outbox.put(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.put(None)

    def forget(self, key: RunKey) -> None:
        self.held.discard(key)
        self.stopping.discard(key)
        self.timeouts.pop(key, None)
        self.output.pop(key, None)

    async def messages(self) -> AsyncIterator[agent_pb2.ServerMessage]:
        while (message := await self._outbox.get()) is not None:
            yield message


class Reservation:
    """The runs of one insert claimed for devices streaming here (AgentHub.reserve), their room taken
    until the insert is settled: committed, they are handed out; failed, the room is given back."""

    __slots__ = ("hub", "taken", "settled")

    def __init__(self, hub: AgentHub, taken: list[tuple[RunRow, AgentSession]]) -> None:
        self.hub = hub
        self.taken = taken
        self.settled = False

    def settle(self, stored: bool) -> None:
        if self.settled:
            return
        self.settled = True
        if stored:
            self.hub._hand_out_reserved(self.taken)
        else:
            self.hub._release_reserved(self.taken)


class AgentHub:
    def __init__(self, engine: RunEngine, store: RunStore, peers: Peers, clock: Clock,
                 heartbeat_interval_ms: int = 5000, presence_lease_secs: int = PRESENCE_LEASE_SECS) -> None:
        self.engine = engine
        self.store = store
        self.peers = peers
        self.clock = clock
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.replica_id = str(uuid.uuid4())
        self.sessions: dict[str, AgentSession] = {}
        self.heartbeats: dict[str, datetime] = {}
        self._pending: set[str] = set()
        self._connected: set[str] = set()  # devices connected since the last wake-up for them
        self._connected_wake: asyncio.TimerHandle | None = None
        self._scan_all = False
        self._rescan_from = 0
        self._wakeup = asyncio.Event()
        self._snapshots: dict[str, Job] = {}
        self._inbox: list[tuple[AgentSession, agent_pb2.AgentMessage]] = []
        self._inbox_ready = asyncio.Event()
        self._inbox_room = asyncio.Event()
        self._inbox_room.set()
        self._presence_queue: dict[tuple[str, str], PresenceChange] = {}
        self.presence_lease_secs = max(1, presence_lease_secs)
        self._presence_renewed: float | None = None  # loop time of the last report that reached the devices service
        self._seen_refreshed = 0.0  # loop time of the last refresh of last_seen_at
        self.credential_revision = 0  # the devices service's, as of the last check
        # (device_id, credential hash) -> (tenant_id, revision verified at, loop time it expires)
        self._verified: dict[tuple[str, str], tuple[str, int, float]] = {}
        self._left_idle: dict[str, float] = {}  # device key -> until when its idle leaving spares a reconcile
        self.dispatch_latency = LatencyHistogram()
        self._pools: set[str] = set()  # pools with queued runs, as of the last look
        self._members = pools.PoolMembers(self._pool_devices)
        self._pool_turn: dict[str, int] = {}  # device key -> when a pooled run last went to it (a counter)
        self._turns = 0
        # Devices streaming here whose queue held no run they could take at their last read, and that no
        # wake-up named since: a new run for one of them with room may be claimed at its insert (reserve).
        self._drained: set[str] = set()
        self._wakes_all = 0  # wake(None) calls so far: a read older than the last one marks nothing drained
        self._background: set[asyncio.Task] = set()
        # Devices connecting whose runs the database is asked about, in one query for all of them.
        self._on_device_wanted: dict[str, list[asyncio.Future[list[RunRow]]]] = {}
        self._on_device_reader: asyncio.Task | None = None
        engine.dispatchers.append(self)

    # -- dispatch ------------------------------------------------------------------------

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        if target_keys is None:
            self._scan_all = True
            self._drained.clear()
            self._wakes_all += 1
        else:
            for key in target_keys:
                if key in self.sessions:
                    self._pending.add(key)
                    self._drained.discard(key)
                elif pools.is_pool(key):
                    self._pools.add(key)
        self._wakeup.set()

    async def run_dispatcher(self) -> None:
        """Forever: dispatch to the devices named by wake-ups (all of them on a full scan); also runs
        the inbox, presence and credential loops, which end with it."""
        helpers = [asyncio.create_task(loop()) for loop in (self._inbox_loop, self._presence_loop,
                                                             self._validate_loop)]
        try:
            await self._dispatch_loop()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        rescanned = loop.time()
        while True:
            await wait_event(self._wakeup, rescanned + RESCAN_SECS - loop.time())
            self._wakeup.clear()
            scan = self._scan_all or loop.time() - rescanned >= RESCAN_SECS
            if self._scan_all:
                keys = list(self.sessions)
            else:
                keys = list(self._pending)
                if scan:  # the periodic scan: what no wake-up named
                    rescanned = loop.time()
                    keys += self._rescan_slice()
            self._pending.clear()
            self._scan_all = False
            if scan and self.sessions:
                try:
                    self._pools.update(await self.store.queued_pools())
                except Exception:
                    log.exception("looking up the pools with queued runs failed")
            try:
                await self.dispatch(dict.fromkeys(keys))
            except Exception:  # keep dispatching whatever one batch hit
                log.exception("dispatch failed")

    def _freed(self, keys: Iterable[str]) -> None:
        """Devices that have room again (a run ended, a reservation was let go): dispatch for those whose
        queue may hold runs, not for drained ones (their queue is empty), and for the pools."""
        waiting = [k for k in keys if k not in self._drained]
        if waiting:
            self.wake(waiting)
        elif self._pools:
            self._wakeup.set()

    # -- claimed at insert ------------------------------------------------------------------

    def reserve(self, rows: Sequence[RunRow], now: datetime) -> Reservation | None:
        """Claims, before they are inserted, the new runs this replica would dispatch at once anyway: queued
        now (not delayed, waiting or pooled), not flow-limited, for a device streaming here with room whose
        queue is drained (no queued run waits for it, so queue order holds). They are inserted dequeued
        with this replica's lease, and their device's room is taken now (a burst never exceeds a capacity);
        the Reservation hands them out when the insert commits, or gives the room back when it fails.
        Answers None when no run qualifies. A run handed out is recovered like any claimed one: by its
        lease (LEASE_SECS) when its Assign is lost, by the reconcile of the device's next stream."""
        if not self.sessions:
            return None
        taken: list[tuple[RunRow, AgentSession]] = []
        lease: dict[str, Any] | None = None
        for row in rows:
            state = row.__dict__  # a new run holds every field there
            if state["status"] != "queued":
                continue
            key = state["target_key"]
            session = self.sessions.get(key)
            if session is None:
                continue
            if state["limited"] or key not in self._drained or session.closed or session.free <= 0:
                self._drained.discard(key)  # this run waits in the device's queue: later ones go behind it
                continue
            if lease is None:
                lease = dict(status="dequeued", lease_owner=self.replica_id, dequeued_at=now,
                             lease_expires_at=now + timedelta(seconds=LEASE_SECS))
            state.update(lease)
            session.reserved += 1
            taken.append((row, session))
        return Reservation(self, taken) if taken else None

    def _hand_out_reserved(self, taken: Sequence[tuple[RunRow, AgentSession]]) -> None:
        """The reserved runs are stored: each goes to its device's stream; those whose stream ended
        meanwhile go back to the queue."""
        now = self.clock.now()
        lost = []
        for row, session in taken:
            session.reserved -= 1
            if self.sessions.get(session.key) is not session or session.closed:
                lost.append(row)
            else:
                self._give(row, session, now)
        if lost:
            task = asyncio.get_running_loop().create_task(self._requeue_lost(lost))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _requeue_lost(self, rows: Sequence[RunRow]) -> None:
        for row in rows:
            try:
                await self.engine.requeue(row.id, row.attempt)
            except Exception:  # its lease runs out: tick() requeues it then
                log.exception("run %s: putting it back in the queue failed", row.id)

    def _release_reserved(self, taken: Sequence[tuple[RunRow, AgentSession]]) -> None:
        """The insert failed: the rows are queued runs again (a retried insert may reserve them anew) and
        their devices' room is given back."""
        for row, session in taken:
            row.__dict__.update(status="queued", lease_owner="", lease_expires_at=None, dequeued_at=None)
            session.reserved -= 1
        self._freed({session.key for _, session in taken})

    def _rescan_slice(self) -> list[str]:
        """The next RESCAN_BATCH devices in turn: each device is looked at least every
        len(sessions) / RESCAN_BATCH periodic scans, at a cost that does not grow with the fleet."""
        keys = list(self.sessions)
        if len(keys) <= RESCAN_BATCH:
            return keys
        start = self._rescan_from % len(keys)
        self._rescan_from = start + RESCAN_BATCH
        return (keys[start:] + keys[:start])[:RESCAN_BATCH]

    async def dispatch(self, keys: Iterable[str]) -> int:
        """Claims queued runs for these devices up to their free capacity and assigns them, for
        DISPATCH_BATCH devices at a time, DISPATCH_CONCURRENCY batches at once (one batch's read overlaps
        another's claim; the first Assigns leave before the last devices are claimed for)."""
        ready = [k for k in keys if (s := self.sessions.get(k)) is not None and s.free > 0]
        batches = iter([ready[start:start + DISPATCH_BATCH] for start in range(0, len(ready), DISPATCH_BATCH)])

        async def worker() -> int:
            done = 0
            for batch in batches:
                done += await self._dispatch_batch(batch)
            return done

        assigned = sum(await asyncio.gather(*(worker() for _ in range(DISPATCH_CONCURRENCY))))
        if self._pools:
            assigned += await self._dispatch_pools()
        return assigned

    async def _dispatch_batch(self, keys: Sequence[str]) -> int:
        assigned = 0
        while True:
            sessions = {k: s for k in keys if (s := self.sessions.get(k)) is not None and s.free > 0 and not s.closed}
            if not sessions:
                return assigned
            limit = sum(s.free for s in sessions.values())
            wakes_all = self._wakes_all
            rows = await self.store.queued_for(list(sessions), limit)
            picked: list[Queued] = []
            room = {k: s.free for k, s in sessions.items()}
            for row in rows:
                if room[row.target_key] > 0:
                    room[row.target_key] -= 1
                    picked.append(row)
            if len(rows) < limit and wakes_all == self._wakes_all:
                # Every run these devices could take was read: those with room left have none waiting,
                # unless a wake-up named them since (a run queued after the read).
                self._drained.update(k for k, left in room.items() if left > 0 and k not in self._pending
                                     and self.sessions.get(k) is sessions[k])
            if not picked:
                return assigned
            now = self.clock.now()
            for row in picked:  # their room is taken while they are claimed (a reserve meanwhile sees it)
                sessions[row.target_key].reserved += 1
            try:
                claimed = await self.store.claim([r.id for r in picked], self.replica_id, now,
                                                 now + timedelta(seconds=LEASE_SECS))
            finally:
                for row in picked:
                    sessions[row.target_key].reserved -= 1
            for row in picked:
                if row.id in claimed:
                    assigned += await self._hand_out(row, self.sessions.get(row.target_key), now)
            keys = [k for k in sessions if room[k] == 0 and self.sessions.get(k) and self.sessions[k].free > 0]

    async def _hand_out(self, row: Queued, session: AgentSession | None, now: datetime) -> int:
        """Assigns a claimed run to its device's stream (answers 1); back to the queue if the agent left
        meanwhile (answers 0)."""
        if session is None or self.sessions.get(session.key) is not session or session.closed:
            await self.engine.requeue(row.id, row.attempt)
            return 0
        self._give(row, session, now)
        return 1

    def _give(self, row: Queued | RunRow, session: AgentSession, now: datetime) -> None:
        key = (row.id, row.attempt)
        session.held.add(key)
        session.stopping.discard(key)  # given again: this device's once more
        session.timeouts[key] = row.timeout_secs
        session.output[key] = StoredOutput()
        session.send(agent_pb2.ServerMessage(assign=self._assign(row, now)))
        self.dispatch_latency.observe((self.clock.now() - queued_since(row)).total_seconds())

    async def _dispatch_pools(self) -> int:
        """Claims queued runs of the pools with a device here that has room, most urgent first, each for
        the pool's device with the most room (the one longest without a pooled run among equals)."""
        assigned = 0
        while True:
            room = await self._pool_room()
            if not room:
                return assigned
            free = {s.key: s.free for members in room.values() for s in members}
            rows = await self.store.queued_for(list(room), sum(free.values()))
            placed: dict[str, tuple[Queued, AgentSession]] = {}
            for row in rows:
                candidates = [s for s in room[row.target_key] if free[s.key] > 0]
                if candidates:
                    session = max(candidates, key=lambda s: (free[s.key], -self._pool_turn.get(s.key, 0)))
                    free[session.key] -= 1
                    self._turns += 1
                    self._pool_turn[session.key] = self._turns
                    placed[row.id] = (row, session)
            if not placed:
                return assigned
            now = self.clock.now()
            claimed = await self.store.claim(list(placed), self.replica_id, now, now + timedelta(seconds=LEASE_SECS),
                                             {run_id: (s.key, s.device_id) for run_id, (_, s) in placed.items()})
            for run_id in claimed:
                row, session = placed[run_id]
                assigned += await self._hand_out(row, session, now)
            if not claimed:  # another replica took them: it serves them
                return assigned

    async def _pool_room(self) -> dict[str, list[AgentSession]]:
        """Each pool with queued runs, and its devices streaming here with room."""
        if not self.sessions:
            return {}
        pools = list(self._pools)
        room: dict[str, list[AgentSession]] = {}
        for pool, members in zip(pools, await asyncio.gather(*(self._pool_members(p) for p in pools))):
            if members is None:
                continue
            if len(members) > len(self.sessions):
                ready = [s for key, s in self.sessions.items() if key in members and s.free > 0 and not s.closed]
            else:
                ready = [s for key in members if (s := self.sessions.get(key)) is not None and s.free > 0
                         and not s.closed]
            if ready:
                room[pool] = ready
        return room

    async def _pool_members(self, pool: str) -> frozenset[str] | None:
        """The pool's device keys (None, and the pool forgotten, when nothing is queued there any more)."""
        members = self._members.cached(pool)
        if members is not None:
            return members
        snapshot = await self.store.pool_snapshot(pool)
        if snapshot is None:
            self._pools.discard(pool)
            return None
        return await self._members.of(pool, Job.FromString(snapshot).targets)

    async def _pool_devices(self, principal: Principal, targets: devices_pb2.DeviceTargets) -> list[str]:
        resolved = await self.peers.resolve(principal, targets, pool_members=True)
        return [target_key(principal.tenant_id, device.id) for device in resolved.devices]

    def _assign(self, row: Queued, now: datetime) -> agent_pb2.Assign:
        job = self._snapshots.get(row.job_version_id)
        if job is None:
            job = self._snapshots[row.job_version_id] = Job.FromString(row.snapshot)
        return agent_pb2.Assign(
            run=agent_pb2.RunRef(run_id=row.id, attempt=row.attempt), command=row.command, handler=job.handler,
            inputs=domain.inputs_for(job, row.payload or {}), timeout_secs=row.timeout_secs,
            deadline=timestamp(now + timedelta(seconds=row.timeout_secs)),
        )

    def stop_run(self, row: RunRow, force: bool = False) -> None:
        session = self.sessions.get(row.target_key)
        if session is not None:
            session.send(agent_pb2.ServerMessage(cancel=agent_pb2.Cancel(
                run=agent_pb2.RunRef(run_id=row.id, attempt=row.attempt), force=force)))

    # -- the stream ----------------------------------------------------------------------

    async def connect(self, requests: AsyncIterator[agent_pb2.AgentMessage]) -> AsyncIterator[agent_pb2.ServerMessage]:
        """Serves one agent stream: Hello first, then messages both ways until either side ends."""
        first = await anext(aiter(requests), None)
        if first is None or not first.HasField("hello"):
            raise InvalidArgument("the first message must be Hello")
        session = await self._open(first.hello)
        del first  # the stream's frame keeps no Hello for its lifetime
        reader = asyncio.create_task(self._read(session, requests))
        try:
            async for message in session.messages():
                yield message
        finally:
            reader.cancel()
            session.close()
            if self.sessions.get(session.key) is session:
                del self.sessions[session.key]
                self._drained.discard(session.key)
                self._pool_turn.pop(session.key, None)
                self._presence(session, online=False)
                if not session.held:
                    self._left_idle_at(session.key)
            if not session.revoked:  # it held until now: its reconnect needs no AuthenticateAgent
                self._remember((session.device_id, session.credential_sha256), session.tenant_id,
                               session.checked_revision)
        if session.revoked:
            raise Unauthenticated("the device's credential was revoked")

    async def _open(self, hello: agent_pb2.Hello) -> AgentSession:
        """Authenticates (or enrols) the agent, welcomes it and reconciles what it holds; answers its
        session, registered and dispatchable."""
        welcome = agent_pb2.Welcome(heartbeat_interval_ms=self.heartbeat_interval_ms)
        revision = self.credential_revision  # before the credential is checked: a later change moves it
        if hello.enrollment_token and not hello.credential:
            device = await self._enroll(hello)
            tenant_id, device_id = device.tenant_id, device.id
            welcome.credential = device.credential
            credential_sha256 = secret_hash(device.credential)
        else:
            credential_sha256 = secret_hash(hello.credential)
            tenant_id, device_id = await self._authenticate(hello.device_id, hello.credential, credential_sha256)
        session = AgentSession(tenant_id, device_id, hello.capacity or 1, credential_sha256, revision)
        previous = self.sessions.pop(session.key, None)
        if previous is not None:  # a stream this one replaces (its end not noticed yet): it left now
            previous.close()
            if not previous.held:
                self._left_idle_at(session.key)
        self._presence(session, online=True, agent_version=hello.agent_version, facts=dict(hello.facts),
                       stream_opened=True)
        session.send(agent_pb2.ServerMessage(welcome=welcome))
        # Reconcile before the session is dispatchable, so nothing is assigned to it mid-way.
        left_idle = self._left_idle.pop(session.key, 0.0) > asyncio.get_running_loop().time()
        if hello.held_runs or not left_idle:
            await self._reconcile(session, {(r.run_id, r.attempt) for r in hello.held_runs})
        self._drained.discard(session.key)  # until its first dispatch round has read its queue
        self.sessions[session.key] = session
        self._wake_connected(session.key)
        return session

    def _wake_connected(self, key: str) -> None:
        """Wakes dispatch for a device that connected, CONNECT_WAKE_SECS later with every device that
        connected meanwhile: a reconnect storm is a few claims of many devices, not one per device."""
        self._connected.add(key)
        if self._connected_wake is None:
            self._connected_wake = asyncio.get_running_loop().call_later(CONNECT_WAKE_SECS, self._wake_all_connected)

    def _wake_all_connected(self) -> None:
        keys, self._connected, self._connected_wake = self._connected, set(), None
        self.wake(keys)

    async def _authenticate(self, device_id: str, credential: str, credential_sha256: str) -> tuple[str, str]:
        """(tenant_id, device_id) of the device this credential belongs to: from the cache while no
        credential changed since it was verified (and for AUTH_CACHE_SECS at most), else asked."""
        key = (device_id, credential_sha256)
        now = asyncio.get_running_loop().time()
        cached = self._verified.get(key)
        if cached is not None and cached[1] == self.credential_revision and cached[2] > now:
            return cached[0], device_id
        revision = self.credential_revision
        device = await self.peers.authenticate_agent(device_id, credential)
        self._remember(key, device.tenant_id, revision)
        return device.tenant_id, device.id

    def _left_idle_at(self, key: str) -> None:
        if len(self._left_idle) >= AUTH_CACHE_SIZE:
            self._left_idle.clear()
        self._left_idle[key] = asyncio.get_running_loop().time() + IDLE_RECONNECT_SECS

    def _remember(self, key: tuple[str, str], tenant_id: str, revision: int) -> None:
        if len(self._verified) >= AUTH_CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = (tenant_id, revision, asyncio.get_running_loop().time() + AUTH_CACHE_SECS)

    async def _enroll(self, hello: agent_pb2.Hello) -> devices_pb2.Device:
        return await self.peers.enroll_device(devices_pb2.EnrollDeviceRequest(
            token=hello.enrollment_token, device_id=hello.device_id, name=hello.device_name,
            facts=hello.facts, agent_version=hello.agent_version))

    async def _reconcile(self, session: AgentSession, held: set[RunKey]) -> None:
        """Matches what the agent says it holds with what the database says is on the device."""
        on_device = {(r.id, r.attempt): r for r in await self._on_device(session.key)}
        for key, row in on_device.items():
            if key in held:
                session.held.add(key)
                if row.status == "dequeued":  # its Accept was lost with the previous stream
                    await self.engine.accept(row.id, row.attempt, row.timeout_secs, session.key)
            elif row.status == "dequeued":
                await self.engine.requeue(row.id, row.attempt, session.key)
            else:
                await self.engine.end_attempt(row.id, row.attempt, domain.Outcome("crashed", "the agent lost the run"),
                                              device_key=session.key)
        for run_id, attempt in held - set(on_device):
            # Held runs that ended here (canceled, crashed) or, pooled, went back to the pool and maybe on to
            # another device: tell the agent to stop; it will report and be acked.
            row = await self.store.get_any(run_id)
            if row is not None and (row.target_key == session.key
                                    or (row.pool_key and row.tenant_id == session.tenant_id)):
                session.held.add((run_id, attempt))
                if row.attempt == attempt and row.target_key != session.key:  # this attempt is another device's now
                    session.stopping.add((run_id, attempt))
                session.send(agent_pb2.ServerMessage(cancel=agent_pb2.Cancel(
                    run=agent_pb2.RunRef(run_id=run_id, attempt=attempt), force=True)))

    async def _on_device(self, key: str) -> list[RunRow]:
        """The runs on this device as the database has them (store.on_device): the devices that connect
        while one such read runs are read together by the next (a reconnect storm costs a few queries)."""
        future: asyncio.Future[list[RunRow]] = asyncio.get_running_loop().create_future()
        self._on_device_wanted.setdefault(key, []).append(future)
        if self._on_device_reader is None or self._on_device_reader.done():
            self._on_device_reader = asyncio.get_running_loop().create_task(self._read_on_device())
        return await future

    async def _read_on_device(self) -> None:
        while self._on_device_wanted:
            await asyncio.sleep(0)  # the connects of this moment join in
            wanted, self._on_device_wanted = self._on_device_wanted, {}
            keys = list(wanted)
            for start in range(0, len(keys), ON_DEVICE_BATCH):
                batch = keys[start:start + ON_DEVICE_BATCH]
                try:
                    rows = await self.store.on_devices(batch)
                except Exception as error:
                    for key in batch:
                        for future in wanted[key]:
                            if not future.done():
                                future.set_exception(error)
                    continue
                found: dict[str, list[RunRow]] = {}
                for row in rows:
                    found.setdefault(row.target_key, []).append(row)
                for key in batch:
                    for future in wanted[key]:
                        if not future.done():
                            future.set_result(found.get(key, []))

    async def _read(self, session: AgentSession, requests: AsyncIterator[agent_pb2.AgentMessage]) -> None:
        """Heartbeats are taken here, in memory; every other message goes to the inbox."""
        try:
            async for message in requests:
                if message.HasField("heartbeat"):
                    self._heartbeat(session, message.heartbeat)
                    continue
                self._inbox.append((session, message))
                self._inbox_ready.set()
                if len(self._inbox) >= INBOX_LIMIT:
                    self._inbox_room.clear()
                    await self._inbox_room.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("agent stream of %s failed", session.key)
        finally:
            session.close()

    def _heartbeat(self, session: AgentSession, heartbeat: agent_pb2.Heartbeat) -> None:
        session.beating = True
        if heartbeat.runs:
            now = self.clock.now()
            for ref in heartbeat.runs:
                key = (ref.run_id, ref.attempt)
                if key in session.held and key not in session.stopping:  # a stopping run is another's
                    self.heartbeats[ref.run_id] = now

    # -- agent messages, in batches ------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        while True:
            await self._inbox_ready.wait()
            self._inbox_ready.clear()
            batch, self._inbox = self._inbox, []
            self._inbox_room.set()
            try:
                await self.handle_batch(batch)
            except Exception:  # keep handling the next batches whatever this one hit
                log.exception("agent messages failed")

    async def handle_batch(self, batch: Sequence[tuple[AgentSession, agent_pb2.AgentMessage]]) -> None:
        """Handles agent messages in the order of a run's life: accepts, rejects, output, finishes (a
        stream's messages of one run arrive in that order). Messages of streams that ended, or of runs
        the stream does not hold, are dropped; a stream whose message could not be handled is closed
        (its agent reconnects and resends what is unacked)."""
        by_kind: dict[str, list[tuple[AgentSession, agent_pb2.AgentMessage]]] = {
            "accept": [], "reject": [], "output": [], "finished": []}
        for session, message in batch:
            kind = message.WhichOneof("body")
            if kind in by_kind and not session.closed and self.sessions.get(session.key) is session:
                by_kind[kind].append((session, getattr(message, kind)))
        await self._accepted(by_kind["accept"])
        await self._rejected(by_kind["reject"])
        await self._output(by_kind["output"])
        await self._finished(by_kind["finished"])

    @staticmethod
    def _held(items: list[tuple[AgentSession, agent_pb2.AgentMessage]]) -> list[tuple[AgentSession, agent_pb2.AgentMessage]]:
        return [(s, body) for s, body in items if (body.run.run_id, body.run.attempt) in s.held]

    @staticmethod
    def _failed(session: AgentSession, what: str, error: BaseException) -> None:
        log.error("agent stream of %s: %s failed", session.key, what, exc_info=error)
        session.close()

    async def _accepted(self, items: list[tuple[AgentSession, agent_pb2.Accept]]) -> None:
        """Every accept of the batch in one engine call (one write); a run no longer dequeued is canceled."""
        items = self._held(items)
        if not items:
            return
        results = await self._all_or_each(self.engine.accept_many, [
            (a.run.run_id, a.run.attempt, s.timeouts.pop((a.run.run_id, a.run.attempt), 0), s.key)
            for s, a in items])
        for (session, accept), result in zip(items, results):
            if isinstance(result, BaseException):
                self._failed(session, "an accept", result)
            elif not result:  # canceled, or gone back to the queue (and maybe on to another device)
                session.stopping.add((accept.run.run_id, accept.run.attempt))
                session.send(agent_pb2.ServerMessage(cancel=agent_pb2.Cancel(run=accept.run, force=True)))

    @staticmethod
    async def _all_or_each(call, items: list) -> list:
        """call(items) answers one result per item; when the call itself fails, each item gets its error."""
        try:
            return await call(items)
        except Exception as error:  # the write as a whole (its COMMIT) failed: every item did
            return [error] * len(items)

    async def _rejected(self, items: list[tuple[AgentSession, agent_pb2.Reject]]) -> None:
        """Rejected runs fail (in one engine call for the batch), except those of an agent at capacity."""
        failing: list[tuple[AgentSession, agent_pb2.Reject]] = []
        for session, reject in self._held(items):
            ref = reject.run
            # The agent counts more runs than the hub does when "at capacity" (it still finishes one the
            # hub forgot): not the run's fault. Back to the queue; the next Finished wakes dispatch again.
            if not reject.reason.startswith("at capacity"):
                failing.append((session, reject))
                continue
            try:
                # not woken: dispatched again at the next Finished or scan, not straight back
                await self.engine.requeue(ref.run_id, ref.attempt, session.key, wake=False)
            except Exception as error:
                self._failed(session, "a reject", error)
                continue
            self._drained.discard(session.key)  # it waits in the device's queue again
            session.forget((ref.run_id, ref.attempt))
        if not failing:
            return
        results = await self._all_or_each(self.engine.end_attempts, [Ending(
            r.run.run_id, r.run.attempt, domain.Outcome("failed", f"rejected by the agent: {r.reason}",
                                                        retryable=False), device_key=s.key) for s, r in failing])
        woken = set()
        for (session, reject), result in zip(failing, results):
            if isinstance(result, BaseException):
                self._failed(session, "a reject", result)
                continue
            session.forget((reject.run.run_id, reject.run.attempt))
            woken.add(session.key)
        if woken:
            self._freed(woken)

    async def _output(self, items: list[tuple[AgentSession, agent_pb2.OutputChunk]]) -> None:
        """Stores every chunk in one insert, then acks each run's highest contiguous stored sequence."""
        items = [(s, c) for s, c in self._held(items) if (c.run.run_id, c.run.attempt) not in s.stopping]
        if not items:
            return
        now = self.clock.now()
        try:
            await self.store.add_chunks([dict(run_id=c.run.run_id, attempt=c.run.attempt, sequence=c.sequence,
                                              stream=c.stream, data=c.data, created_at=now) for _, c in items])
        except Exception as error:
            for session in {id(s): s for s, _ in items}.values():
                self._failed(session, "storing output", error)
            return
        acks: dict[tuple[int, RunKey], tuple[AgentSession, agent_pb2.RunRef]] = {}
        taken_over: list[tuple[AgentSession, RunKey]] = []
        for session, chunk in items:
            key = (chunk.run.run_id, chunk.run.attempt)
            stored = session.output.get(key)
            if stored is None:
                taken_over.append((session, key))
            else:
                stored.add(chunk.sequence)
            acks[(id(session), key)] = (session, chunk.run)
        await self._learn_stored_output(dict.fromkeys(taken_over))
        for session, ref in acks.values():
            stored = session.output.get((ref.run_id, ref.attempt))
            if stored is not None:
                session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=stored.upto)))

    async def _learn_stored_output(self, runs: Iterable[tuple[AgentSession, RunKey]]) -> None:
        """Asks the database what output is stored of runs this stream took over from an earlier one."""
        runs = list(runs)
        answers = await asyncio.gather(*(self.store.highest_contiguous(*key) for _, key in runs),
                                       return_exceptions=True)
        for (session, key), answer in zip(runs, answers):
            if isinstance(answer, BaseException):
                self._failed(session, "reading stored output", answer)
            elif key in session.held:
                session.output[key] = StoredOutput(answer)

    async def _finished(self, items: list[tuple[AgentSession, agent_pb2.Finished]]) -> None:
        items = list({(id(s), f.run.run_id, f.run.attempt): (s, f) for s, f in self._held(items)}.values())
        stopped = [(s, f) for s, f in items if (f.run.run_id, f.run.attempt) in s.stopping]
        for session, done in stopped:
            session.forget((done.run.run_id, done.run.attempt))  # stopped: nothing of it is the run's
            session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=done.run, sequence=done.last_sequence,
                                                                   finished=True)))
        if stopped:
            self._freed({session.key for session, _ in stopped})
        items = [(s, f) for s, f in items if (f.run.run_id, f.run.attempt) in s.held]
        short = [(s, f) for s, f in items if f.last_sequence > self._stored(s, f.run)]
        if short:  # what this stream knows is short: the database has the last word
            await self._learn_stored_output((s, (f.run.run_id, f.run.attempt)) for s, f in short)
        complete = []
        for session, done in items:
            ref = done.run
            stored = self._stored(session, ref)
            if stored >= done.last_sequence:
                complete.append((session, done))
            elif not session.closed:
                # Output is missing: not final yet. Ack what is stored and end the stream; the agent
                # reconnects and resends every unacked chunk before its Finished.
                log.warning("run %s attempt %d finished with chunks %d..%d missing; asking for them again",
                            ref.run_id, ref.attempt, stored + 1, done.last_sequence)
                session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=stored)))
                session.close()
        if not complete:
            return
        results = await self._all_or_each(self.engine.end_attempts, [Ending(
            d.run.run_id, d.run.attempt, domain.agent_outcome(d.exit_code, d.error, d.timed_out, d.canceled),
            device_key=s.key) for s, d in complete])
        woken = set()
        for (session, done), result in zip(complete, results):
            if isinstance(result, BaseException):
                self._failed(session, "a finish", result)
                continue
            ref = done.run
            session.forget((ref.run_id, ref.attempt))
            self.heartbeats.pop(ref.run_id, None)
            session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=done.last_sequence,
                                                                   finished=True)))
            woken.add(session.key)
        if woken:
            self._freed(woken)

    @staticmethod
    def _stored(session: AgentSession, ref: agent_pb2.RunRef) -> int:
        stored = session.output.get((ref.run_id, ref.attempt))
        return stored.upto if stored is not None else 0

    # -- presence and credentials ---------------------------------------------------------------

    def _presence(self, session: AgentSession, online: bool, agent_version: str = "",
                  facts: dict[str, str] | None = None, stream_opened: bool = False,
                  seen_at: Timestamp | None = None) -> None:
        """Queues a presence change; the presence loop sends the queue in one call."""
        key = (session.tenant_id, session.device_id)
        change = PresenceChange(tenant_id=session.tenant_id, device_id=session.device_id, online=online,
                                agent_version=agent_version, seen_at=seen_at or timestamp(self.clock.now()),
                                stream_opened=stream_opened and online)
        if facts:
            change.facts.update(facts)
        earlier = self._presence_queue.get(key)
        if earlier is not None and online and earlier.online:  # keep what a Hello said until it is sent
            change.agent_version = change.agent_version or earlier.agent_version
            change.stream_opened = change.stream_opened or earlier.stream_opened
            if not change.facts:
                change.facts.update(earlier.facts)
        self._presence_queue[key] = change

    def refresh_seen(self) -> int:
        """Queues a refresh of last_seen_at (one moment for all) for every stream that beat since the
        last refresh; answers how many."""
        now = timestamp(self.clock.now())
        beating = [s for s in self.sessions.values() if s.beating]
        for session in beating:
            session.beating = False
            self._presence(session, online=True, seen_at=now)
        return len(beating)

    async def flush_presence(self, release: bool = False) -> None:
        """Sends the queued presence changes in ReportPresence calls of PRESENCE_BATCH (those not sent are
        kept for the next try on failure), and with them renews this replica's presence lease: with nothing queued, once a third of the
        lease has passed. `release`: this replica stops; its devices go offline at once."""
        loop_time = asyncio.get_running_loop().time()
        due = self._presence_renewed is None or loop_time - self._presence_renewed >= self.presence_lease_secs / 3
        if not self._presence_queue and not due and not release:
            return
        batch, self._presence_queue = self._presence_queue, {}
        changes = list(batch.items())
        for start in range(0, max(1, len(changes)), PRESENCE_BATCH):  # at least one call: the renewal
            sent = asyncio.get_running_loop().time()
            try:
                resync = await self.peers.report_presence([c for _, c in changes[start:start + PRESENCE_BATCH]],
                                                          replica_id=self.replica_id,
                                                          lease_secs=self.presence_lease_secs, release=release)
            except Exception:  # retried with the next flush
                log.warning("could not report the presence of %d devices", len(changes) - start)
                for key, change in changes[start:]:
                    self._presence_queue.setdefault(key, change)
                return
            self._presence_renewed = sent
            if resync and not release and self.sessions:
                log.warning("this replica's presence lease had run out: reporting its %d streams again",
                            len(self.sessions))
                for session in self.sessions.values():
                    self._presence(session, online=True, stream_opened=True)

    async def _presence_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(PRESENCE_FLUSH_SECS)
                loop_time = asyncio.get_running_loop().time()
                if loop_time - self._seen_refreshed >= SEEN_REFRESH_SECS:
                    self._seen_refreshed = loop_time
                    self.refresh_seen()
                await self.flush_presence()
        finally:  # stopping: one last try, briefly, which releases this replica's devices
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.flush_presence(release=True)), 1.0)

    async def validate_credentials(self) -> int:
        """Learns the credential revision; when it moved, checks the credential of every stream not yet
        checked at it and ends the streams whose credential no longer holds. Answers how many ended."""
        ended = 0
        revision = self.credential_revision
        stale = self._unchecked(revision)  # streams that connected while the revision last moved
        while True:
            batch, stale = stale[:VALIDATE_BATCH], stale[VALIDATE_BATCH:]
            invalid, current = await self.peers.invalid_agents([
                devices_pb2.AgentCredential(tenant_id=s.tenant_id, device_id=s.device_id,
                                            credential_sha256=s.credential_sha256) for s in batch])
            ended += self._close_invalid(batch, invalid, current)
            if current > revision:  # credentials changed: every stream checked before then is checked again
                revision = current
                stale = self._unchecked(revision)
            if not stale:
                break
        self.credential_revision = revision
        return ended

    def _unchecked(self, revision: int) -> list[AgentSession]:
        return [s for s in self.sessions.values() if s.checked_revision < revision and not s.closed]

    def _close_invalid(self, batch: list[AgentSession], invalid: Iterable[devices_pb2.AgentCredential],
                       revision: int) -> int:
        gone = {(a.tenant_id, a.device_id, a.credential_sha256) for a in invalid}
        ended = 0
        for session in batch:
            key = (session.device_id, session.credential_sha256)
            if (session.tenant_id, session.device_id, session.credential_sha256) in gone:
                log.info("closing the stream of %s: its credential was revoked", session.key)
                self._verified.pop(key, None)
                session.revoked = True
                session.close()
                ended += 1
            else:
                session.checked_revision = revision
                self._remember(key, session.tenant_id, revision)
        return ended

    async def _validate_loop(self) -> None:
        while True:
            await asyncio.sleep(VALIDATE_SECS)
            try:
                await self.validate_credentials()
            except Exception:
                log.warning("could not validate agent credentials", exc_info=True)

    def take_heartbeats(self) -> dict[str, datetime]:
        beats, self.heartbeats = self.heartbeats, {}
        return beats
