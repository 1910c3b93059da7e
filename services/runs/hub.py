"""The agent hub: the device streams this replica holds, and dispatch of queued runs to them.

Runs are stored before they are assigned: the dispatcher claims queued rows with a
lease (compare-and-set in the database, so replicas never assign a run twice) and then
sends Assign on the device's stream. In-memory state here is only a cache of who is
connected and what they hold; it is rebuilt from agents' Hello messages.

Presence is batched: connects, disconnects and heartbeats queue a PresenceChange per device
(the latest wins) and one ReportPresence call carries them all every PRESENCE_FLUSH_SECS,
so a reconnect storm of thousands of agents costs a few calls, and REST shows a change within
about half a second.

Presence heals itself: every report names this replica and renews its presence lease (at least
every third of `presence_lease_secs`, even with nothing to report). A replica that dies (kill -9,
a lost machine) stops renewing; the devices service then marks its devices offline within
`presence_lease_secs` plus about a second. A replica whose lease ran out anyway (a long pause) is
told to resync and reports every stream it holds again; a stopping replica releases its devices.

Credential revocation: every VALIDATE_SECS the hub asks the devices service, in one
ValidateAgents call per 1000 streams, which of the credentials its streams connected with no
longer hold (revoked, rotated, device deleted). Those streams end with UNAUTHENTICATED. A revoked
device is therefore disconnected within VALIDATE_SECS + one RPC (about 1-1.5 s); new connects are
refused at once by AuthenticateAgent.

Enrolment: a Hello with an enrollment_token (and no credential) registers the device through
DeviceService.EnrollDevice; its Welcome carries the new credential, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta


from jobline.devices.v1 import devices_pb2
from jobline.devices.v1.devices_pb2 import PresenceChange
from jobline.jobs.v1.jobs_pb2 import Job
from jobline.runs.v1 import agent_pb2
from services.common.clock import Clock, as_utc
from services.common.errors import InvalidArgument, Unauthenticated
from services.common.secrets import secret_hash

from . import domain
from .engine import RunEngine, target_key
from .mapping import timestamp
from .peers import Peers
from .store import RunRow, RunStore

log = logging.getLogger(__name__)

LEASE_SECS = 30
RESCAN_SECS = 1.0
PRESENCE_FLUSH_SECS = 0.2
VALIDATE_SECS = 1.0
VALIDATE_BATCH = 1000
SEEN_REFRESH_SECS = 5.0  # how often a connected device's last_seen_at moves forward
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


def queued_since(row: RunRow) -> datetime:
    """When the run became dispatchable: the latest of its creation, its scheduled time and its retry time."""
    moments = [as_utc(m) for m in (row.created_at, row.scheduled_at, row.next_retry_at) if m is not None]
    return max(moments)


class AgentSession:
    """One connected agent: its outbound queue, its capacity and the runs it holds."""

    def __init__(self, tenant_id: str, device_id: str, capacity: int, credential_sha256: str = "") -> None:
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.key = target_key(tenant_id, device_id)
        self.capacity = max(1, capacity)
        self.held: set[RunKey] = set()
        self.timeouts: dict[RunKey, int] = {}  # timeout_secs of the runs assigned and not yet accepted
        self.credential_sha256 = credential_sha256
        self.revoked = False
        self.seen_reported_at = 0.0  # loop time of the last presence queued for this stream
        self._outbox: asyncio.Queue[agent_pb2.ServerMessage | None] = asyncio.Queue()

    @property
    def free(self) -> int:
        return self.capacity - len(self.held)

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self._outbox.put_nowait(message)

    def close(self) -> None:
        self._outbox.put_nowait(None)

    async def messages(self) -> AsyncIterator[agent_pb2.ServerMessage]:
        while (message := await self._outbox.get()) is not None:
            yield message


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
        self._scan_all = False
        self._wakeup = asyncio.Event()
        self._snapshots: dict[str, Job] = {}
        self._presence_queue: dict[tuple[str, str], PresenceChange] = {}
        self._presence_flushed = asyncio.Event()
        self.presence_lease_secs = max(1, presence_lease_secs)
        self._presence_renewed: float | None = None  # loop time of the last report that reached the devices service
        self.dispatch_latency = LatencyHistogram()
        engine.dispatchers.append(self)

    # -- dispatch ------------------------------------------------------------------------

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        if target_keys is None:
            self._scan_all = True
        else:
            self._pending.update(k for k in target_keys if k in self.sessions)
        self._wakeup.set()

    async def run_dispatcher(self) -> None:
        """Forever: dispatch to the devices named by wake-ups (all of them on a full scan); also runs
        the presence and credential loops, which end with it."""
        helpers = [asyncio.create_task(self._presence_loop()), asyncio.create_task(self._validate_loop())]
        try:
            await self._dispatch_loop()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _dispatch_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=RESCAN_SECS)
            except TimeoutError:  # a periodic full scan catches what no wake-up named
                self._scan_all = True
            self._wakeup.clear()
            keys = list(self.sessions) if self._scan_all else list(self._pending)
            self._pending.clear()
            self._scan_all = False
            try:
                await self.dispatch(keys)
            except Exception:  # keep dispatching whatever one batch hit
                log.exception("dispatch failed")

    async def dispatch(self, keys: Iterable[str]) -> int:
        """Claims queued runs for these devices up to their free capacity and assigns them."""
        assigned = 0
        while True:
            sessions = {k: s for k in keys if (s := self.sessions.get(k)) is not None and s.free > 0}
            if not sessions:
                return assigned
            rows = await self.store.queued_for(list(sessions), sum(s.free for s in sessions.values()))
            picked: list[RunRow] = []
            room = {k: s.free for k, s in sessions.items()}
            for row in rows:
                if room[row.target_key] > 0:
                    room[row.target_key] -= 1
                    picked.append(row)
            if not picked:
                return assigned
            now = self.clock.now()
            claimed = await self.store.claim([r.id for r in picked], self.replica_id, now,
                                             now + timedelta(seconds=LEASE_SECS))
            for row in picked:
                session = self.sessions.get(row.target_key)
                if row.id not in claimed:
                    continue
                if session is None:  # the agent left while we claimed: back to the queue
                    await self.engine.requeue(row.id, row.attempt)
                    continue
                session.held.add((row.id, row.attempt))
                session.timeouts[(row.id, row.attempt)] = row.timeout_secs
                session.send(agent_pb2.ServerMessage(assign=self._assign(row, now)))
                self.dispatch_latency.observe((self.clock.now() - queued_since(row)).total_seconds())
                assigned += 1
            keys = [k for k in sessions if room[k] == 0 and self.sessions.get(k) and self.sessions[k].free > 0]

    def _assign(self, row: RunRow, now: datetime) -> agent_pb2.Assign:
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
        hello = first.hello
        welcome = agent_pb2.Welcome(heartbeat_interval_ms=self.heartbeat_interval_ms)
        if hello.enrollment_token and not hello.credential:
            device = await self._enroll(hello)
            credential = welcome.credential = device.credential
        else:
            device = await self.peers.authenticate_agent(hello.device_id, hello.credential)
            credential = hello.credential
        session = AgentSession(device.tenant_id, device.id, hello.capacity or 1, secret_hash(credential))
        previous = self.sessions.pop(session.key, None)
        if previous is not None:
            previous.close()
        self._presence(session, online=True, agent_version=hello.agent_version, facts=dict(hello.facts),
                       stream_opened=True)
        session.send(agent_pb2.ServerMessage(welcome=welcome))
        # Reconcile before the session is dispatchable, so nothing is assigned to it mid-way.
        await self._reconcile(session, {(r.run_id, r.attempt) for r in hello.held_runs})
        self.sessions[session.key] = session
        self.wake([session.key])
        reader = asyncio.create_task(self._read(session, requests))
        try:
            async for message in session.messages():
                yield message
        finally:
            reader.cancel()
            if self.sessions.get(session.key) is session:
                del self.sessions[session.key]
                self._presence(session, online=False)
        if session.revoked:
            raise Unauthenticated("the device's credential was revoked")

    async def _enroll(self, hello: agent_pb2.Hello) -> devices_pb2.Device:
        return await self.peers.enroll_device(devices_pb2.EnrollDeviceRequest(
            token=hello.enrollment_token, device_id=hello.device_id, name=hello.device_name,
            facts=hello.facts, agent_version=hello.agent_version))

    async def _reconcile(self, session: AgentSession, held: set[RunKey]) -> None:
        """Matches what the agent says it holds with what the database says is on the device."""
        on_device = {(r.id, r.attempt): r for r in await self.store.on_device(session.key)}
        for key, row in on_device.items():
            if key in held:
                session.held.add(key)
                if row.status == "dequeued":  # its Accept was lost with the previous stream
                    await self.engine.accept(row.id, row.attempt, row.timeout_secs)
            elif row.status == "dequeued":
                await self.engine.requeue(row.id, row.attempt)
            else:
                await self.engine.end_attempt(row.id, row.attempt, domain.Outcome("crashed", "the agent lost the run"))
        for run_id, attempt in held - set(on_device):
            # Held runs that ended here (canceled, crashed): tell the agent to stop; it will report and be acked.
            row = await self.store.get_any(run_id)
            if row is not None and row.target_key == session.key:
                session.held.add((run_id, attempt))
                session.send(agent_pb2.ServerMessage(cancel=agent_pb2.Cancel(
                    run=agent_pb2.RunRef(run_id=run_id, attempt=attempt), force=True)))

    async def _read(self, session: AgentSession, requests: AsyncIterator[agent_pb2.AgentMessage]) -> None:
        try:
            async for message in requests:
                await self._handle(session, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("agent stream of %s failed", session.key)
        finally:
            session.close()

    async def _handle(self, session: AgentSession, message: agent_pb2.AgentMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            now = self.clock.now()
            for ref in message.heartbeat.runs:
                if (ref.run_id, ref.attempt) in session.held:
                    self.heartbeats[ref.run_id] = now
            if asyncio.get_running_loop().time() - session.seen_reported_at >= SEEN_REFRESH_SECS:
                self._presence(session, online=True)
            return
        ref = getattr(message, kind).run
        key = (ref.run_id, ref.attempt)
        if key not in session.held:
            return  # not this device's run, or long forgotten: ignore
        if kind == "accept":
            if not await self.engine.accept(ref.run_id, ref.attempt, session.timeouts.pop(key, 0)):
                session.send(agent_pb2.ServerMessage(cancel=agent_pb2.Cancel(run=ref, force=True)))
        elif kind == "reject":
            session.held.discard(key)
            session.timeouts.pop(key, None)
            reason = message.reject.reason
            if reason.startswith("at capacity"):
                # The agent counts more runs than the hub does (it still finishes one the hub forgot):
                # not the run's fault. Back to the queue; the next Finished wakes dispatch again.
                await self.engine.requeue(ref.run_id, ref.attempt)
                return
            await self.engine.end_attempt(ref.run_id, ref.attempt, domain.Outcome(
                "failed", f"rejected by the agent: {reason}", retryable=False))
            self.wake([session.key])
        elif kind == "output":
            chunk = message.output
            await self.store.add_chunks([dict(run_id=ref.run_id, attempt=ref.attempt, sequence=chunk.sequence,
                                              stream=chunk.stream, data=chunk.data, created_at=self.clock.now())])
            stored = await self.store.highest_contiguous(ref.run_id, ref.attempt)
            session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=stored)))
        elif kind == "finished":
            done = message.finished
            if done.last_sequence > 0:
                stored = await self.store.highest_contiguous(ref.run_id, ref.attempt)
                if stored < done.last_sequence:
                    # Output is missing: not final yet. Ack what is stored and end the stream; the agent
                    # reconnects and resends every unacked chunk before its Finished.
                    log.warning("run %s attempt %d finished with chunks %d..%d missing; asking for them again",
                                ref.run_id, ref.attempt, stored + 1, done.last_sequence)
                    session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=stored)))
                    session.close()
                    return
            await self.engine.end_attempt(ref.run_id, ref.attempt, domain.agent_outcome(
                done.exit_code, done.error, done.timed_out, done.canceled))
            session.held.discard(key)
            self.heartbeats.pop(ref.run_id, None)
            session.send(agent_pb2.ServerMessage(ack=agent_pb2.Ack(run=ref, sequence=done.last_sequence, finished=True)))
            self.wake([session.key])

    # -- presence and credentials ---------------------------------------------------------------

    def _presence(self, session: AgentSession, online: bool, agent_version: str = "",
                  facts: dict[str, str] | None = None, stream_opened: bool = False) -> None:
        """Queues a presence change; the presence loop sends the queue in one call."""
        session.seen_reported_at = asyncio.get_running_loop().time()
        key = (session.tenant_id, session.device_id)
        change = PresenceChange(tenant_id=session.tenant_id, device_id=session.device_id, online=online,
                                agent_version=agent_version, seen_at=timestamp(self.clock.now()), facts=facts or {},
                                stream_opened=stream_opened and online)
        earlier = self._presence_queue.get(key)
        if earlier is not None and online and earlier.online:  # keep what a Hello said until it is sent
            change.agent_version = change.agent_version or earlier.agent_version
            change.stream_opened = change.stream_opened or earlier.stream_opened
            if not change.facts:
                change.facts.update(earlier.facts)
        self._presence_queue[key] = change

    async def flush_presence(self, release: bool = False) -> None:
        """Sends the queued presence changes in one ReportPresence call (kept for the next try on failure),
        and with them renews this replica's presence lease: with nothing queued, once a third of the
        lease has passed. `release`: this replica stops; its devices go offline at once."""
        loop_time = asyncio.get_running_loop().time()
        due = self._presence_renewed is None or loop_time - self._presence_renewed >= self.presence_lease_secs / 3
        if not self._presence_queue and not due and not release:
            return
        batch, self._presence_queue = self._presence_queue, {}
        try:
            resync = await self.peers.report_presence(list(batch.values()), replica_id=self.replica_id,
                                                      lease_secs=self.presence_lease_secs, release=release)
        except Exception:  # retried with the next flush
            log.warning("could not report the presence of %d devices", len(batch))
            for key, change in batch.items():
                self._presence_queue.setdefault(key, change)
            return
        self._presence_renewed = loop_time
        if resync and not release and self.sessions:
            log.warning("this replica's presence lease had run out: reporting its %d streams again", len(self.sessions))
            for session in self.sessions.values():
                self._presence(session, online=True, stream_opened=True)

    async def _presence_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(PRESENCE_FLUSH_SECS)
                await self.flush_presence()
        finally:  # stopping: one last try, briefly, which releases this replica's devices
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.flush_presence(release=True)), 1.0)

    async def validate_credentials(self) -> int:
        """Ends the streams whose credential no longer holds; answers how many."""
        sessions = list(self.sessions.values())
        ended = 0
        for start in range(0, len(sessions), VALIDATE_BATCH):
            batch = sessions[start:start + VALIDATE_BATCH]
            answer = await self.peers.invalid_agents([
                devices_pb2.AgentCredential(tenant_id=s.tenant_id, device_id=s.device_id,
                                            credential_sha256=s.credential_sha256) for s in batch])
            invalid = {(a.tenant_id, a.device_id, a.credential_sha256) for a in answer}
            for session in batch:
                if (session.tenant_id, session.device_id, session.credential_sha256) in invalid:
                    log.info("closing the stream of %s: its credential was revoked", session.key)
                    session.revoked = True
                    session.close()
                    ended += 1
        return ended

    async def _validate_loop(self) -> None:
        while True:
            await asyncio.sleep(VALIDATE_SECS)
            if not self.sessions:
                continue
            try:
                await self.validate_credentials()
            except Exception:
                log.warning("could not validate agent credentials", exc_info=True)

    def take_heartbeats(self) -> dict[str, datetime]:
        beats, self.heartbeats = self.heartbeats, {}
        return beats

