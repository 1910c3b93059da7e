"""The runs store on SQLite and PostgreSQL: leases, idempotent output, timers."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from services.common.clock import as_utc
from services.common.db import Database
from services.runs.store import TABLES, Changed, IntegrityError, RunEventRow, RunRow, RunStore, Transition

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str):
    db = Database(database_url, TABLES)
    await db.create_tables()
    yield RunStore(db)
    await db.close()


def run(status: str = "queued", target: str = "t1/d1", priority: int = 0, **fields) -> RunRow:
    values = dict(id=str(uuid.uuid4()), tenant_id="t1", project_id="default", job_id="j1", job_version=1,
                  job_version_id="v1", invocation_id="i1", target_key=target, device_id=target.split("/")[-1],
                  status=status, priority=priority, snapshot=b"", created_at=NOW, scheduled_at=NOW)
    return RunRow(**{**values, **fields})


async def test_two_replicas_never_claim_the_same_run(store: RunStore) -> None:
    rows = [run() for _ in range(50)]
    await store.insert_runs(rows)
    ids = [r.id for r in rows]
    first, second = await asyncio.gather(
        store.claim(ids, "replica-a", NOW, NOW + timedelta(seconds=30)),
        store.claim(ids, "replica-b", NOW, NOW + timedelta(seconds=30)),
    )
    assert not first & second and first | second == set(ids)
    assert await store.claim(ids, "replica-c", NOW, NOW) == set()


async def test_a_claim_can_start_what_it_claims_with_each_runs_deadline(store: RunStore) -> None:
    quick, slow, unbounded = run(timeout_secs=10), run(timeout_secs=300), run(timeout_secs=0)
    await store.insert_runs([quick, slow, unbounded])
    ids = [quick.id, slow.id, unbounded.id]
    assert await store.claim(ids, "replica-a", NOW, NOW + timedelta(seconds=30), start_slack=60) == set(ids)
    started = {row.id: row for row in await store.get_many("t1", ids)}
    for row in started.values():
        assert (row.status, row.lease_owner) == ("executing", "replica-a")
        assert {as_utc(row.dequeued_at), as_utc(row.started_at), as_utc(row.heartbeat_at)} == {NOW}
    deadlines = {run_id: row.lease_expires_at and as_utc(row.lease_expires_at) for run_id, row in started.items()}
    assert deadlines == {quick.id: NOW + timedelta(seconds=70), slow.id: NOW + timedelta(seconds=360),
                         unbounded.id: None}
    assert [e.type for e in await store.events("t1", quick.id)] == ["run.created", "run.executing"]


async def test_the_queue_is_ordered_by_priority_then_age(store: RunStore) -> None:
    old = run(created_at=NOW - timedelta(minutes=1))
    urgent = run(priority=5)
    other_device = run(target="t1/d2")
    await store.insert_runs([run(), old, urgent, other_device])
    queued = await store.queued_for(["t1/d1"], limit=2)
    assert [r.id for r in queued] == [urgent.id, old.id]


async def test_output_chunks_are_stored_once(store: RunStore) -> None:
    row = run()
    await store.insert_runs([row])
    chunk = dict(run_id=row.id, attempt=1, stream=1, created_at=NOW)
    await store.add_chunks([{**chunk, "sequence": 1, "data": b"a"}, {**chunk, "sequence": 2, "data": b"b"}])
    await store.add_chunks([{**chunk, "sequence": 2, "data": b"b"}, {**chunk, "sequence": 4, "data": b"d"}])
    assert [c.data for c in await store.chunks(row.id)] == [b"a", b"b", b"d"]
    assert await store.highest_contiguous(row.id, 1) == 2
    await store.add_chunks([{**chunk, "sequence": 3, "data": b"c"}])
    assert await store.highest_contiguous(row.id, 1) == 4


async def test_transitions_are_compare_and_set(store: RunStore) -> None:
    row = run(status="executing")
    await store.insert_runs([row])
    assert await store.transition(row.id, 1, ("executing",), status="completed")
    assert not await store.transition(row.id, 1, ("executing",), status="failed")
    assert (await store.get("t1", row.id)).status == "completed"
    assert await store.get("another-tenant", row.id) is None


async def test_timers_are_rows(store: RunStore) -> None:
    due = run(status="delayed", scheduled_at=NOW - timedelta(seconds=1))
    later = run(status="delayed", scheduled_at=NOW + timedelta(hours=1))
    silent = run(status="executing", heartbeat_at=NOW - timedelta(minutes=5))
    lively = run(status="executing", heartbeat_at=NOW)
    unaccepted = run(status="dequeued", lease_expires_at=NOW - timedelta(seconds=1))
    await store.insert_runs([due, later, silent, lively, unaccepted])
    assert [r.id for r in await store.due_delayed(NOW)] == [due.id]
    assert {r.id for r in await store.stale(NOW, NOW - timedelta(seconds=30))} == {silent.id, unaccepted.id}
    await store.touch_heartbeats([silent.id], NOW)
    assert {r.id for r in await store.stale(NOW, NOW - timedelta(seconds=30))} == {unaccepted.id}


async def test_run_numbers_are_unique_and_increasing_across_concurrent_batches(store: RunStore) -> None:
    batches = [[run() for _ in range(size)] for size in (1, 5, 3, 20, 1, 7, 2, 9)]
    await asyncio.gather(*(store.insert_runs(batch) for batch in batches))
    numbers = [r.number for batch in batches for r in batch]
    assert all(isinstance(n, int) and n > 0 for n in numbers)
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    for batch in batches:  # one block per batch, in the batch's order
        assert [r.number for r in batch] == list(range(batch[0].number, batch[0].number + len(batch)))
    found = await store.get_by_number("t1", batches[3][4].number)
    assert found is not None and found.id == batches[3][4].id
    assert await store.get_by_number("other-tenant", batches[3][4].number) is None


def test_a_run_built_by_new_is_the_run_the_constructor_builds() -> None:
    values = dict(id="r1", tenant_id="t1", project_id="default", job_id="j1", job_version=1, job_version_id="v1",
                  invocation_id="i1", status="queued", snapshot=b"", created_at=NOW, metadata_={"k": "v"},
                  payload={"n": 1}, priority=3)
    built, constructed = RunRow.new(**values), RunRow(**values)
    assert built.model_dump() == constructed.model_dump()
    assert built.__pydantic_fields_set__ == constructed.__pydantic_fields_set__
    assert built.tags == {} and built.tags is not RunRow.new(**values).tags  # a default factory's own value
    built.number = 7
    assert built.number == 7 and built.model_dump()["number"] == 7


async def test_concurrent_inserts_share_one_insert_and_a_duplicate_fails_only_its_caller(store: RunStore) -> None:
    await store.insert_runs([run(idempotency_key="k")])
    batches = [[run(), run()], [run(idempotency_key="k")], [run()]]
    outcomes = await asyncio.gather(*(store.insert_runs(rows) for rows in batches), return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], IntegrityError)
    stored = [await store.get("t1", row.id) for row in (*batches[0], *batches[2])]
    assert all(row is not None for row in stored)
    numbers = [row.number for row in stored]
    assert numbers == sorted(set(numbers)) and numbers[0] > 1
    assert await store.get("t1", batches[1][0].id) is None
    assert len(await store.events("t1", batches[0][0].id)) == 1


async def test_every_column_of_inserted_runs_round_trips(store: RunStore) -> None:
    later = NOW + timedelta(hours=1)
    full = dict(
        target_key="t1/d9", device_id="d9", status="executing", attempt=2, max_attempts=5, priority=-3, command="echo ü",
        timeout_secs=17, payload={"n": 1, "nested": {"list": [1, "two", None, 3.5]}}, result={"ok": True},
        metadata_={"team": "a"}, tags={"env": "prod"}, trace={"queued_ms": 4}, error="boom", exit_code=3,
        triggered_by="manual", created_by="someone", idempotency_key="key-1", payload_hash="h" * 64,
        batch_id="b1", run_token_hash="t" * 64, parent_run_id="p1", continuation_of="c1", root_run_id="r1",
        lineage_depth=2, concurrency_key="ck", limited=True, max_concurrency=4, max_concurrency_per_key=2,
        rate_limit_max=9, rate_limit_window_secs=60, key_rate_max=3, key_rate_window_secs=30, rate_until=later,
        key_rate_until=later, dependencies=[{"id": "d", "depends_on_job_id": "j0", "condition": "on_success",
                                             "created_at": ""}],
        webhook_url="http://hook", duration_ms=1234, scheduled_at=later, dequeued_at=later, started_at=later,
        finished_at=later, heartbeat_at=later, next_retry_at=later, expires_at=later, lease_owner="replica-a",
        lease_expires_at=later, name="the-run", triggered_by_subject_id="u1", triggered_by_subject_type="user",
        triggered_by_subject_name="Someone", snapshot=b"\x00\x01snapshot")
    rows = [run(**full), RunRow.new(**{**run().model_dump(), "metadata_": {}}), run()]  # full, new-built, defaults
    await store.insert_runs(rows)
    for row in rows:
        stored = await store.get("t1", row.id)
        assert stored is not None and stored.number == row.number
        assert stored.model_dump() == row.model_dump()
        events = await store.events("t1", row.id)
        assert [(e.type, e.data) for e in events] == [("run.created", {"status": row.status, "attempt": 1})]


async def test_many_transitions_are_compare_and_set_each_and_one_bad_item_fails_alone(store: RunStore) -> None:
    rows = [run(status="dequeued") for _ in range(4)]
    rows[3].attempt = 2
    await store.insert_runs(rows)
    executing = dict(status="executing", started_at=NOW)
    bad = dict(status="executing", no_such_column=1)  # this item's statement fails
    first, second = await asyncio.gather(
        store.transition_many([Transition(rows[0].id, 1, ("dequeued",), executing),
                               Transition(rows[1].id, 1, ("dequeued",), executing),
                               Transition(rows[0].id, 1, ("dequeued",), executing),  # again: moved already
                               Transition(rows[3].id, 1, ("dequeued",), executing)]),  # another attempt
        store.transition_many([Transition(rows[2].id, 1, ("dequeued",), bad)]))
    assert [c.id if c else c for c in first] == [rows[0].id, rows[1].id, None, None]
    assert first[0].status == "executing" and isinstance(second[0], BaseException)
    statuses = {r.id: r.status for r in await store.get_many("t1", [r.id for r in rows])}
    assert [statuses[r.id] for r in rows] == ["executing", "executing", "dequeued", "dequeued"]
    # stored dequeued, as a run claimed at its insert: created queued, then its claim
    assert [e.type for e in await store.events("t1", rows[0].id)] == ["run.created", "run.dequeued", "run.executing"]


@dataclass
class End:
    run_id: str
    attempt: int
    status: str
    result: object = None


def ended(row, end: End):
    if row.attempt != end.attempt or row.status not in ("dequeued", "executing"):
        return None
    if end.status == "raise":
        raise ValueError("this one cannot be decided")
    values = dict(status=end.status, error="", trace={"n": row.attempt}, result=end.result, finished_at=NOW)
    if end.status == "delayed":  # a retry: the next attempt
        values = dict(status="delayed", attempt=row.attempt + 1, scheduled_at=NOW, error="again", trace={},
                      result=None)
    return values


async def test_attempts_end_in_one_write_each_on_its_own(store: RunStore) -> None:
    rows = [run(status="executing", webhook_url="http://hook" if i == 0 else "") for i in range(6)]
    await store.insert_runs(rows)
    a, b, c, d, e, f = (r.id for r in rows)
    writes = store.db.writer.batches
    answers = await store.end_attempts([End(a, 1, "completed", {"ok": True}), End(b, 1, "failed"),
                                        End(c, 1, "delayed"), End(d, 1, "raise"), End(a, 1, "failed"),
                                        End(e, 2, "completed")], ended)
    assert store.db.writer.batches == writes + 1
    assert [x.status if isinstance(x, Changed) else x for x in answers[:3]] == ["completed", "failed", "delayed"]
    assert isinstance(answers[3], ValueError) and answers[4:] == [None, None]
    got = {r.id: r for r in await store.get_many("t1", [r.id for r in rows])}
    assert [got[x].status for x in (a, b, c, d, e)] == ["completed", "failed", "delayed", "executing", "executing"]
    assert got[a].result == {"ok": True} and got[b].result is None and got[a].trace == {"n": 1}
    assert (got[c].attempt, answers[2].attempt) == (2, 2)
    assert [e.type for e in await store.events("t1", a)] == ["run.created", "run.completed"]
    assert len(await store.deliveries(a)) == 1 and await store.deliveries(b) == []
    # a value the database cannot take fails that ending alone (the rest are written one by one)
    answers = await store.end_attempts([End(e, 1, "completed", {"bad": {1, 2}}), End(f, 1, "completed")], ended)
    assert isinstance(answers[0], BaseException) and answers[1].status == "completed"
    got = {r.id: r for r in await store.get_many("t1", [e, f])}
    assert (got[e].status, got[f].status) == ("executing", "completed")
    assert [e.type for e in await store.events("t1", f)] == ["run.created", "run.completed"]


async def test_many_transitions_and_endings_keep_to_the_target_and_a_retry_returns_to_its_pool(store: RunStore) -> None:
    pooled = run(status="executing", target="t1/d2", pool_key="t1/pool:g")
    other = run(status="dequeued", target="t1/d3")
    await store.insert_runs([pooled, other])
    moved = await store.transition_many([Transition(other.id, 1, ("dequeued",), dict(status="executing"), "t1/d9")])
    assert moved == [None]  # another device's report
    answers = await store.end_attempts([End(pooled.id, 1, "delayed")], ended)
    assert answers[0].status == "delayed" and answers[0].target_key == "t1/pool:g"
    row = (await store.get_many("t1", [pooled.id]))[0]
    assert (row.status, row.attempt, row.target_key, row.device_id) == ("delayed", 2, "t1/pool:g", "")


async def event_rows(store: RunStore) -> int:
    async with store.db.session() as session:
        return (await session.exec(select(func.count()).select_from(RunEventRow))).one()


async def test_a_new_run_writes_no_event_row_and_its_created_event_comes_from_the_run(store: RunStore) -> None:
    queued, delayed = run(), run(status="delayed", scheduled_at=NOW + timedelta(hours=1))
    waiting = run(status="waiting", created_at=NOW + timedelta(microseconds=3))
    await store.insert_runs([queued, delayed, waiting])
    assert await event_rows(store) == 0  # the run rows say it
    for row in (queued, delayed, waiting):
        (event,) = await store.events("t1", row.id)
        assert (event.run_id, event.type, event.level, event.message, event.data) == (
            row.id, "run.created", "info", f"run {row.status}", {"status": row.status, "attempt": 1})
        assert as_utc(event.created_at) == as_utc(row.created_at)
        assert (await store.events("t1", row.id))[0].id == event.id  # stable
    assert len({(await store.events("t1", r.id))[0].id for r in (queued, delayed, waiting)}) == 3
    assert await store.events("another-tenant", queued.id) == []

    # Whatever happens to the run later, its first event still tells how it was created; filters apply.
    assert await store.claim([queued.id], "replica-a", NOW, NOW + timedelta(seconds=30))
    assert await store.end_attempts([End(queued.id, 1, "delayed")], ended)
    assert await store.transition(queued.id, 2, ("delayed",), status="failed", error="boom")
    events = await store.events("t1", queued.id)
    assert [(e.type, e.data["status"]) for e in events] == [
        ("run.created", "queued"), ("run.dequeued", "dequeued"), ("run.delayed", "delayed"), ("run.failed", "failed")]
    assert [e.type for e in await store.events("t1", queued.id, level="info")] == [
        "run.created", "run.dequeued", "run.delayed"]
    assert [e.type for e in await store.events("t1", queued.id, level="error")] == ["run.failed"]
    assert [e.type for e in await store.events("t1", queued.id, type_="run.created")] == ["run.created"]
    assert await store.events("t1", queued.id, type_="run.created", level="error") == []
    assert [e.type for e in await store.events("t1", queued.id, type_="run.failed")] == ["run.failed"]
    assert await event_rows(store) == 3


async def test_a_run_stored_before_keeps_its_created_event_row_once(store: RunStore) -> None:
    """A database of an older release: its runs_runs gains created_status ("" in the rows it had), and
    their run.created events stay the runs_events rows they were written as."""
    old = run()
    await store.insert_runs([old])
    async with store.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE runs_runs DROP COLUMN created_status"))
    assert await store.db.create_tables() == ["add column runs_runs.created_status"]
    async with store.db.session() as session:
        session.add(RunEventRow(id="e-old", run_id=old.id, tenant_id="t1", type="run.created", level="info",
                                message="run queued", data={"status": "queued", "attempt": 1}, created_at=NOW))
    assert (await store.get("t1", old.id)).created_status == ""
    assert [(e.id, e.type) for e in await store.events("t1", old.id)] == [("e-old", "run.created")]
    new = run()
    await store.insert_runs([new])
    assert (await store.get("t1", new.id)).created_status == "queued"
    assert [e.type for e in await store.events("t1", new.id)] == ["run.created"]


async def test_accepts_of_many_devices_are_one_statement_each_checked_against_its_target(store: RunStore) -> None:
    from sqlalchemy import event

    rows = [run(status="dequeued", target=f"t1/d{i}") for i in range(5)]
    await store.insert_runs(rows)
    updates: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        if statement.startswith("UPDATE runs_runs"):
            updates.append(statement)

    engine = store.db.writer.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        executing = dict(status="executing", started_at=NOW)
        answers = await store.transition_many(
            [Transition(r.id, 1, ("dequeued",), executing, r.target_key) for r in rows[:4]]
            + [Transition(rows[4].id, 1, ("dequeued",), executing, "t1/d9"),  # another device's report
               Transition(rows[0].id, 1, ("dequeued",), executing, "t1/d9")])  # the same run from elsewhere
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [a.id if a else a for a in answers] == [r.id for r in rows[:4]] + [None, None]
    statuses = {r.id: r.status for r in await store.get_many("t1", [r.id for r in rows])}
    assert [statuses[r.id] for r in rows] == ["executing"] * 4 + ["dequeued"]
    assert len(updates) <= 3  # not one per device
