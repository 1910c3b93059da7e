"""The suite: start the platform, run the scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cli.platform import Platform

from . import report
from .loadgen import Generator, Load
from .noop import NoopServer
from .procstat import Sampler
from .stats import ms, percentile

ADMIN_KEY = "jl_bench_admin_key_" + "0123456789abcdef0123"
# The internal service credential (services/common/service_auth): every platform process gets it
# through the environment, and the suite's direct gRPC calls present it.
SERVICE_TOKEN = "bench-service-token-" + uuid.uuid4().hex
SERVICE_TOKEN_KEY = "x-jobline-service-token"


def internal_metadata(principal: bytes) -> tuple[tuple[str, object], ...]:
    from services.common.principal import METADATA_KEY

    return ((METADATA_KEY, principal), (SERVICE_TOKEN_KEY, SERVICE_TOKEN))
PROCESSES = ("gateway", "runs", "jobs", "devices", "auth")
DEFAULT_JSON = Path("bench-results/latest.json")


@dataclass
class Check:
    target: str
    measured: str
    ok: bool | None  # None: could not be measured


@dataclass
class Row:
    scenario: str
    status: str = "ok"  # ok | not available | failed
    throughput: float | None = None
    unit: str = "runs/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    runs: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_s_per_1k_runs: float | None = None
    peak_mib: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def check(self, target: str, measured: str, ok: bool | None) -> None:
        self.checks.append(Check(target, measured, ok))


class Bench:
    """What every scenario uses: the running platform, an admin REST client, sizes, progress."""

    def __init__(self, args: argparse.Namespace, platform: Platform, workdir: Path) -> None:
        self.args = args
        self.quick = args.quick
        self.platform = platform
        self.workdir = workdir
        self.http = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                                 timeout=120)
        self.started = time.monotonic()
        self.rows: list[Row] = []
        self._devices: list[tuple[str, str]] = []
        self._noop: NoopServer | None = None
        self._principal: bytes | None = None
        self.results: dict[str, Any] = {}
        self.executing_jobs: list[str] = []  # jobs whose runs execute: settled before the next scenario  # figures scenarios share (e.g. REST p50 for the gateway ratio)

    # -- progress ------------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def watch(self, label: str, generators: list[Generator], every: float = 2.0) -> None:
        """Prints the generators' progress until they end."""
        start = time.monotonic()
        last = start
        while any(g.alive() for g in generators):
            time.sleep(0.1)
            if time.monotonic() - last >= every:
                last = time.monotonic()
                done = sum(g.counter.value for g in generators)
                self.say(f"  {label}: {done:,} calls ({done / (last - start):,.0f}/s)")

    # -- sizes ---------------------------------------------------------------------------

    def seconds(self, full: float, quick: float) -> float:
        if self.args.duration:
            return self.args.duration
        return quick if self.quick else full

    def bound(self, full: float, quick: float) -> float:
        """How long to wait for something to finish (not changed by --duration)."""
        return quick if self.quick else full

    def clients(self, default: int = 64) -> int:
        return self.args.clients or default

    # -- measuring -------------------------------------------------------------------------

    def sampler(self) -> Sampler:
        return Sampler({name: self.platform.processes[name].pid for name in PROCESSES})

    def finish(self, row: Row, sampler: Sampler, runs: int) -> Row:
        row.runs = runs
        row.cpu_s = sampler.cpu()
        total = sum(row.cpu_s.values())
        row.cpu_s_per_1k_runs = round(total / runs * 1000, 2) if runs else None
        row.peak_mib = sampler.peaks_mib()
        if not sampler.peak_reset:
            row.note = (row.note + " peak memory since process start").strip()
        return row

    @staticmethod
    def latencies(row: Row, seconds: list[float]) -> None:
        row.p50_ms = ms(percentile(seconds, 50))
        row.p99_ms = ms(percentile(seconds, 99))

    # -- things scenarios need ---------------------------------------------------------------

    def load(self, **kwargs) -> Load:
        kwargs.setdefault("port", self.platform.http_port)
        kwargs.setdefault("service_token", SERVICE_TOKEN)
        kwargs.setdefault("key", ADMIN_KEY)
        return Load(**kwargs)

    def run_load(self, label: str, load: Load, processes: int = 1) -> dict[str, Any]:
        """Runs `load` split over `processes` generator processes; merges their results."""
        loads = []
        for i in range(processes):
            share = Load(**{**asdict(load), "clients": max(1, load.clients // processes),
                            "max_requests": max(1, load.max_requests // processes),
                            "rate": load.rate / processes if load.rate else None})
            loads.append(share)
        generators = [Generator(one).start() for one in loads]
        self.watch(label, generators)
        parts = [g.result(timeout=load.duration + load.timeout + 30) for g in generators]
        merged: dict[str, Any] = {"latencies": [], "kept": [], "errors": [], "statuses": {}}
        for part in parts:
            merged["latencies"] += part["latencies"]
            merged["kept"] += part["kept"]
            merged["errors"] += part["errors"]
            for key, count in part["statuses"].items():
                merged["statuses"][key] = merged["statuses"].get(key, 0) + count
        merged["wall_start"] = min(p["wall_start"] for p in parts)
        merged["wall_end"] = max(p["wall_end"] for p in parts)
        merged["elapsed"] = max(p["elapsed"] for p in parts)
        merged["ok"] = sum(c for k, c in merged["statuses"].items() if k.isdigit() and 200 <= int(k) < 300 or k == "OK")
        return merged

    def noop(self) -> NoopServer:
        if self._noop is None:
            self._noop = NoopServer()
        return self._noop

    def create_job(self, **fields) -> dict[str, Any]:
        slug = f"bench-{uuid.uuid4().hex[:10]}"
        response = self.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug, **fields})
        if response.status_code != 201:
            raise RuntimeError(f"creating a job: {response.status_code} {response.text[:300]}")
        return response.json()

    def settle(self, bound: float) -> None:
        """Waits (bounded) until the runs a scenario left behind have ended, so that the next
        scenario measures an idle platform; says so when they have not."""
        deadline = time.monotonic() + bound
        for job_id in self.executing_jobs:
            left = self.wait_all_ended(job_id, "settling", max(0.5, deadline - time.monotonic()))
            if left is None:
                self.say(f"  settling: runs of job {job_id} still active after {bound:.0f}s; moving on")
        self.executing_jobs.clear()

    def delete_job(self, job_id: str) -> None:
        self.http.delete(f"/v1/jobs/{job_id}")

    def devices(self, count: int) -> list[tuple[str, str]]:
        """The first `count` bench devices (created through REST on first need), as (id, credential)."""
        if len(self._devices) < count:
            start = len(self._devices)
            self.say(f"  creating devices {start:,}..{count - 1:,} through REST")
            began = time.monotonic()
            self._devices += asyncio.run(_create_devices(self.platform.base_url, range(start, count)))
            self.say(f"  {count - start:,} devices created in {time.monotonic() - began:.1f}s")
        return self._devices[:count]

    def principal(self) -> bytes:
        """The admin principal (AuthService.Authenticate), for calls straight to the services."""
        if self._principal is None:
            import grpc

            from jobline.auth.v1 import auth_pb2, auth_pb2_grpc

            async def ask() -> bytes:
                async with grpc.aio.insecure_channel(self.platform.addr("auth")) as channel:
                    reply = await auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
                        auth_pb2.AuthenticateRequest(api_key=ADMIN_KEY), timeout=10,
                        metadata=((SERVICE_TOKEN_KEY, SERVICE_TOKEN),))
                    return reply.principal.SerializeToString()

            self._principal = asyncio.run(ask())
        return self._principal

    def active_runs(self, job_id: str) -> int:
        """Runs of the job not yet in a final state (RunService.CountActiveRuns; REST paging if refused)."""
        try:
            return asyncio.run(self._count_active(job_id, self.principal()))  # principal() runs its own loop
        except Exception:  # noqa: BLE001 - e.g. the internal RPC wants a service credential
            return self._count_active_rest(job_id)

    async def _count_active(self, job_id: str, principal: bytes) -> int:
        import grpc

        from jobline.runs.v1 import runs_pb2, runs_pb2_grpc
        async with grpc.aio.insecure_channel(self.platform.addr("runs")) as channel:
            reply = await runs_pb2_grpc.RunServiceStub(channel).CountActiveRuns(
                runs_pb2.CountActiveRunsRequest(job_id=job_id), metadata=internal_metadata(principal),
                timeout=30)
            return reply.count

    def _count_active_rest(self, job_id: str) -> int:
        final = {"completed", "failed", "timed_out", "crashed", "system_failed", "canceled", "expired", "dead_letter"}
        active, cursor = 0, ""
        for _ in range(1000):
            params = {"project_id": "default", "job_id": job_id, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            response = self.http.get("/v1/runs", params=params)
            runs = response.json()
            runs = runs if isinstance(runs, list) else runs.get("runs", [])
            active += sum(1 for run in runs if run["status"] not in final)
            if len(runs) < 1000:
                break
            cursor = runs[-1]["created_at"]
        return active

    def wait_all_ended(self, job_id: str, label: str, bound: float) -> float | None:
        """Polls until no run of the job is active; the wall time it was first seen so, or None."""
        deadline = time.monotonic() + bound
        last = 0.0
        while time.monotonic() < deadline:
            active = self.active_runs(job_id)
            if active == 0:
                return time.time()
            if time.monotonic() - last > 2:
                last = time.monotonic()
                self.say(f"  {label}: {active:,} runs still active")
            time.sleep(0.05)
        return None

    def close(self) -> None:
        fleet = self.results.pop("fleet", None)
        if fleet is not None:
            fleet.stop()
        self.http.close()
        if self._noop is not None:
            self._noop.stop()


async def _create_devices(base_url: str, indexes: range) -> list[tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    queue = list(indexes)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            device_id = f"bench-dev-{i:05d}"
            groups = ["bench", "bench-1k"] if i < 1000 else ["bench"]
            for attempt in range(3):
                response = await client.post("/v1/devices", json={"id": device_id, "name": device_id, "groups": groups})
                if response.status_code == 201:
                    out[i] = (device_id, response.json()["credential"])
                    break
            else:
                raise RuntimeError(f"creating device {device_id}: {response.status_code} {response.text[:200]}")

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                                 timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return [out[i] for i in indexes]


def future_timestamp(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


# -- the suite -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "python": sys.version.split()[0], "kernel": pyplatform.release()}


def _postgres_scratch(url: str) -> tuple[str, callable]:
    import asyncpg

    name = f"jobline_bench_{uuid.uuid4().hex[:10]}"

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}", lambda: asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .scenarios import SCENARIOS

    parser = argparse.ArgumentParser(prog="python -m bench", description="The Jobline benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute); skips cron")
    parser.add_argument("--postgres", default=os.environ.get("JOBLINE_BENCH_POSTGRES_URL") or None,
                        help="a PostgreSQL server URL (default $JOBLINE_BENCH_POSTGRES_URL): a scratch database "
                             "is created on it and dropped after")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where the figures go (default {DEFAULT_JSON})")
    parser.add_argument("--duration", type=float, help="override every load phase's duration (seconds)")
    parser.add_argument("--clients", type=int, help="override the number of concurrent clients")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of the platform processes here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    if args.quick and not args.only:
        names = [n for n in names if n != "cron"]
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    from .scenarios import SCENARIOS

    args = parse_args(argv)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="jobline-bench-"))
    env = {"JOBLINE_BOOTSTRAP_API_KEY": ADMIN_KEY, "JOBLINE_DATABASE_URL": "", "JOBLINE_SERVICE_TOKEN": SERVICE_TOKEN,
           # Load generators trigger thousands of times a second: surface C's per-caller limits off.
           "JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN": "0", "JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN": "0"}
    drop = None
    database = "sqlite (embedded)"
    if args.postgres:
        url, drop = _postgres_scratch(args.postgres)
        env["JOBLINE_DATABASE_URL"] = url
        database = "postgresql (scratch database)"
    log = open(workdir / "platform.log", "wb")
    platform = Platform.on_free_ports(workdir / "data", env=env, stdout=log.fileno())
    bench: Bench | None = None
    exit_code = 0
    try:
        print(f"starting the platform ({database}) in {workdir}", file=sys.stderr, flush=True)
        platform.start()
        platform.wait_healthy()
        bench = Bench(args, platform, workdir)
        bench.say("platform healthy; scenarios: " + ", ".join(args.names))
        for name in args.names:
            bench.say(f"== {name}")
            began_scenario = time.monotonic()
            profiler = _start_profiles(args.profile, name, platform) if args.profile else []
            try:
                rows = SCENARIOS[name](bench)
            except Exception as error:  # noqa: BLE001 - one scenario failing does not stop the suite
                note = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                rows = [Row(name, status="failed", note=note)]
                exit_code = 1
            finally:
                _stop_profiles(profiler)
                bench.settle(bench.bound(60, 20))
            for row in rows:
                row.extra.setdefault("scenario_seconds", round(time.monotonic() - began_scenario, 1))
            bench.rows += rows
        table = report.table(bench.rows)
        print(table)
        document = {"machine": machine(), "database": database, "quick": args.quick,
                    "started_at": datetime.now(UTC).isoformat(), "seconds": round(time.monotonic() - began, 1),
                    "rows": [asdict(row) for row in bench.rows], "table": table}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str))
        print(f"figures written to {args.json}; total {time.monotonic() - began:.0f}s", file=sys.stderr)
    finally:
        if bench is not None:
            bench.close()
        platform.stop()
        log.close()
        if drop is not None:
            drop()
        if args.profile is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return exit_code


def _start_profiles(directory: Path, scenario: str, platform: Platform) -> list[subprocess.Popen]:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return []
    directory.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(spy), "record", "--nonblocking", "--format", "raw", "--rate", "50",
                              "--pid", str(process.pid), "--output", str(directory / f"{scenario}.{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, process in platform.processes.items()]


def _stop_profiles(profilers: list[subprocess.Popen]) -> None:
    import signal

    for spy in profilers:
        spy.send_signal(signal.SIGINT)
    for spy in profilers:
        try:
            spy.wait(20)
        except subprocess.TimeoutExpired:
            spy.kill()
