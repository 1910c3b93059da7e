"""Fixtures shared by every test area."""

from __future__ import annotations

import asyncio
import os

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


async def _drop_every_table(url: str) -> None:
    from sqlmodel import SQLModel

    from services.auth.store import TABLES as AUTH
    from services.devices.store import TABLES as DEVICES
    from services.jobs.store import TABLES as JOBS
    from services.runs.store import TABLES as RUNS
    from services.common.db import Database

    db = Database(url, [*AUTH, *DEVICES, *JOBS, *RUNS])
    await db.drop_tables()
    await db.close()
    assert SQLModel.metadata.tables  # every store registered its tables


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path):
    """A database URL for store tests: a SQLite file, and PostgreSQL when one answers
    (JOBLINE_TEST_POSTGRES_URL, else the local server), with no Jobline tables before or after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set JOBLINE_TEST_POSTGRES_URL")
    await _drop_every_table(POSTGRES_URL)
    yield POSTGRES_URL
    await _drop_every_table(POSTGRES_URL)
