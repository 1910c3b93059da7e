"""A tiny no-op HTTP endpoint (asyncio, keep-alive) in a process of its own: answers every
request 200 with `{"ok":true}` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import multiprocessing

CTX = multiprocessing.get_context("spawn")
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
          b"Connection: keep-alive\r\n\r\n{\"ok\":true}")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def _main(port_pipe) -> None:
    async def serve() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=1024)
        port_pipe.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class NoopServer:
    def __init__(self) -> None:
        parent, child = CTX.Pipe()
        self.process = CTX.Process(target=_main, args=(child,), daemon=True)
        self.process.start()
        if not parent.poll(30):
            raise RuntimeError("the no-op HTTP server did not start")
        self.port: int = parent.recv()
        self.url = f"http://127.0.0.1:{self.port}/noop"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)
