"""The agent: holds one `AgentService.Connect` stream and runs what it is assigned as local processes.

Output and Finished messages stay in a per-run outbox until the server acks them, and are
resent after every reconnect: delivery is at least once, the server dedupes by sequence.
Processes keep running while the stream is down.

A new device may connect with an enrolment token instead of a credential: the server registers it
and answers its credential in Welcome; `on_enrolled` is called with it (the CLI keeps it in a file)
and every later connect uses it. A refusal that cannot heal by retrying (UNAUTHENTICATED: wrong or
revoked credential, used-up token; ALREADY_EXISTS: enrolling an id that is taken) ends `run()`
with `refused` set, instead of reconnecting forever.

Handlers: a job may name a handler (e.g. `mission`) instead of carrying a command. The agent runs
the shell command it was configured with for that name (`handlers`, from `--handler NAME=COMMAND`),
the run's inputs in its environment as JOBLINE_INPUT_<NAME>; an agent without that handler rejects
the run with the reason `missing_handler(name)`, and the run fails with it."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
import re
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from jobline.runs.v1 import agent_pb2, agent_pb2_grpc, runs_pb2
from services.common.channels import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

AGENT_VERSION = "jobline-agent/0.1"
CHUNK_BYTES = 64 * 1024
KILL_GRACE_SECS = 5.0
DEFAULT_HEARTBEAT_SECS = 5.0
TIMEOUT_EXIT_CODE = 124  # like coreutils `timeout`, for a timed-out command that exited by itself
FATAL_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED)

RunKey = tuple[str, int]  # (run_id, attempt)


class Backoff:
    """Exponential reconnect delays with jitter: 0.2 s doubling to 10 s, each drawn from [d/2, d]."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, delay * 2)
        return random.uniform(delay / 2, delay)


def key_of(ref: agent_pb2.RunRef) -> RunKey:
    return ref.run_id, ref.attempt


def machine_facts() -> dict[str, str]:
    return {"hostname": socket.gethostname(), "os": platform.system().lower(), "arch": platform.machine(),
            "os_release": platform.release()}


def missing_handler(name: str) -> str:
    """Why an agent rejects a run of a handler it was not configured with."""
    return f"no handler {name!r} on this agent"


def input_env(name: str) -> str:
    """`JOBLINE_INPUT_<NAME>`: the input's name upper-cased, anything but [A-Z0-9_] made `_`."""
    return "JOBLINE_INPUT_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())


async def _drain(queue: asyncio.Queue[agent_pb2.AgentMessage]) -> AsyncIterator[agent_pb2.AgentMessage]:
    while True:
        yield await queue.get()


@dataclass(eq=False)
class Run:
    """One assigned (run, attempt): its process and the messages the server has not acked."""

    ref: agent_pb2.RunRef
    outbox: deque[agent_pb2.AgentMessage] = field(default_factory=deque)
    sequence: int = 0
    process: asyncio.subprocess.Process | None = None
    finished: bool = False
    canceled: bool = False
    timed_out: bool = False
    accepted_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] = field(init=False)


