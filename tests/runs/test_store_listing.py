"""Listing, counting, naming and purging runs in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.common.db import Database
from services.runs.store import TABLES, IntegrityError, RunRow, RunStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str):
    db = Database(database_url, TABLES)
    await db.create_tables()
    yield RunStore(db)
    await db.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session's tests


def run(tenant: str, name: str, status: str = "completed", minute: int = 0, **fields) -> RunRow:
    values = dict(id=str(uuid.uuid4()), tenant_id=tenant, project_id="default", job_id="j1", job_version=1,
                  job_version_id="v1", invocation_id=str(uuid.uuid4()), status=status, snapshot=b"",
                  created_at=NOW + timedelta(minutes=minute), name=name)
    return RunRow(**{**values, **fields})


async def test_names_are_unique_per_job_and_found_by_name(store: RunStore, tenant: str) -> None:
    first = run(tenant, "nightly-1")
    await store.insert_runs([first, run(tenant, "nightly-1", job_id="j2"), run(tenant, "", minute=1),
                             run(tenant, "", minute=2)])  # unnamed rows (from before names) never collide
    with pytest.raises(IntegrityError):
        await store.insert_runs([run(tenant, "nightly-1")])
    found = await store.get_by_name(tenant, "j1", "nightly-1")
    assert found is not None and found.id == first.id
    assert await store.get_by_name("another-tenant", "j1", "nightly-1") is None
    assert await store.names_taken(tenant, "j1", ["nightly-1", "nightly-2"]) == ["nightly-1"]


async def test_offset_pages_are_counted_and_sorted_in_sql(store: RunStore, tenant: str) -> None:
    rows = [run(tenant, f"r-{i}", minute=i, duration_ms=(None if i == 2 else 100 * (5 - i)), job_version=1 + i % 2,
                triggered_by_subject_name="alice" if i < 3 else "bob",
                status=("completed", "failed", "executing")[i % 3]) for i in range(5)]
    await store.insert_runs(rows)
    names = lambda found: [r.name for r in found]  # noqa: E731
    assert names(await store.list(tenant, job_id="j1", limit=2)) == ["r-4", "r-3"]
    assert names(await store.list(tenant, job_id="j1", limit=2, offset=2)) == ["r-2", "r-1"]
    assert names(await store.list(tenant, job_id="j1", limit=10, offset=5)) == []
    assert names(await store.list(tenant, job_id="j1", ascending=True, limit=10)) == [f"r-{i}" for i in range(5)]
    # nulls last either way
    assert names(await store.list(tenant, job_id="j1", order_by="duration", limit=10)) == \
        ["r-0", "r-1", "r-3", "r-4", "r-2"]
    assert names(await store.list(tenant, job_id="j1", order_by="duration", ascending=True, limit=10)) == \
        ["r-4", "r-3", "r-1", "r-0", "r-2"]
    # status in lifecycle order (executing before completed before failed), ties by age the same way
    assert names(await store.list(tenant, job_id="j1", order_by="status", ascending=True, limit=10)) == \
        ["r-2", "r-0", "r-3", "r-1", "r-4"]
    assert names(await store.list(tenant, job_id="j1", order_by="job_version", limit=10)) == \
        ["r-3", "r-1", "r-4", "r-2", "r-0"]
    filters = dict(job_id="j1", statuses=["completed", "failed"], job_versions=[1], subject_names=["alice", "bob"])
    assert names(await store.list(tenant, **filters, limit=10)) == ["r-4", "r-0"]
    assert await store.count(tenant, **filters) == 2
    assert await store.count(tenant, job_id="j1") == 5
    assert await store.count(tenant, job_id="j1", subject_names=["bob"]) == 2
    assert await store.count("another-tenant", job_id="j1") == 0


async def test_the_name_prefix_is_exact_and_also_matches_ids(store: RunStore, tenant: str) -> None:
    rows = [run(tenant, "Train-a"), run(tenant, "train-b", minute=1), run(tenant, "train%c", minute=2),
            run(tenant, "eval-x", minute=3, id="train-id-1")]
    await store.insert_runs(rows)
    found = {prefix: sorted(r.name for r in await store.list(tenant, job_id="j1", name_prefix=prefix, limit=10))
             for prefix in ("train", "Train", "train%", "train_", "x")}
    assert found == {"train": ["eval-x", "train%c", "train-b"], "Train": ["Train-a"], "train%": ["train%c"],
                     "train_": [], "x": []}


async def test_purge_removes_a_finished_run_with_its_output_but_never_an_active_one(
        store: RunStore, tenant: str) -> None:
    done, active = run(tenant, "done"), run(tenant, "active", status="executing", minute=1)
    await store.insert_runs([done, active])
    await store.add_chunks([dict(run_id=done.id, attempt=1, sequence=1, stream=1, data=b"x", created_at=NOW)])
    assert not await store.purge(tenant, active.id)
    assert not await store.purge("another-tenant", done.id)
    assert await store.purge(tenant, done.id)
    assert await store.get(tenant, done.id) is None and await store.chunks(done.id) == []
    assert await store.events(tenant, done.id) == []
    assert await store.get(tenant, active.id) is not None
    assert not await store.purge(tenant, done.id)
