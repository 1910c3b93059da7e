"""A scripted fake of the server side of `AgentService.Connect`, on a real grpc.aio server (port 0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from jobline.runs.v1 import agent_pb2, agent_pb2_grpc

WAIT_SECS = 5.0


class Connection:
    """One agent stream as the test sees it: what the agent sent, and what to send it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self.outgoing: asyncio.Queue[agent_pb2.ServerMessage | None] = asyncio.Queue()

    async def next(self, skip_heartbeats: bool = True) -> agent_pb2.AgentMessage:
        async with asyncio.timeout(WAIT_SECS):
            while True:
                message = await self.received.get()
                if not (skip_heartbeats and message.HasField("heartbeat")):
                    return message

    async def expect(self, kind: str):
        """The next message (heartbeats aside), which must be a `kind`; returns its body."""
        message = await self.next()
        assert message.WhichOneof("body") == kind, message
        return getattr(message, kind)

    async def until_finished(self) -> tuple[list[agent_pb2.OutputChunk], agent_pb2.Finished]:
        chunks = []
        while (message := await self.next()).HasField("output"):
            chunks.append(message.output)
        assert message.HasField("finished"), message
        return chunks, message.finished

    async def welcome(self, heartbeat_interval_ms: int = 5000) -> agent_pb2.Hello:
        hello = await self.expect("hello")
        self.send(welcome=agent_pb2.Welcome(heartbeat_interval_ms=heartbeat_interval_ms))
        return hello

    def send(self, **body) -> None:
        self.outgoing.put_nowait(agent_pb2.ServerMessage(**body))

    def drop(self) -> None:
        """Ends the stream from the server side (after what was sent before)."""
        self.outgoing.put_nowait(None)


class FakeAgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()

    async def accept(self) -> Connection:
        async with asyncio.timeout(WAIT_SECS):
            return await self.connections.get()

    async def Connect(self, request_iterator, context) -> AsyncIterator[agent_pb2.ServerMessage]:
        connection = Connection()
        self.connections.put_nowait(connection)

        async def read() -> None:
            async for message in request_iterator:
                connection.received.put_nowait(message)

        reader = asyncio.create_task(read())
        try:
            while (message := await connection.outgoing.get()) is not None:
                yield message
        finally:
            reader.cancel()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAgentService, str]]:
    service = FakeAgentService()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def ref(run_id: str, attempt: int = 1) -> agent_pb2.RunRef:
    return agent_pb2.RunRef(run_id=run_id, attempt=attempt)
