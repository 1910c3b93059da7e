"""The endpoint jobs' HTTP client against local servers: keep-alive reuse, body framings, limits, timings."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.runs.endpoint_client import EndpointClient, EndpointError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                await self.answer(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Server, str]]]]:
    servers = []

    async def start(answer: Handler) -> tuple[Server, str]:
        server = Server(answer)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        return server, f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/hook?x=1"

    yield start
    for listening in servers:
        listening.close()


def answering(raw: bytes, *, close: bool = False) -> Handler:
    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return answer


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


async def test_calls_to_one_origin_reuse_one_keep_alive_connection(serve) -> None:
    server, url = await serve(answering(OK))
    client = EndpointClient()
    for n in range(3):
        answer = await client.post(url, b'{"n":%d}' % n, {"X-Run-ID": f"r{n}"})
        assert (answer.status, answer.body, answer.is_success) == (200, b'{"ok":true}', True)
    assert server.connections == 1
    request = server.requests[2].decode()
    assert request.startswith("POST /hook?x=1 HTTP/1.1\r\n") and "\r\nX-Run-ID: r2\r\n" in request
    assert request.endswith('\r\n\r\n{"n":2}') and "Content-Length: 7\r\n" in request
    await client.aclose()


async def test_chunked_and_gzip_bodies_are_decoded(serve) -> None:
    packed = gzip.compress(b'{"echo":"hello"}')
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (packed[:5], packed[5:])) + b"0\r\n\r\n"
    _, url = await serve(answering(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
                                   b"Content-Encoding: gzip\r\n\r\n" + chunked))
    answer = await EndpointClient().post(url, b"{}", {})
    assert (answer.status, answer.body) == (201, b'{"echo":"hello"}')


async def test_a_close_delimited_answer_is_read_to_its_end_and_its_connection_not_reused(serve) -> None:
    server, url = await serve(answering(b"HTTP/1.0 500 Oops\r\n\r\nall of it", close=True))
    client = EndpointClient()
    for _ in range(2):
        answer = await client.post(url, b"{}", {})
        assert (answer.status, answer.body, answer.is_success) == (500, b"all of it", False)
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    server, url = await serve(answering(OK, close=True))  # keep-alive by its headers, closed all the same
    client = EndpointClient()
    assert (await client.post(url, b"{}", {})).status == 200
    await asyncio.sleep(0.05)  # the close reaches the client's idle connection
    assert (await client.post(url, b"{}", {})).status == 200
    assert server.connections == 2


async def test_a_body_over_the_limit_is_cut_and_its_connection_closed(serve) -> None:
    server, url = await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"x" * 20))
    client = EndpointClient(max_body_bytes=8)
    for _ in range(2):
        assert (await client.post(url, b"{}", {})).body == b"x" * 8
    assert server.connections == 2


async def test_the_timings_are_the_phases_of_the_call(serve) -> None:
    async def slow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.06)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(0.04)
        writer.write(b"  }")
        await writer.drain()

    _, url = await serve(slow)
    answer = await EndpointClient().post(url, b"{}", {})
    assert answer.body == b"{  }"
    assert answer.timings["ttfb_ms"] >= 60 and 40 <= answer.timings["transfer_ms"] < answer.timings["ttfb_ms"]
    assert set(answer.timings) == {"connect_ms", "ttfb_ms", "transfer_ms"}


async def test_unreachable_endpoints_and_bad_urls_are_endpoint_errors() -> None:
    client = EndpointClient()
    with pytest.raises(EndpointError, match="Connect"):
        await client.post("http://127.0.0.1:9/none", b"{}", {})
    with pytest.raises(EndpointError, match="unsupported URL"):
        await client.post("ftp://example.test/x", b"{}", {})
