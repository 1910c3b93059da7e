"""A fleet simulator: thousands of simulated agents from one process, on a few shared channels.

A simulated agent speaks the agent protocol but runs nothing: it answers an Assign at once with
Accept, Started, one output chunk (`simulated: <command>`, or `simulated <handler>: <inputs>` for a
run of one of the fleet's `handlers`, e.g. drones flying `mission`s) and Finished; a run of a
handler it does not have is rejected, as a real agent would. Like a real agent it keeps
Output and Finished until acked and resends them after reconnecting. Each agent is one coroutine
that reads its stream and writes its answers; one more coroutine sends every agent's heartbeats."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc

from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2
from services.common.channels import CHANNEL_OPTIONS

from .runtime import AGENT_VERSION, DEFAULT_HEARTBEAT_SECS, Backoff, RunKey, key_of, missing_handler, timestamp_now

log = logging.getLogger(__name__)

ExitCode = Callable[[agent_pb2.Assign], int]


def succeed(assign: agent_pb2.Assign) -> int:
    return 0


@dataclass(eq=False, slots=True)
class SimAgent:
    device_id: str
    credential: str
    # Unacked Output and Finished messages per run, in order; a run leaves on Ack(finished).
    outbox: dict[RunKey, list[agent_pb2.AgentMessage]] = field(default_factory=dict)
    call: grpc.aio.StreamStreamCall | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one write at a time on the call
    backoff: Backoff = field(default_factory=Backoff)

    def held(self) -> list[agent_pb2.RunRef]:
        return [agent_pb2.RunRef(run_id=run_id, attempt=attempt) for run_id, attempt in self.outbox]


class Fleet:
    """Simulated agents for `devices` ((device_id, credential) pairs). `await run()` until `await stop()`."""

    def __init__(self, server: str, devices: Iterable[tuple[str, str]], *, capacity: int = 1, channels: int = 1,
                 exit_code: ExitCode = succeed, record_assign_times: bool = False,
                 heartbeat_interval: float | None = None, handlers: Iterable[str] = ()) -> None:
        self.server = server
        self.handlers = frozenset(handlers)
        self.agents = [SimAgent(device_id, credential) for device_id, credential in devices]
        self.capacity = capacity
        self.channels = max(1, channels)
        self.exit_code = exit_code
        self.record_assign_times = record_assign_times
        self.heartbeat_interval = heartbeat_interval  # seconds; None: what Welcome says
        self.connected = 0  # streams welcomed and still open
        self.assigned = 0
        self.completed = 0
        self.assign_times: dict[RunKey, float] = {}  # time.time() each Assign arrived, if recorded
        self._welcome_interval = DEFAULT_HEARTBEAT_SECS
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        # A local subchannel pool per channel, so that several channels are several connections.
        options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(self.server, options=options) for _ in range(self.channels)]
        stubs = [agent_pb2_grpc.AgentServiceStub(channel) for channel in channels]
        self._tasks = [asyncio.create_task(self._hold(agent, stubs[i % len(stubs)]))
                       for i, agent in enumerate(self.agents)]
        self._tasks.append(asyncio.create_task(self._beat()))
        try:
            await asyncio.wait(self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for channel in channels:
                await channel.close()
            self._stopped.set()

    async def stop(self) -> None:
        """Closes every stream; returns once `run()` has."""
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            await self._stopped.wait()

    def drop_all(self) -> None:
        """Cuts every open stream; each agent reconnects after its backoff (a reconnect storm)."""
        for agent in self.agents:
            if agent.call is not None:
                agent.call.cancel()

    # -- one agent -----------------------------------------------------------------------

    async def _hold(self, agent: SimAgent, stub: agent_pb2_grpc.AgentServiceStub) -> None:
        while True:
            try:
                await self._session(agent, stub)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # stop()
                # else drop_all() cancelled the call
            except Exception as error:  # any stream error: reconnect
                log.debug("stream of %s failed: %r", agent.device_id, error)
            await asyncio.sleep(agent.backoff.next())

    async def _session(self, agent: SimAgent, stub: agent_pb2_grpc.AgentServiceStub) -> None:
        call = agent.call = stub.Connect()
        welcomed = False
        try:
            async with agent.lock:
                await call.write(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
                    device_id=agent.device_id, credential=agent.credential, agent_version=AGENT_VERSION,
                    capacity=self.capacity, held_runs=agent.held(), facts={"simulated": "true"})))
                for messages in agent.outbox.values():
                    for message in messages:
                        await call.write(message)
            async for message in call:
                kind = message.WhichOneof("body")
                if kind == "welcome":
                    agent.backoff.reset()
                    self._welcome_interval = message.welcome.heartbeat_interval_ms / 1000 or DEFAULT_HEARTBEAT_SECS
                    if not welcomed:
                        welcomed = True
                        self.connected += 1
                elif kind == "assign":
                    await self._execute(agent, call, message.assign)
                elif kind == "ack":
                    self._ack(agent, message.ack)
                # Cancel needs nothing: a simulated run has finished by the time any Cancel arrives.
        finally:
            if welcomed:
                self.connected -= 1
            agent.call = None
            call.cancel()

    async def _execute(self, agent: SimAgent, call: grpc.aio.StreamStreamCall, assign: agent_pb2.Assign) -> None:
        key = key_of(assign.run)
        if key in agent.outbox:
            return  # a repeated Assign: already done, its messages wait for their ack
        self.assigned += 1
        if self.record_assign_times:
            self.assign_times[key] = time.time()
        ref = assign.run
        refusal = ""
        if assign.handler:
            if assign.handler not in self.handlers:
                refusal = missing_handler(assign.handler)
            line = f"simulated {assign.handler}: {json.dumps(dict(assign.inputs), sort_keys=True)}"
        else:
            refusal = "" if assign.command.strip() else "empty command"
            line = f"simulated: {assign.command}"
        if refusal:
            replies = [agent_pb2.AgentMessage(reject=agent_pb2.Reject(run=ref, reason=refusal))]
        else:
            kept = agent.outbox[key] = [
                agent_pb2.AgentMessage(output=agent_pb2.OutputChunk(
                    run=ref, sequence=1, stream=runs_pb2.OUTPUT_STREAM_STDOUT, data=f"{line}\n".encode())),
                agent_pb2.AgentMessage(finished=agent_pb2.Finished(
                    run=ref, exit_code=self.exit_code(assign), last_sequence=1)),
            ]
            self.completed += 1
            replies = [agent_pb2.AgentMessage(accept=agent_pb2.Accept(run=ref)),
                       agent_pb2.AgentMessage(started=agent_pb2.Started(run=ref, started_at=timestamp_now())), *kept]
        async with agent.lock:
            for message in replies:
                await call.write(message)

    @staticmethod
    def _ack(agent: SimAgent, ack: agent_pb2.Ack) -> None:
        key = key_of(ack.run)
        if ack.finished:
            agent.outbox.pop(key, None)
        elif key in agent.outbox:
            agent.outbox[key] = [m for m in agent.outbox[key]
                                 if not (m.HasField("output") and m.output.sequence <= ack.sequence)]

    # -- heartbeats ----------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval or self._welcome_interval)
            # A failed write is the agent's own coroutine's to notice and reconnect.
            await asyncio.gather(*(self._heartbeat(agent) for agent in self.agents if agent.call is not None),
                                 return_exceptions=True)

    @staticmethod
    async def _heartbeat(agent: SimAgent) -> None:
        async with agent.lock:
            if agent.call is not None:
                await agent.call.write(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(runs=agent.held())))
