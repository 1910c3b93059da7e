"""Fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get("JOBLINE_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL for store tests: a SQLite file, and PostgreSQL when JOBLINE_TEST_POSTGRES_URL is set.

    Each service drops and recreates its own tables on PostgreSQL (see `fresh_tables`)."""
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("JOBLINE_TEST_POSTGRES_URL is not set")
        return POSTGRES_URL
    return f"sqlite:///{tmp_path}/test.db"
