"""Load generators, each run in a process of its own (multiprocessing, spawn).

Every loop is bounded twice, by a request count and by a duration, and speaks only to
127.0.0.1. REST load uses a minimal keep-alive HTTP/1.1 client (far cheaper per request than
a general-purpose client, so the generator measures the platform, not itself)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LOCALHOST = "127.0.0.1"
CTX = multiprocessing.get_context("spawn")


@dataclass
class Load:
    """One closed- or open-loop load: `clients` concurrent callers, at most `max_requests` calls
    and `duration` seconds; with `rate`, calls start on a fixed schedule (requests/s, all clients)."""

    port: int
    paths: list[str]
    bodies: list[bytes]
    clients: int
    duration: float
    max_requests: int
    key: str = ""
    rate: float | None = None
    keep: bool = False  # keep (run id, created_at) of each answer
    timeout: float = 60.0
    host: str = LOCALHOST
    # gRPC loads (kind="grpc"): the runs service's TriggerJob with this principal.
    kind: str = "rest"
    principal: bytes = b""
    service_token: str = ""
    requests: list[bytes] = field(default_factory=list)  # serialized TriggerJobRequest


def _check(load: Load) -> None:
    if load.host != LOCALHOST:
        raise ValueError("load generators only target 127.0.0.1")
    if load.max_requests <= 0 or not 0 < load.duration <= 600:
        raise ValueError("a load needs a positive request bound and a duration of at most 600 s")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, headers: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
            lines = status_and_headers.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length, chunked, close = 0, False, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                elif name == "connection" and "close" in value.lower():
                    close = True
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    parts.append(await self.reader.readexactly(size + 2))
                    if size == 0:
                        break
                payload = b"".join(p[:-2] for p in parts)
            else:
                payload = await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _drive(load: Load, counter, call) -> dict[str, Any]:
    """Runs `call(i)` from `load.clients` workers, bounded by count and time; call returns
    (ok, status, kept) and raises on transport errors."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    kept: list[Any] = []
    errors: list[str] = []
    next_index = 0
    start = time.perf_counter()
    deadline = start + load.duration
    interval = 1.0 / load.rate if load.rate else 0.0

    async def worker(slot: int) -> None:
        nonlocal next_index
        while True:
            now = time.perf_counter()
            if next_index >= load.max_requests or now >= deadline:
                return
            i = next_index
            next_index += 1
            if interval:
                due = start + i * interval
                if due >= deadline:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
            sent = time.perf_counter()
            try:
                ok, status, item = await asyncio.wait_for(call(slot, i), load.timeout)
            except Exception as error:  # noqa: BLE001 - counted and reported
                statuses["error"] += 1
                if len(errors) < 5:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1
            if ok:
                if counter is not None:
                    with counter.get_lock():
                        counter.value += 1
                if item is not None:
                    kept.append(item)
            elif len(errors) < 5:
                errors.append(f"status {status}: {item!r}"[:300])

    wall_start = time.time()
    await asyncio.gather(*(worker(slot) for slot in range(load.clients)))
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "statuses": {str(k): v for k, v in statuses.items()}, "kept": kept,
            "errors": errors, "elapsed": elapsed, "wall_start": wall_start, "wall_end": time.time()}


async def _rest(load: Load, counter) -> dict[str, Any]:
    headers = f"Authorization: Bearer {load.key}\r\nContent-Type: application/json\r\n"
    connections = [HttpConnection(load.host, load.port) for _ in range(load.clients)]

    async def call(slot: int, i: int):
        status, payload = await connections[slot].request(
            "POST", load.paths[i % len(load.paths)], load.bodies[i % len(load.bodies)], headers)
        ok = 200 <= status < 300
        if not ok:
            return False, status, payload[:200].decode("utf-8", "replace")
        if load.keep:
            answer = json.loads(payload)
            return True, status, (answer.get("id"), answer.get("created_at"))
        return True, status, None

    try:
        return await _drive(load, counter, call)
    finally:
        for connection in connections:
            connection.close()


async def _grpc(load: Load, counter) -> dict[str, Any]:
    import grpc

    from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
    from services.common.principal import METADATA_KEY

    channel = grpc.aio.insecure_channel(f"{load.host}:{load.port}")
    stub = runs_pb2_grpc.RunServiceStub(channel)
    requests = [runs_pb2.TriggerJobRequest.FromString(raw) for raw in load.requests]
    metadata = ((METADATA_KEY, load.principal), ("x-jobline-service-token", load.service_token))

    async def call(slot: int, i: int):
        try:
            run = await stub.TriggerJob(requests[i % len(requests)], metadata=metadata)
        except grpc.aio.AioRpcError as error:
            return False, error.code().name, error.details()
        return True, "OK", (run.id, None) if load.keep else None

    try:
        return await _drive(load, counter, call)
    finally:
        await channel.close()


def _main(load: Load, counter, results) -> None:
    try:
        _check(load)
        runner = _grpc if load.kind == "grpc" else _rest
        results.put(asyncio.run(runner(load, counter)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        results.put({"fatal": f"{type(error).__name__}: {error}"})


class Generator:
    """A load generator process; `counter` counts successful calls while it runs."""

    def __init__(self, load: Load) -> None:
        _check(load)
        self.load = load
        self.counter = CTX.Value("q", 0)
        self._results = CTX.Queue()
        self._answer: dict[str, Any] | None = None
        self.process = CTX.Process(target=_main, args=(load, self.counter, self._results), daemon=True)

    def start(self) -> "Generator":
        self.process.start()
        return self

    def alive(self) -> bool:
        """Still running and not yet answered. Its answer is read as soon as it comes: a child whose
        answer is larger than the pipe's buffer cannot exit before the parent reads it."""
        return self._receive(block=False) is None and self.process.is_alive()

    def _receive(self, block: bool, timeout: float | None = None) -> dict[str, Any] | None:
        if self._answer is None:
            try:
                self._answer = self._results.get(block, timeout)
            except queue.Empty:
                pass
        return self._answer

    def result(self, timeout: float) -> dict[str, Any]:
        answer = self._receive(block=True, timeout=timeout) or {"fatal": "the load generator did not answer in time"}
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        if "fatal" in answer:
            raise RuntimeError(answer["fatal"])
        return answer


def body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
