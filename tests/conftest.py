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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL for store tests: a SQLite file, and PostgreSQL when JOBLINE_TEST_POSTGRES_URL is set.

    Each service drops and recreates its own tables on PostgreSQL (see `fresh_tables`)."""
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("no PostgreSQL: set JOBLINE_TEST_POSTGRES_URL")
        return POSTGRES_URL
    return f"sqlite:///{tmp_path}/test.db"
