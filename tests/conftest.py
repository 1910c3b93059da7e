"""Fixtures shared by every test area."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _reachable(url: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def _postgres_url() -> str:
    """JOBLINE_TEST_POSTGRES_URL when set ("" turns PostgreSQL off); else the local server if it answers."""
    if "JOBLINE_TEST_POSTGRES_URL" in os.environ:
        return os.environ["JOBLINE_TEST_POSTGRES_URL"]
    return DEFAULT_POSTGRES_URL if _reachable(DEFAULT_POSTGRES_URL) else ""


POSTGRES_URL = _postgres_url()


def _admin(url: str, statement: str) -> None:
    """Runs one statement on its own connection (in a thread: callers may be inside an event loop)."""
    import asyncpg

    async def execute() -> None:
        connection = await asyncpg.connect(url, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, execute()).result()


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A scratch database of this test session's own on the PostgreSQL server, dropped at the end,
    so test runs in parallel never touch each other's tables."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set JOBLINE_TEST_POSTGRES_URL")
    name = f"jobline_test_{uuid.uuid4().hex[:12]}"
    _admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    yield f"{base}/{name}"
    _admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _drop_every_table(url: str) -> None:
    from services.auth.store import TABLES as AUTH
    from services.common.db import Database
    from services.devices.store import TABLES as DEVICES
    from services.jobs.store import TABLES as JOBS
    from services.runs.invocations import TABLES as INVOCATIONS
    from services.runs.store import TABLES as RUNS

    db = Database(url, [*AUTH, *DEVICES, *JOBS, *RUNS, *INVOCATIONS])
    await db.drop_tables()
    await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path):
    """A database URL for store tests: a SQLite file, and PostgreSQL when one answers
    (JOBLINE_TEST_POSTGRES_URL, else the local server), with no Jobline tables before or after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    url = request.getfixturevalue("postgres_session_url")
    await _drop_every_table(url)
    yield url
    await _drop_every_table(url)


@pytest.fixture(scope="session", autouse=True)
def _secret_key() -> Iterator[None]:
    """Services built in this process seal secrets with a test key (processes started by the e2e tests
    make theirs in their data dir), so no test writes ./data/secret-key."""
    from services.common import secrets

    secrets.configure_secret_key("test-secret-key-" + uuid.uuid4().hex)
    yield
    secrets.configure_secret_key(None)