class Agent:
    """A device's agent. `await run()` holds the stream (reconnecting) until `await stop()`."""

    def __init__(self, server: str, device_id: str, credential: str, capacity: int = 4,
                 heartbeat_interval: float | None = None, *, enrollment_token: str = "", device_name: str = "",
                 on_enrolled: Callable[[str], None] | None = None, handlers: Mapping[str, str] | None = None,
                 kill_grace: float = KILL_GRACE_SECS) -> None:
        self.server = server
        self.handlers = dict(handlers or {})  # handler name -> the shell command that runs it
        self.device_id = device_id
        self.credential = credential
        self.enrollment_token = enrollment_token
        self.device_name = device_name
        self.on_enrolled = on_enrolled
        self.refused = ""  # why the server refused this agent for good, once it has
        self.capacity = capacity
        self.kill_grace = kill_grace  # seconds from SIGTERM to SIGKILL on a graceful cancel or a timeout
        self.heartbeat_interval = heartbeat_interval  # seconds; None: what Welcome says
        self._runs: dict[RunKey, Run] = {}
        self._queue: asyncio.Queue[agent_pb2.AgentMessage] | None = None  # the live stream's, if any
        self._holder: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return sum(not run.finished for run in self._runs.values())

    async def run(self) -> None:
        channel = grpc.aio.insecure_channel(self.server, options=CHANNEL_OPTIONS)
        self._holder = asyncio.create_task(self._hold(agent_pb2_grpc.AgentServiceStub(channel)))
        try:
            await asyncio.wait([self._holder])
        finally:
            self._stopping = True
            self._holder.cancel()
            await self._kill_all()
            await channel.close()
            self._stopped.set()

    async def stop(self) -> None:
        """Closes the stream and kills every process still running; returns once `run()` has."""
        if self._holder is not None:
            self._holder.cancel()
            await self._stopped.wait()

    # -- the stream ----------------------------------------------------------------------

    async def _hold(self, stub: agent_pb2_grpc.AgentServiceStub) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._session(stub, backoff)
                log.warning("the server closed the stream; reconnecting")
            except grpc.aio.AioRpcError as error:
                if error.code() in FATAL_CODES:
                    self.refused = f"{error.code().name}: {error.details()}"
                    log.error("the server refused this agent: %s", self.refused)
                    return
                log.warning("stream to %s failed: %s %s", self.server, error.code().name, error.details())
            except Exception:  # a bug handling one message must not end the agent
                log.exception("stream to %s failed", self.server)
            await asyncio.sleep(backoff.next())

    async def _session(self, stub: agent_pb2_grpc.AgentServiceStub, backoff: Backoff) -> None:
        """One stream: Hello, then everything unacked, then live traffic until it ends."""
        queue: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        queue.put_nowait(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            device_id=self.device_id, credential=self.credential, agent_version=AGENT_VERSION,
            capacity=self.capacity, held_runs=self._held(), facts=machine_facts(),
            enrollment_token="" if self.credential else self.enrollment_token, device_name=self.device_name)))
        for run in self._runs.values():
            for message in run.outbox:
                queue.put_nowait(message)
        self._queue = queue
        call = stub.Connect(_drain(queue))
        beat: asyncio.Task[None] | None = None
        try:
            async for message in call:
                if message.WhichOneof("body") == "welcome":
                    backoff.reset()
                    if message.welcome.HasField("credential"):
                        self._enrolled(message.welcome.credential)
                    if beat is not None:
                        beat.cancel()
                    interval = self.heartbeat_interval or message.welcome.heartbeat_interval_ms / 1000
                    beat = asyncio.create_task(self._beat(interval or DEFAULT_HEARTBEAT_SECS))
                else:
                    self._handle(message)
        finally:
            self._queue = None
            if beat is not None:
                beat.cancel()
            call.cancel()

    def _enrolled(self, credential: str) -> None:
        self.credential = credential
        self.enrollment_token = ""
        log.info("device %s enrolled", self.device_id)
        if self.on_enrolled is not None:
            self.on_enrolled(credential)

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._send(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(runs=self._held())))

    def _held(self) -> list[agent_pb2.RunRef]:
        """Runs not yet forgotten: running, or finished with the Finished unacked."""
        return [run.ref for run in self._runs.values()]

    def _send(self, message: agent_pb2.AgentMessage) -> None:
        if self._queue is not None:
            self._queue.put_nowait(message)

    def _post(self, run: Run, message: agent_pb2.AgentMessage) -> None:
        """Sends a message that must survive reconnects until acked."""
        run.outbox.append(message)
        self._send(message)

    def _handle(self, message: agent_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "assign":
            self._assign(message.assign)
        elif kind == "cancel":
            run = self._runs.get(key_of(message.cancel.run))
            if run is not None and not run.finished:
                run.canceled = True
                self._spawn(self._terminate(run, force=message.cancel.force))
        elif kind == "ack":
            self._ack(message.ack)

    def _ack(self, ack: agent_pb2.Ack) -> None:
        run = self._runs.get(key_of(ack.run))
        if run is None:
            return
        if ack.finished:  # the server stored the outcome: forget the run (killing it if it still ran)
            del self._runs[key_of(ack.run)]
            self._signal(run, signal.SIGKILL)
            return
        outbox = run.outbox
        while outbox and outbox[0].HasField("output") and outbox[0].output.sequence <= ack.sequence:
            outbox.popleft()

    # -- runs ----------------------------------------------------------------------------

    def _assign(self, assign: agent_pb2.Assign) -> None:
        key = key_of(assign.run)
        if key in self._runs:
            return  # a repeated Assign for a run this agent already has
        if reason := self._refusal(assign):
            self._reject(assign.run, reason)
            return
        run = self._runs[key] = Run(agent_pb2.RunRef(run_id=assign.run.run_id, attempt=assign.run.attempt))
        run.task = asyncio.create_task(self._execute(run, assign))

    def _reject(self, ref: agent_pb2.RunRef, reason: str) -> None:
        log.info("run %s attempt %d rejected: %s", ref.run_id, ref.attempt, reason)
        self._send(agent_pb2.AgentMessage(reject=agent_pb2.Reject(run=ref, reason=reason)))

    def _refusal(self, assign: agent_pb2.Assign) -> str:
        """Why this agent cannot take the assignment ("" when it can)."""
        if assign.handler:
            if assign.handler not in self.handlers:
                return missing_handler(assign.handler)
        elif not assign.command.strip():
            return "empty command"
        if "\0" in assign.command:
            return "the command contains a NUL character"
        for name, value in assign.inputs.items():
            if "\0" in name or "\0" in value:
                return f"input {name.replace(chr(0), '?')!r} contains a NUL character"
        if self.running >= self.capacity:
            return f"at capacity ({self.capacity} running)"
        return ""

    async def _execute(self, run: Run, assign: agent_pb2.Assign) -> None:
        """Starts the process, then accepts the run; a command that cannot start is rejected with the reason."""
        env = {**os.environ, "JOBLINE_RUN_ID": run.ref.run_id, "JOBLINE_ATTEMPT": str(run.ref.attempt),
               **{input_env(name): value for name, value in assign.inputs.items()}}
        command = assign.command
        if assign.handler:
            command = self.handlers[assign.handler]
            env["JOBLINE_HANDLER"] = assign.handler
        try:
            process = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except (OSError, ValueError) as error:  # e.g. E2BIG: the command or its inputs are too long
            self._runs.pop(key_of(run.ref), None)
            run.finished = True
            self._reject(run.ref, f"could not start the command: {error}")
            return
        run.process = process
        self._send(agent_pb2.AgentMessage(accept=agent_pb2.Accept(run=run.ref)))
        if run.canceled or self._stopping:  # while the process was being started
            self._signal(run, signal.SIGKILL)
        self._send(agent_pb2.AgentMessage(started=agent_pb2.Started(run=run.ref, started_at=timestamp_now())))
        log.info("run %s attempt %d started: %s", run.ref.run_id, run.ref.attempt,
                 f"handler {assign.handler}" if assign.handler else command)
        timer = None
        if assign.timeout_secs > 0:
            timer = asyncio.get_running_loop().call_later(assign.timeout_secs, self._time_out, run)
        assert process.stdout is not None and process.stderr is not None
        try:
            await asyncio.gather(self._pump(run, process.stdout, runs_pb2.OUTPUT_STREAM_STDOUT),
                                 self._pump(run, process.stderr, runs_pb2.OUTPUT_STREAM_STDERR))
            code = await process.wait()
        except Exception as error:  # never leave the run unreported: kill what is left and say why
            log.exception("run %s attempt %d failed in the agent", run.ref.run_id, run.ref.attempt)
            self._signal(run, signal.SIGKILL)
            self._finish(run, -1, f"the agent failed running the command: {error}")
            return
        finally:
            if timer is not None:
                timer.cancel()
        if run.canceled or run.timed_out:
            # The shell is gone; whatever of its process group is left (children that ignored
            # SIGTERM or closed their output) goes with it.
            self._signal(run, signal.SIGKILL)
        if run.canceled:
            self._finish(run, code, "canceled")
        elif run.timed_out:
            self._finish(run, code if code < 0 else TIMEOUT_EXIT_CODE, f"timed out after {assign.timeout_secs} s")
        else:
            self._finish(run, code, "")

    async def _pump(self, run: Run, reader: asyncio.StreamReader, stream: runs_pb2.OutputStream) -> None:
        while data := await reader.read(CHUNK_BYTES):
            run.sequence += 1
            self._post(run, agent_pb2.AgentMessage(output=agent_pb2.OutputChunk(
                run=run.ref, sequence=run.sequence, stream=stream, data=data)))

    def _finish(self, run: Run, exit_code: int, error: str) -> None:
        run.finished = True
        if self._runs.get(key_of(run.ref)) is not run:
            return  # forgotten by an Ack(finished) while it ran
        log.info("run %s attempt %d finished: exit code %d%s (%.1f s)", run.ref.run_id, run.ref.attempt,
                 exit_code, f", {error}" if error else "", time.monotonic() - run.accepted_at)
        self._post(run, agent_pb2.AgentMessage(finished=agent_pb2.Finished(
            run=run.ref, exit_code=exit_code, error=error, last_sequence=run.sequence,
            timed_out=run.timed_out, canceled=run.canceled)))

    def _time_out(self, run: Run) -> None:
        run.timed_out = True
        self._spawn(self._terminate(run, force=False))

    async def _terminate(self, run: Run, force: bool) -> None:
        """Signals the run's process group: SIGKILL at once if forced, else SIGTERM and SIGKILL after a grace."""
        self._signal(run, signal.SIGKILL if force else signal.SIGTERM)
        if not force:
            done, _ = await asyncio.wait([run.task], timeout=self.kill_grace)
            if not done:
                self._signal(run, signal.SIGKILL)

    def _signal(self, run: Run, sig: signal.Signals) -> None:
        if run.process is None or run.finished:
            return
        try:
            os.killpg(run.process.pid, sig)  # start_new_session: the group id is the shell's pid
        except ProcessLookupError:
            pass

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _kill_all(self) -> None:
        """On stop: terminate every process, then stop waiting for their output."""
        running = [run for run in self._runs.values() if not run.finished]
        await asyncio.gather(*(self._terminate(run, force=False) for run in running))
        tasks = [run.task for run in running] + list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def timestamp_now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp
