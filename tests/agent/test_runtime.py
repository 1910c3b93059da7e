"""The agent against a scripted server: execution, cancel, timeout, capacity, redelivery."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator

import pytest

from agent.runtime import AGENT_VERSION, Agent
from jobline.runs.v1 import agent_pb2, runs_pb2

from .conftest import Connection, FakeAgentService, ref


@pytest.fixture
async def agent(fake: tuple[FakeAgentService, str]) -> AsyncIterator[Agent]:
    agent = Agent(fake[1], "dev-1", "secret", capacity=2)
    task = asyncio.create_task(agent.run())
    yield agent
    await agent.stop()
    await task


@pytest.fixture
async def stream(fake: tuple[FakeAgentService, str], agent: Agent) -> Connection:
    connection = await fake[0].accept()
    await connection.welcome()
    return connection


def assign(run_id: str, command: str, **fields) -> dict:
    return {"assign": agent_pb2.Assign(run=ref(run_id), command=command, **fields)}


async def test_hello_introduces_the_device(fake: tuple[FakeAgentService, str], agent: Agent) -> None:
    connection = await fake[0].accept()
    hello = await connection.welcome(heartbeat_interval_ms=50)
    assert (hello.device_id, hello.credential, hello.agent_version, hello.capacity) == \
        ("dev-1", "secret", AGENT_VERSION, 2)
    assert hello.facts["hostname"] == socket.gethostname() and not hello.held_runs
    beat = await connection.next(skip_heartbeats=False)
    assert beat.HasField("heartbeat") and not beat.heartbeat.runs


async def test_a_command_runs_and_its_output_streams_in_order(stream: Connection) -> None:
    stream.send(**assign("r1", "echo hello; echo err >&2; exit 3"))
    assert (await stream.expect("accept")).run == ref("r1")
    assert (await stream.expect("started")).started_at.seconds > 0
    chunks, finished = await stream.until_finished()

    assert [c.sequence for c in chunks] == list(range(1, len(chunks) + 1))
    out = b"".join(c.data for c in chunks if c.stream == runs_pb2.OUTPUT_STREAM_STDOUT)
    err = b"".join(c.data for c in chunks if c.stream == runs_pb2.OUTPUT_STREAM_STDERR)
    assert (out, err) == (b"hello\n", b"err\n")
    assert finished.run == ref("r1") and finished.exit_code == 3
    assert finished.last_sequence == len(chunks) and not (finished.timed_out or finished.canceled)


async def test_inputs_and_the_run_are_in_the_environment(stream: Connection) -> None:
    stream.send(**assign("r2", 'echo "$JOBLINE_INPUT_WHO $JOBLINE_INPUT_MAX_SIZE $JOBLINE_RUN_ID $JOBLINE_ATTEMPT"',
                         inputs={"who": "world", "max-size": "3"}))
    await stream.expect("accept")
    await stream.expect("started")
    chunks, finished = await stream.until_finished()
    assert b"".join(c.data for c in chunks) == b"world 3 r2 1\n" and finished.exit_code == 0


async def test_cancel_stops_the_process_group(stream: Connection) -> None:
    stream.send(**assign("r3", "sleep 30"))
    await stream.expect("accept")
    await stream.expect("started")
    began = time.monotonic()
    stream.send(cancel=agent_pb2.Cancel(run=ref("r3")))
    _, finished = await stream.until_finished()
    assert finished.canceled and not finished.timed_out and finished.exit_code == -signal.SIGTERM
    assert time.monotonic() - began < 2


async def test_a_forced_cancel_kills_at_once(stream: Connection) -> None:
    stream.send(**assign("r4", "trap '' TERM; sleep 30"))
    await stream.expect("accept")
    await stream.expect("started")
    stream.send(cancel=agent_pb2.Cancel(run=ref("r4"), force=True))
    _, finished = await stream.until_finished()
    assert finished.canceled and finished.exit_code == -signal.SIGKILL


async def test_a_run_past_its_timeout_is_killed(stream: Connection) -> None:
    began = time.monotonic()
    stream.send(**assign("r5", "sleep 30", timeout_secs=1))
    await stream.expect("accept")
    await stream.expect("started")
    _, finished = await stream.until_finished()
    assert finished.timed_out and not finished.canceled
    assert finished.exit_code == -signal.SIGTERM and "timed out" in finished.error
    assert time.monotonic() - began < 3


async def test_assignments_beyond_capacity_or_without_command_are_rejected(stream: Connection) -> None:
    for run_id in ("a", "b"):
        stream.send(**assign(run_id, "sleep 30"))
        await stream.expect("accept")
        await stream.expect("started")
    stream.send(**assign("c", "sleep 30"))
    rejected = await stream.expect("reject")
    assert rejected.run == ref("c") and "capacity" in rejected.reason
    stream.send(**assign("d", "  "))
    assert (await stream.expect("reject")).reason == "empty command"


async def test_unacked_output_is_resent_after_reconnecting_until_acked(
        fake: tuple[FakeAgentService, str], stream: Connection) -> None:
    stream.send(**assign("r6", "echo early; sleep 0.5; echo late"))
    await stream.expect("accept")
    await stream.expect("started")
    first = await stream.expect("output")
    assert (first.sequence, first.data) == (1, b"early\n")
    stream.send(ack=agent_pb2.Ack(run=ref("r6"), sequence=1))
    stream.drop()

    # The process ran on while the stream was down; what it printed comes on the new stream.
    second = await fake[0].accept()
    assert list((await second.welcome()).held_runs) == [ref("r6")]
    chunks, finished = await second.until_finished()
    assert [(c.sequence, c.data) for c in chunks] == [(2, b"late\n")]
    assert finished.exit_code == 0 and finished.last_sequence == 2
    second.drop()

    # Nothing of that was acked: it is all resent, but not the chunk acked before.
    third = await fake[0].accept()
    assert list((await third.welcome()).held_runs) == [ref("r6")]
    chunks, finished = await third.until_finished()
    assert [(c.sequence, c.data) for c in chunks] == [(2, b"late\n")] and finished.last_sequence == 2
    third.send(ack=agent_pb2.Ack(run=ref("r6"), sequence=2, finished=True))
    third.drop()

    # Acked as finished: forgotten.
    fourth = await fake[0].accept()
    assert not (await fourth.welcome(heartbeat_interval_ms=50)).held_runs
    assert (await fourth.next(skip_heartbeats=False)).HasField("heartbeat")


async def test_stop_kills_running_processes(fake: tuple[FakeAgentService, str], tmp_path) -> None:
    pidfile = tmp_path / "pid"
    agent = Agent(fake[1], "dev-1", "secret")
    task = asyncio.create_task(agent.run())
    connection = await fake[0].accept()
    await connection.welcome()
    connection.send(**assign("r7", f"sleep 30 & echo $! > {pidfile}; wait"))
    await connection.expect("accept")
    await connection.expect("started")
    async with asyncio.timeout(2):
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
    sleeper = int(pidfile.read_text())
    await agent.stop()
    await task
    assert not _alive(sleeper)


def _alive(pid: int) -> bool:
    """Running, that is: neither gone nor a zombie awaiting its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_handler_run_executes_the_configured_command_with_its_inputs(
        fake: tuple[FakeAgentService, str]) -> None:
    agent = Agent(fake[1], "drone-1", "secret", handlers={"mission": 'echo "$JOBLINE_HANDLER $JOBLINE_INPUT_MISSIONID"'})
    task = asyncio.create_task(agent.run())
    try:
        connection = await fake[0].accept()
        await connection.welcome()
        connection.send(assign=agent_pb2.Assign(run=ref("m1"), handler="mission", inputs={"missionId": "m-42"}))
        assert (await connection.expect("accept")).run == ref("m1")
        await connection.expect("started")
        chunks, finished = await connection.until_finished()
        assert b"".join(c.data for c in chunks) == b"mission m-42\n" and finished.exit_code == 0
        # A handler it was not configured with is rejected with the reason, never run.
        connection.send(assign=agent_pb2.Assign(run=ref("m2"), handler="survey", command="echo never"))
        rejected = await connection.expect("reject")
        assert rejected.run == ref("m2") and rejected.reason == "no handler 'survey' on this agent"
    finally:
        await agent.stop()
        await task


async def test_an_agent_without_handlers_rejects_handler_runs(stream: Connection) -> None:
    stream.send(assign=agent_pb2.Assign(run=ref("m1"), handler="mission", inputs={"missionId": "x"}))
    rejected = await stream.expect("reject")
    assert rejected.reason == "no handler 'mission' on this agent"


async def test_an_assignment_that_cannot_start_is_rejected_not_accepted(stream: Connection) -> None:
    stream.send(**assign("big", "echo " + "x" * 200_000))  # one argv string over the kernel's limit: E2BIG
    rejected = await stream.expect("reject")
    assert rejected.run == ref("big") and rejected.reason.startswith("could not start the command: ")
    stream.send(**assign("nul", "echo {{x}}", inputs={"x": "a\0b"}))
    assert (await stream.expect("reject")).reason == "input 'x' contains a NUL character"
    stream.send(**assign("ok", "echo fine"))  # the slots are free again
    assert (await stream.expect("accept")).run == ref("ok")
    await stream.expect("started")
    _, finished = await stream.until_finished()
    assert finished.exit_code == 0


async def test_a_canceled_command_leaves_no_process_of_its_group(fake: tuple[FakeAgentService, str],
                                                                 tmp_path) -> None:
    pidfile = tmp_path / "pid"
    agent = Agent(fake[1], "dev-1", "secret", kill_grace=0.5)
    task = asyncio.create_task(agent.run())
    connection = await fake[0].accept()
    await connection.welcome()
    # The shell dies of SIGTERM; a child that ignores it and holds no output would outlive it.
    connection.send(**assign("r8", f"(trap '' TERM; exec sleep 30 >/dev/null 2>&1) & echo $! > {pidfile}; sleep 30"))
    await connection.expect("accept")
    await connection.expect("started")
    async with asyncio.timeout(2):
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
    survivor = int(pidfile.read_text())
    connection.send(cancel=agent_pb2.Cancel(run=ref("r8")))
    _, finished = await connection.until_finished()
    assert finished.canceled
    await asyncio.sleep(0.1)
    assert not _alive(survivor)
    await agent.stop()
    await task
