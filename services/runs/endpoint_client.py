"""The HTTP client of endpoint jobs: POST a JSON body over pooled keep-alive HTTP/1.1 connections, measuring
each phase on the socket's own events.

A general-purpose client (httpx) spent about 2 ms of CPU per call here; this one does only what endpoint jobs
need: http and https, Content-Length, chunked and close-delimited bodies (gzip / deflate decoded), keep-alive
with a bounded idle pool per origin. It follows no redirects and reads no proxy settings from the environment.

Timings, in milliseconds: `connect_ms` the TCP connect (and TLS handshake) of a new connection, 0 on a reused
one; `ttfb_ms` from the request's first byte written to the answer's headers read; `transfer_ms` from the
headers to the body's last byte.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote, urlsplit

IDLE_SECS = 15.0  # a pooled connection idle longer than this is closed rather than reused
MAX_HEAD_BYTES = 64 * 1024


class EndpointError(Exception):
    """The call failed before a complete answer arrived (connection, protocol or URL error)."""


@dataclass
class Answer:
    status: int
    body: bytes  # at most the client's `max_body_bytes`
    timings: dict[str, int] = field(default_factory=dict)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: str
    path: str
    authorization: str | None


@lru_cache(maxsize=4096)
def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"unsupported URL {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise EndpointError(str(error)) from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = port == (443 if parts.scheme == "https" else 80)
    authorization = None
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(userinfo.encode()).decode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(parts.scheme, parts.hostname, port, host if default_port else f"{host}:{port}", path,
                   authorization)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        return (not self.reader.at_eof() and not self.writer.is_closing()
                and time.monotonic() - self.idle_since < IDLE_SECS)

    def close(self) -> None:
        self.writer.close()


class EndpointClient:
    """Keeps at most `max_idle_per_origin` idle connections per (scheme, host, port); the caller bounds how
    many calls run at once (the HTTP executor's concurrency)."""

    def __init__(self, *, max_idle_per_origin: int = 256, max_body_bytes: int = 1024 * 1024) -> None:
        self.max_idle_per_origin = max_idle_per_origin
        self.max_body_bytes = max_body_bytes
        self._idle: defaultdict[tuple[str, str, int], list[_Connection]] = defaultdict(list)
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POSTs `body` (JSON) to `url`; raises EndpointError (and whatever cancels it, e.g. a timeout)."""
        origin = _origin(url)
        key = (origin.scheme, origin.host, origin.port)
        timings = {"connect_ms": 0}
        connection = self._pooled(key)
        if connection is None:
            connection = await self._connect(origin, timings)
        keep = False
        try:
            answer, keep = await self._exchange(connection, origin, body, headers)
        except (OSError, ValueError, zlib.error, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            raise EndpointError(f"{error.__class__.__name__}: {error}") from None
        finally:
            self._release(key, connection, keep)
        answer.timings = {**timings, **answer.timings}
        return answer

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    def _release(self, key: tuple[str, str, int], connection: _Connection, keep: bool) -> None:
        idle = self._idle[key]
        if keep and len(idle) < self.max_idle_per_origin:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()

    async def _connect(self, origin: _Origin, timings: dict[str, int]) -> _Connection:
        started = time.perf_counter()
        tls = None
        if origin.scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            reader, writer = await asyncio.open_connection(origin.host, origin.port, ssl=tls, limit=MAX_HEAD_BYTES)
        except (OSError, ValueError) as error:
            raise EndpointError(f"{error.__class__.__name__}: {error}") from None
        timings["connect_ms"] = _ms(started, time.perf_counter())
        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, origin: _Origin, body: bytes,
                        headers: dict[str, str]) -> tuple[Answer, bool]:
        lines = [f"POST {origin.path} HTTP/1.1", f"Host: {origin.host_header}", "Accept: */*",
                 "User-Agent: jobline-runs", "Content-Type: application/json", f"Content-Length: {len(body)}"]
        if origin.authorization:
            lines.append(f"Authorization: {origin.authorization}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        sent = time.perf_counter()
        connection.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await connection.writer.drain()
        status, version, fields = _head(await connection.reader.readuntil(b"\r\n\r\n"))
        headed = time.perf_counter()
        content, complete = await self._body(connection.reader, fields)
        done = time.perf_counter()
        content = _decoded(content, fields.get("content-encoding", ""), self.max_body_bytes)
        connection_header = fields.get("connection", "").lower()
        keep = complete and ("close" not in connection_header if version == "HTTP/1.1"
                             else "keep-alive" in connection_header)
        return Answer(status, content, {"ttfb_ms": _ms(sent, headed), "transfer_ms": _ms(headed, done)}), keep

    async def _body(self, reader: asyncio.StreamReader, fields: dict[str, str]) -> tuple[bytes, bool]:
        """The body (at most max_body_bytes of it kept) and whether the connection may carry another request."""
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return await self._chunked(reader), True
        if "content-length" in fields:
            length = int(fields["content-length"])
            if length < 0:
                raise ValueError("negative Content-Length")
            if length <= self.max_body_bytes:
                return await reader.readexactly(length), True
            content = await reader.readexactly(self.max_body_bytes)
            return content, False  # the rest is left unread: the connection is closed, not reused
        return await reader.read(self.max_body_bytes), False  # close-delimited

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        kept = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            chunk = await reader.readexactly(size + 2)
            if kept < self.max_body_bytes:
                parts.append(chunk[:size])
                kept += size

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1 answer: {status_line[:80]!r}")
    fields: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            name = name.strip().lower()
            fields[name] = f"{fields[name]}, {value.strip()}" if name in fields else value.strip()
    return int(rest[:3]), version, fields


def _decoded(content: bytes, encoding: str, limit: int) -> bytes:
    """The body without its content coding (gzip, deflate), at most `limit` bytes of it."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(
        encoding.strip().lower())
    if wbits is None:
        return content[:limit]
    return zlib.decompressobj(wbits).decompress(content, limit)


def _ms(start: float, end: float) -> int:
    return int((end - start) * 1000)
