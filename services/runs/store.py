"""Runs tables and the queries on them. Queues, timers, leases and webhook deliveries are rows here.

Every write goes through the database's group commit (`Database.write`): a sync function of the
writer's Connection, committed with whatever else was written meanwhile, answered after the COMMIT.
Reads use async sessions.

Every statement that changes a run's status returns the changed rows and, in the same transaction,
writes one `runs_events` row per change and, for a terminal state of a job with a webhook, one
`runs_webhook_deliveries` row (sent later by the webhook loop). A new run's first event, run.created,
is no row: the run row says it (`created_event`), what saves a trigger half the rows it writes."""

from __future__ import annotations

import json
import math
import operator
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (JSON, BigInteger, Column, Connection, Index, LargeBinary, Row, and_, bindparam, case, delete,
                        func, insert, not_, null, or_, text, tuple_, update)
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession as _SqlAlchemySession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import manager_of_class
from sqlmodel import Field, SQLModel, select

from services.common.clock import Clock, as_utc
from services.common.counters import reserve
from services.common.db import Database, RowInsert
from services.common.ids import uuid7_strings
from services.common.secrets import scrub_log


ACTIVE = ("delayed", "queued", "dequeued", "executing", "waiting")
NOT_STARTED = ("delayed", "queued", "waiting")
ON_DEVICE = ("dequeued", "executing")
UNACCEPTED = (*NOT_STARTED, "dequeued")  # active, and not (yet) accepted by an agent: not started
TERMINAL = ("completed", "failed", "timed_out", "crashed", "system_failed", "canceled", "expired", "dead_letter")
# RunStatus order (the lifecycle), what "order by status" follows.
LIFECYCLE = ("delayed", "queued", "dequeued", "executing", "waiting", "completed", "failed", "timed_out", "crashed",
             "system_failed", "canceled", "expired", "dead_letter")
EVENT_LEVELS = {"failed": "error", "timed_out": "error", "crashed": "error", "system_failed": "error",
                "dead_letter": "error", "expired": "warn", "canceled": "warn"}


class RunRow(SQLModel, table=True):
    __tablename__ = "runs_runs"
    __table_args__ = (
        # In the order dispatch takes them (most urgent, then oldest): a long queue is read, not sorted.
        Index("ix_runs_queue", "status", "target_key", text("priority DESC"), "created_at"),
        Index("ix_runs_tenant_created", "tenant_id", "created_at"),
        Index("ix_runs_invocation", "invocation_id"),
        Index("ix_runs_due", "status", "scheduled_at"),
        # Partial, so small: which pools have queued runs; the runs with a TTL; the flow-limited runs
        # (what the ticker looks at every second without reading the whole queue).
        Index("ix_runs_pools", "status", "pool_key", sqlite_where=text("pool_key != ''"),
              postgresql_where=text("pool_key != ''")),
        Index("ix_runs_expiry", "status", "expires_at", sqlite_where=text("expires_at IS NOT NULL"),
              postgresql_where=text("expires_at IS NOT NULL")),
        Index("ix_runs_limited", "status", sqlite_where=text("limited = 1"), postgresql_where=text("limited")),
        Index("ix_runs_job_created", "job_id", "created_at"),
        Index("ix_runs_parent", "parent_run_id"),
        Index("ix_runs_lineage", "root_run_id"),
        Index("ix_runs_batch", "batch_id"),
        Index("ux_runs_number", "number", unique=True),
        # One run per (job, idempotency key); a reset key is "" and never collides.
        Index("ux_runs_idempotency", "tenant_id", "job_id", "idempotency_key", unique=True,
              sqlite_where=text("idempotency_key != ''"), postgresql_where=text("idempotency_key != ''")),
        # Run names are unique among a job's runs (rows from before names existed have "").
        Index("ux_runs_name", "tenant_id", "job_id", "name", unique=True,
              sqlite_where=text("name != ''"), postgresql_where=text("name != ''")),
    )

    id: str = Field(primary_key=True, max_length=64)
    # Unique, increasing in creation order; set by RunStore.insert_runs from runs_counters.
    number: int | None = Field(default=None, sa_type=BigInteger)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    job_id: str = Field(max_length=64)
    job_version: int
    job_version_id: str = Field(max_length=64)
    invocation_id: str = Field(max_length=64)
    # "<tenant>/<device>" for device runs, "" for endpoint runs: what the dispatcher matches on; a
    # pooled run's pool key while it waits (services/runs/pools.py).
    target_key: str = Field(default="", max_length=256)
    device_id: str = Field(default="", max_length=128)
    # The pool of a run for "any one available device" of its targets ("" for others): where every way
    # back to the queue returns it (target_key and device_id say which device took it).
    pool_key: str = Field(default="", max_length=256)
    status: str = Field(max_length=16)
    # The status the run was stored in (set by RunStore.insert_runs): what its run.created event, which is
    # no row of its own, says (RunStore.events). "" for runs stored before: their event is a runs_events row.
    created_status: str = Field(default="", max_length=16)
    attempt: int = 1
    max_attempts: int = 3
    priority: int = 0
    command: str = ""
    timeout_secs: int = 300
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    metadata_: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    tags: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    trace: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    # The jobline.jobs.v1.Job the run executes, as of its version.
    snapshot: bytes = Field(sa_column=Column(LargeBinary))
    error: str = ""
    exit_code: int | None = None
    triggered_by: str = ""
    created_by: str = ""
    idempotency_key: str = Field(default="", max_length=256)
    # SHA-256 of the canonical payload, for dedup_window_secs.
    payload_hash: str = Field(default="", max_length=64)
    batch_id: str = Field(default="", max_length=64)
    run_token_hash: str = Field(default="", max_length=64)
    parent_run_id: str = Field(default="", max_length=64)
    continuation_of: str = Field(default="", max_length=64)
    root_run_id: str = Field(default="", max_length=64)
    lineage_depth: int = 0
    # Flow control, copied from the job at trigger time; `limited` when any applies.
    concurrency_key: str = Field(default="", max_length=256)
    limited: bool = False
    max_concurrency: int = 0
    max_concurrency_per_key: int = 0
    rate_limit_max: int = 0
    rate_limit_window_secs: int = 0
    key_rate_max: int = 0
    key_rate_window_secs: int = 0
    # Until when this run's start counts against the job's / the key's rate limit.
    rate_until: datetime | None = None
    key_rate_until: datetime | None = None
    # [{id, depends_on_job_id, condition, created_at}] while it waits on other jobs.
    dependencies: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    webhook_url: str = ""
    duration_ms: int | None = None
    created_at: datetime
    scheduled_at: datetime | None = None
    dequeued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    next_retry_at: datetime | None = None
    expires_at: datetime | None = None
    lease_owner: str = Field(default="", max_length=64)
    lease_expires_at: datetime | None = None
    # Unique among the job's runs: the trigger's name, else the job's slug and a random suffix.
    name: str = Field(default="", max_length=192)
    # Who triggered the run, from the caller's principal: subject id, type ("user", "service_account",
    # "device") and name (login or account name).
    triggered_by_subject_id: str = Field(default="", max_length=128)
    triggered_by_subject_type: str = Field(default="", max_length=32)
    triggered_by_subject_name: str = Field(default="", max_length=256)

    @classmethod
    def new(cls, **values: Any) -> RunRow:
        """A new run, as `RunRow(**values)` makes it, for `RunStore.insert_runs` (a Core INSERT) and its
        readers, built at a fraction of the cost: `RunRow(...)` sends each of its 60-odd fields through
        SQLModel's and SQLAlchemy's attribute instrumentation (change events, pydantic bookkeeping), what
        a trigger of many runs spent most of its time on. Setting a field afterwards is instrumented as usual."""
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: dict[str, Any], template: RunTemplate | None = None) -> RunRow:
        """`RunRow.new(**template.values, **values)` (no template: `RunRow.new(**values)`), without
        unpacking dicts into keywords; a template's values are shared by the runs made from it."""
        row = manager_of_class(cls).new_instance()
        state = row.__dict__
        if template is None:
            state.update(_RUN_CONSTANT_DEFAULTS)
            missing, fields = _RUN_DEFAULT_FACTORIES, set(values)
        else:
            state.update(template.state)
            missing, fields = template.missing, template.fields | values.keys()
        for name, factory in missing:
            if name not in values:
                state[name] = factory()
        state.update(values)
        object.__setattr__(row, "__pydantic_fields_set__", fields)
        object.__setattr__(row, "__pydantic_extra__", None)
        return row


class RunTemplate:
    """What many new runs have alike (`values`, fields of RunRow), prepared once for RunRow.from_values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.state = {**_RUN_CONSTANT_DEFAULTS, **values}  # every field but the default factories' not given
        self.fields = frozenset(values)
        self.missing = tuple((name, factory) for name, factory in _RUN_DEFAULT_FACTORIES if name not in values)


class LogChunkRow(SQLModel, table=True):
    __tablename__ = "runs_log_chunks"

    run_id: str = Field(primary_key=True, max_length=64)
    attempt: int = Field(primary_key=True)
    sequence: int = Field(primary_key=True)
    stream: int
    data: bytes = Field(sa_column=Column(LargeBinary))
    created_at: datetime


class RunEventRow(SQLModel, table=True):
    __tablename__ = "runs_events"
    __table_args__ = (Index("ix_runs_events_run", "run_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=64)
    run_id: str = Field(max_length=64)
    tenant_id: str = Field(max_length=64)
    type: str = Field(max_length=64)
    level: str = Field(max_length=16)
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime
    # Orders events written at the same created_at (nanoseconds of the writer's monotonic-ish clock).
    seq: int = Field(default=0, sa_type=BigInteger)


class WebhookDeliveryRow(SQLModel, table=True):
    __tablename__ = "runs_webhook_deliveries"
    __table_args__ = (Index("ix_runs_webhooks_due", "state", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    run_id: str = Field(max_length=64)
    url: str
    body: str
    state: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    last_status: int | None = None
    last_error: str = ""
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None


class CounterRow(SQLModel, table=True):
    """Named sequences; `run_number` hands out RunRow.number in blocks, one UPDATE per insert batch."""

    __tablename__ = "runs_counters"

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(default=0, sa_type=BigInteger)


RUN_NUMBER = "run_number"

TABLES = [RunRow, LogChunkRow, RunEventRow, WebhookDeliveryRow, CounterRow]

# What a status change returns, enough to write its event and webhook delivery.
_CHANGED = (RunRow.id, RunRow.tenant_id, RunRow.job_id, RunRow.project_id, RunRow.status, RunRow.attempt,
            RunRow.result, RunRow.error, RunRow.webhook_url, RunRow.target_key, RunRow.limited)
# What dispatch reads of a queued run (RunStore.queued_for answers Queued rows of these columns): where it
# goes, what it runs, since when it waits.
QUEUED = (RunRow.id, RunRow.attempt, RunRow.target_key, RunRow.job_id, RunRow.job_version_id, RunRow.command,
          RunRow.payload, RunRow.timeout_secs, RunRow.snapshot, RunRow.created_at, RunRow.scheduled_at,
          RunRow.next_retry_at)
Queued = Row  # a row of the QUEUED columns
# What a claim weighs: a run's flow-control limits.
_CLAIMED = (RunRow.id, RunRow.timeout_secs, RunRow.job_id, RunRow.concurrency_key, RunRow.limited, RunRow.max_concurrency,
            RunRow.max_concurrency_per_key, RunRow.rate_limit_max, RunRow.rate_limit_window_secs,
            RunRow.key_rate_max, RunRow.key_rate_window_secs)
# What the end of an attempt reads of its run: enough to decide what follows, and to record the change.
_ENDING = (RunRow.id, RunRow.tenant_id, RunRow.job_id, RunRow.project_id, RunRow.status, RunRow.attempt,
           RunRow.max_attempts, RunRow.snapshot, RunRow.webhook_url, RunRow.target_key, RunRow.limited,
           RunRow.created_at, RunRow.scheduled_at, RunRow.dequeued_at, RunRow.started_at, RunRow.pool_key)
# The end of one attempt, executed for many (the SET clause is the keys of each parameter set): if the run
# is still at that attempt, in that status, on that target.
_ENDING_UPDATE = update(RunRow.__table__).where(
    RunRow.__table__.c.id == bindparam("b_id"), RunRow.__table__.c.attempt == bindparam("b_attempt"),
    RunRow.__table__.c.status == bindparam("b_status"), RunRow.__table__.c.target_key == bindparam("b_target"))
_RUN_FIELDS = tuple(RunRow.model_fields)
_RUN_COLUMNS = tuple("metadata" if name == "metadata_" else name for name in _RUN_FIELDS)
_run_values = operator.itemgetter(*_RUN_FIELDS)
# New runs and events: many rows a statement (see RowInsert).
_RUN_INSERT = RowInsert(RunRow.__table__, _RUN_COLUMNS)
_EVENT_INSERT = RowInsert(RunEventRow.__table__, ("id", "run_id", "tenant_id", "type", "level", "message", "data",
                                                 "created_at", "seq"))
# The default of each optional field: plain ones (immutable: str, int, bool, None), and default factories.
_RUN_CONSTANT_DEFAULTS = {name: field.default for name, field in RunRow.model_fields.items()
                          if not field.is_required() and field.default_factory is None}
_RUN_DEFAULT_FACTORIES = tuple((name, field.default_factory) for name, field in RunRow.model_fields.items()
                               if not field.is_required() and field.default_factory is not None)


@dataclass(frozen=True)
class Changed:
    id: str
    tenant_id: str
    job_id: str
    project_id: str
    status: str
    attempt: int
    result: dict | None
    error: str
    webhook_url: str
    target_key: str
    limited: bool


TRANSITION_CHUNK = 5000  # compare-and-sets in one UPDATE at most (each takes up to three parameters)


@dataclass(frozen=True)
class Transition:
    """One compare-and-set of `RunStore.transition_many`: these values, if the run is still at this
    attempt in one of those states."""

    run_id: str
    attempt: int
    from_statuses: tuple[str, ...]
    values: dict[str, Any]
    on_target: str | None = None  # given: only if the run still has that target (see RunStore.transition)


@dataclass(frozen=True)
class Usage:
    """How much of its flow-control limits a job (and each of its keys) uses now."""

    active: dict[str, int]
    active_by_key: dict[tuple[str, str], int]
    started: dict[str, int]
    started_by_key: dict[tuple[str, str], int]

    def allows(self, row: Any) -> bool:
        job, key = row.job_id, (row.job_id, row.concurrency_key)
        if getattr(row, "max_concurrency", 0) and self.active.get(job, 0) >= row.max_concurrency:
            return False
        if getattr(row, "rate_limit_max", 0) and self.started.get(job, 0) >= row.rate_limit_max:
            return False
        if row.concurrency_key:
            if row.max_concurrency_per_key and self.active_by_key.get(key, 0) >= row.max_concurrency_per_key:
                return False
            if row.key_rate_max and self.started_by_key.get(key, 0) >= row.key_rate_max:
                return False
        return True

    def take(self, row: RunRow) -> None:
        key = (row.job_id, row.concurrency_key)
        for counts, k in ((self.active, row.job_id), (self.started, row.job_id),
                          (self.active_by_key, key), (self.started_by_key, key)):
            counts[k] = counts.get(k, 0) + 1


def canonical_hash(payload: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RunStore:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    # -- writing status changes ---------------------------------------------------------------

    def _record(self, conn: Connection, changed: Sequence[Changed], *, message: str = "") -> None:
        """Writes each change's event, and a webhook delivery for each terminal one with a webhook."""
        if not changed:
            return
        now = self.clock.now()
        base = time.time_ns()
        data: dict[tuple[str, int], dict[str, Any]] = {}  # one object per (status, attempt): serialized once
        ids = uuid7_strings(len(changed))
        events = [(ids[i], c.id, c.tenant_id, f"run.{c.status}",
                   event_level(c.status),
                   message or (c.error if c.status in TERMINAL and c.error else f"run {c.status}"),
                   data.get((c.status, c.attempt)) or data.setdefault((c.status, c.attempt),
                                                                      {"status": c.status, "attempt": c.attempt}),
                   now, base + i)
                  for i, c in enumerate(changed)]
        _EVENT_INSERT.execute(conn, events)
        deliveries = [dict(id=str(uuid.uuid4()), tenant_id=c.tenant_id, run_id=c.id, url=c.webhook_url,
                           body=webhook_body(c, now), next_attempt_at=now, created_at=now)
                      for c in changed if c.webhook_url and c.status in TERMINAL]
        if deliveries:
            conn.execute(insert(WebhookDeliveryRow.__table__), deliveries)

    def _changes(self, conn: Connection, statement, **record: str) -> list[Changed]:
        """Runs a status-changing UPDATE and records what it changed."""
        changed = [Changed(*row) for row in conn.execute(statement.returning(*_CHANGED))]
        self._record(conn, changed, **record)
        return changed

    async def _update(self, statement, **record: str) -> list[Changed]:
        """A status-changing UPDATE, with its record, as one write."""
        return await self.db.write(lambda conn: self._changes(conn, statement, **record))

    async def insert_runs(self, runs: Sequence[RunRow], also: Callable[[Connection], None] | None = None) -> None:
        """Stores new runs (each with the status it is created in as its `created_status`: its run.created
        event, see `created_event`; a run claimed at its insert, dequeued, was created queued and gets the
        run.dequeued event of its claim); `also(connection)` writes whatever belongs with them
        (a job invocation) in the same transaction, before them. The runs of every insert of a group
        commit go in one INSERT (and their numbers in one reservation)."""
        if runs or also is not None:
            await self.db.write_grouped(self._insert_many, (runs, also))

    def _insert_many(self, conn: Connection, inserts: list[tuple[Sequence[RunRow], Any]]) -> list[None]:
        for _runs, also in inserts:
            if also is not None:
                also(conn)
        runs = [run for batch, _also in inserts for run in batch]
        if runs:
            first = reserve(conn, CounterRow, RUN_NUMBER, len(runs)) - len(runs) + 1
            claimed = []
            for i, run in enumerate(runs):
                state = run.__dict__  # a new run, in no session: no change to track
                state["number"] = first + i
                created = state["status"]
                if created == "dequeued":  # claimed at its insert (AgentHub.reserve): created queued
                    claimed.append(run)
                    created = "queued"
                state["created_status"] = created
            _RUN_INSERT.execute(conn, [_row(run) for run in runs])
            self._record(conn, [_changed(run) for run in claimed])  # the run.dequeued of its claim
        return [None] * len(inserts)

    async def transition(self, run_id: str, attempt: int, from_statuses: Iterable[str], /,
                         on_target: str | None = None, **values: Any) -> bool:
        """Compare-and-set: applies values only if the run is still at that attempt in one of those states
        (and, given `on_target`, still has that target: a device reports only on what it was given)."""
        return bool(await self.transition_rows(run_id, attempt, from_statuses, on_target, **values))

    async def transition_rows(self, run_id: str, attempt: int, from_statuses: Iterable[str], /,
                              on_target: str | None = None, **values: Any) -> list[Changed]:
        return await self._update(_compare_and_set([run_id], attempt, from_statuses, values, on_target))

    async def set_many(self, run_ids: Sequence[str], from_statuses: Iterable[str], **values: Any) -> list[Changed]:
        """Sets values on every listed run still in one of those states (one statement)."""
        if not run_ids:
            return []
        statement = update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.status.in_(list(from_statuses)))
        return await self._update(statement.values(**back_to_pool(values)))

    async def transition_many(self, items: Sequence[Transition]) -> list[Changed | None | BaseException]:
        """Compare-and-set of many runs (each `transition` alone, in order): for each item, its change,
        None when the run was no longer at that attempt in one of those states, or the error that item
        alone hit. Items of every caller of a group commit with the same (attempt, from_statuses, values)
        are one UPDATE ... WHERE id IN (...); a statement that fails is retried item by item, each in a
        savepoint of its own, so one bad item fails nobody else."""
        if not items:
            return []
        return await self.db.write_grouped(self._transition_many, list(items))

    def _transition_many(self, conn: Connection, batches: list[list[Transition]]) -> list[list[Any]]:
        items = [item for batch in batches for item in batch]
        outcomes: list[Any] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(items):
            try:  # the runs of many devices in one statement, each checked against its own target
                key = (item.attempt, tuple(item.from_statuses), item.on_target is None, _frozen(item.values))
            except TypeError:  # values that do not hash (a dict): a group of its own
                key = (index,)
            groups.setdefault(key, []).append(index)
        for key, indexes in list(groups.items()):
            if items[indexes[0]].on_target is not None and len({items[i].run_id for i in indexes}) < len(indexes):
                # A run twice (reported by two devices): its second item goes in a statement after the first.
                rounds: list[list[int]] = []
                seen: dict[str, int] = {}
                for i in indexes:
                    turn = seen[items[i].run_id] = seen.get(items[i].run_id, -1) + 1
                    if turn == len(rounds):
                        rounds.append([])
                    rounds[turn].append(i)
                del groups[key]
                for turn, round_indexes in enumerate(rounds):
                    groups[(key, turn)] = round_indexes
        chunks = [group[start:start + TRANSITION_CHUNK] for group in groups.values()
                  for start in range(0, len(group), TRANSITION_CHUNK)]
        for indexes in chunks:  # (a statement's parameters are bounded: PostgreSQL takes 32,767)
            first = items[indexes[0]]
            run_ids = list(dict.fromkeys(items[i].run_id for i in indexes))
            targets = {items[i].on_target for i in indexes}
            statement = _compare_and_set(run_ids, first.attempt, first.from_statuses, first.values,
                                         first.on_target if len(targets) == 1 else None)
            if len(targets) > 1:
                statement = statement.where(tuple_(RunRow.id, RunRow.target_key).in_(
                    [(items[i].run_id, items[i].on_target) for i in indexes]))
            try:
                with conn.begin_nested():
                    changed = {c.id: c for c in self._changes(conn, statement)}
            except Exception:  # noqa: BLE001 - which item's fault: each alone tells
                for i in indexes:
                    outcomes[i] = self._transition_alone(conn, items[i])
                continue
            for i in indexes:  # the same run twice: the first changes it, the CAS of the next fails
                outcomes[i] = changed.pop(items[i].run_id, None)
        return _per_batch(map(len, batches), outcomes)

    def _transition_alone(self, conn: Connection, item: Transition) -> Changed | None | BaseException:
        statement = _compare_and_set([item.run_id], item.attempt, item.from_statuses, item.values, item.on_target)
        try:
            with conn.begin_nested():
                changed = self._changes(conn, statement)
        except Exception as error:  # noqa: BLE001 - this item's
            return error
        return changed[0] if changed else None

    async def end_attempts(self, items: Sequence[Any], decide: Callable[[Any, Any], dict[str, Any] | None]
                           ) -> list[Changed | None | BaseException]:
        """The end of many attempts, in one write: one read of all their runs (locked on PostgreSQL, under
        the write lock on SQLite, so nothing changes them in between), `decide(row, item)` (pure, called
        on the writer) gives each run's new values (None: not applicable), then one UPDATE per shape of
        values for all of them (executemany), and their events and webhook deliveries. Each item needs
        `run_id` and `attempt`; `row` has the columns of `_ENDING`. Answers, per item, its change, None
        (the run was not at that attempt, or decide said None), or the error that item alone hit. The same
        run twice: the first item decides it, the next sees it changed (as one `end_attempt` after the other)."""
        if not items:
            return []
        return await self.db.write_grouped(self._end_attempts, (list(items), decide))

    def _end_attempts(self, conn: Connection, batches: list[tuple[list[Any], Callable]]) -> list[list[Any]]:
        items = [(item, decide) for batch, decide in batches for item in batch]
        run_ids = sorted({item.run_id for item, _ in items})
        query = core_select(*_ENDING).where(RunRow.id.in_(run_ids)).order_by(RunRow.id)
        if self.db.is_postgres:
            query = query.with_for_update()
        rows = {row.id: row for row in conn.execute(query)}
        outcomes: list[Any] = [None] * len(items)
        planned: list[tuple[int, dict[str, Any], Changed]] = []
        taken: set[str] = set()
        for index, (item, decide) in enumerate(items):
            row = rows.get(item.run_id)
            if row is None or item.run_id in taken:
                continue
            try:
                values = decide(row, item)
            except Exception as error:  # noqa: BLE001 - this item's
                outcomes[index] = error
                continue
            if values is None:
                continue
            values = back_to_pool(values, row.pool_key)
            taken.add(item.run_id)
            planned.append((index, values, Changed(
                row.id, row.tenant_id, row.job_id, row.project_id, values.get("status", row.status),
                values.get("attempt", row.attempt), values.get("result"), values.get("error", ""),
                row.webhook_url, values.get("target_key", row.target_key), row.limited)))
        if not planned:
            return _per_batch((len(batch) for batch, _ in batches), outcomes)
        try:
            with conn.begin_nested():
                shapes: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
                for index, values, _changed in planned:
                    row = rows[items[index][0].run_id]
                    params = dict(values, b_id=row.id, b_attempt=row.attempt, b_status=row.status,
                                  b_target=row.target_key)
                    if "result" in params and params["result"] is None:
                        del params["result"]  # SQL NULL, as values(result=None) writes it (a parameter: JSON null)
                        shapes.setdefault((True, *params), []).append(params)
                    else:
                        shapes.setdefault((False, *params), []).append(params)
                for (null_result, *_keys), params in shapes.items():
                    statement = _ENDING_UPDATE.values(result=null()) if null_result else _ENDING_UPDATE
                    result = conn.execute(statement, params)
                    if conn.dialect.supports_sane_multi_rowcount and result.rowcount not in (-1, len(params)):
                        raise RuntimeError(f"{len(params) - result.rowcount} of {len(params)} runs moved meanwhile")
                self._record(conn, [changed for _, _, changed in planned])
            for index, _values, changed in planned:
                outcomes[index] = changed
        except Exception:  # noqa: BLE001 - which item's fault: each alone tells
            for index, values, _changed in planned:
                row = rows[items[index][0].run_id]
                outcomes[index] = self._transition_alone(conn, Transition(row.id, row.attempt, (row.status,), values,
                                                                          row.target_key))
        return _per_batch((len(batch) for batch, _ in batches), outcomes)

    async def reset_idempotency_key(self, tenant_id: str, run_id: str) -> bool:
        statement = update(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.id == run_id).values(idempotency_key="")
        return await self.db.write(lambda conn: conn.execute(statement).rowcount == 1)

    # -- reading ------------------------------------------------------------------------------

    async def get(self, tenant_id: str, run_id: str) -> RunRow | None:
        async with self.db.session() as session:
            row = await session.get(RunRow, run_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    async def get_by_number(self, tenant_id: str, number: int) -> RunRow | None:
        query = select(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.number == number)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def get_by_name(self, tenant_id: str, job_id: str, name: str) -> RunRow | None:
        query = select(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id, RunRow.name == name)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def names_taken(self, tenant_id: str, job_id: str, names: Sequence[str]) -> list[str]:
        """Those of the names a run of the job already has."""
        names = [n for n in names if n]
        if not names:
            return []
        query = select(RunRow.name).where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id,
                                          RunRow.name.in_(names))
        async with self.db.session() as session:
            return sorted((await session.exec(query)).all())

    async def get_any(self, run_id: str) -> RunRow | None:
        async with self.db.session() as session:
            return await session.get(RunRow, run_id)

    async def get_many(self, tenant_id: str, run_ids: Sequence[str]) -> list[RunRow]:
        if not run_ids:
            return []
        query = select(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.id.in_(list(run_ids)))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def by_idempotency_keys(self, tenant_id: str, job_id: str, keys: Sequence[str]) -> dict[str, RunRow]:
        keys = [k for k in keys if k]
        if not keys:
            return {}
        query = select(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id,
                                     RunRow.idempotency_key.in_(keys))
        async with self.db.session() as session:
            return {row.idempotency_key: row for row in (await session.exec(query)).all()}

    async def recent_duplicate(self, tenant_id: str, job_id: str, payload_hash: str, since: datetime) -> RunRow | None:
        query = (
            select(RunRow)
            .where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id, RunRow.payload_hash == payload_hash,
                   RunRow.created_at >= since, RunRow.status != "canceled")
            .order_by(RunRow.created_at.desc())
            .limit(1)
        )
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def list(self, tenant_id: str, *, project_id: str = "", status: str = "", job_id: str = "",
                   invocation_id: str = "", triggered_by: str = "", batch_id: str = "", parent_run_id: str = "",
                   metadata: tuple[str, str] | None = None, payload_contains: dict[str, Any] | None = None,
                   before: tuple[datetime, str] | None = None, limit: int = 50,
                   active_only: bool = False, offset: int = 0, order_by: str = "created_at", ascending: bool = False,
                   name_prefix: str = "", statuses: Sequence[str] = (), job_versions: Sequence[int] = (),
                   subject_names: Sequence[str] = ()) -> list[RunRow]:
        """The tenant's runs matching every filter given, newest first unless ordered otherwise
        (order_by: created_at, duration, job_version, triggered_by, status, name; nulls last)."""
        conditions = self._conditions(
            tenant_id, project_id=project_id, status=status, job_id=job_id, invocation_id=invocation_id,
            triggered_by=triggered_by, batch_id=batch_id, parent_run_id=parent_run_id, metadata=metadata,
            payload_contains=payload_contains, active_only=active_only, name_prefix=name_prefix, statuses=statuses,
            job_versions=job_versions, subject_names=subject_names)
        query = select(RunRow).where(*conditions)
        if before is not None:
            at, run_id = before
            query = query.where(or_(RunRow.created_at < at, and_(RunRow.created_at == at, RunRow.id < run_id))
                                if run_id else RunRow.created_at < at)
        keys = {"created_at": RunRow.created_at, "duration": RunRow.duration_ms, "job_version": RunRow.job_version,
                "triggered_by": RunRow.triggered_by_subject_name, "name": RunRow.name,
                "status": case({word: i for i, word in enumerate(LIFECYCLE)}, value=RunRow.status, else_=len(LIFECYCLE))}
        direction = (lambda key: key.asc()) if ascending else (lambda key: key.desc())
        order = [direction(keys[order_by]).nulls_last()] if order_by != "created_at" else []
        query = query.order_by(*order, direction(RunRow.created_at), direction(RunRow.id))
        query = query.offset(offset).limit(limit) if offset else query.limit(limit)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def count(self, tenant_id: str, **filters: Any) -> int:
        """How many of the tenant's runs match the filters (those of `list`, without paging and order)."""
        query = select(func.count()).select_from(RunRow).where(*self._conditions(tenant_id, **filters))
        async with self.db.session() as session:
            return int((await _execute(session, query)).scalar() or 0)

    def _conditions(self, tenant_id: str, *, project_id: str = "", status: str = "", job_id: str = "",
                    invocation_id: str = "", triggered_by: str = "", batch_id: str = "", parent_run_id: str = "",
                    metadata: tuple[str, str] | None = None, payload_contains: dict[str, Any] | None = None,
                    active_only: bool = False, name_prefix: str = "", statuses: Sequence[str] = (),
                    job_versions: Sequence[int] = (), subject_names: Sequence[str] = ()) -> list[Any]:
        conditions: list[Any] = [RunRow.tenant_id == tenant_id]
        if active_only:
            conditions.append(RunRow.status.in_(ACTIVE))
        for column, value in ((RunRow.project_id, project_id), (RunRow.status, status), (RunRow.job_id, job_id),
                              (RunRow.invocation_id, invocation_id), (RunRow.triggered_by, triggered_by),
                              (RunRow.batch_id, batch_id), (RunRow.parent_run_id, parent_run_id)):
            if value:
                conditions.append(column == value)
        for column, values in ((RunRow.status, statuses), (RunRow.job_version, job_versions),
                               (RunRow.triggered_by_subject_name, subject_names)):
            if values:
                conditions.append(column.in_(list(values)))
        if name_prefix:  # exact and case-sensitive on both databases (LIKE is not)
            conditions.append(or_(func.substr(RunRow.name, 1, len(name_prefix)) == name_prefix,
                                  func.substr(RunRow.id, 1, len(name_prefix)) == name_prefix))
        if metadata is not None:
            conditions.append(self._json_text(RunRow.__table__.c.metadata, metadata[0]) == metadata[1])
        if payload_contains:
            if self.db.is_postgres:
                from sqlalchemy import cast
                from sqlalchemy.dialects.postgresql import JSONB

                conditions.append(cast(RunRow.__table__.c.payload, JSONB).contains(payload_contains))
            else:
                for key, value in payload_contains.items():
                    conditions.append(func.json_extract(RunRow.__table__.c.payload, f'$."{key}"')
                                      == _sqlite_json_value(value))
        return conditions

    def _json_text(self, column, key: str):
        if self.db.is_postgres:
            from sqlalchemy import cast
            from sqlalchemy.dialects.postgresql import JSONB

            return cast(column, JSONB)[key].astext
        return func.json_extract(column, f'$."{key}"')

    async def lineage(self, tenant_id: str, root_run_id: str, limit: int = 1000) -> list[RunRow]:
        query = (select(RunRow).where(RunRow.tenant_id == tenant_id, RunRow.root_run_id == root_run_id)
                 .order_by(RunRow.lineage_depth, RunRow.created_at).limit(limit))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def active_children(self, parent_ids: Sequence[str]) -> list[RunRow]:
        query = select(RunRow).where(RunRow.parent_run_id.in_(list(parent_ids)), RunRow.status.in_(ACTIVE))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def count_active(self, tenant_id: str, job_id: str) -> int:
        query = select(func.count()).where(RunRow.tenant_id == tenant_id, RunRow.job_id == job_id,
                                           RunRow.status.in_(ACTIVE))
        async with self.db.session() as session:
            return (await session.exec(query)).one()

    async def events(self, tenant_id: str, run_id: str, level: str = "", type_: str = "") -> list[RunEventRow]:
        """The run's events of that level and type (any, for ""), in order: its run.created event first
        (from the run row, see `created_event`), then the rows of its status changes."""
        query = select(RunEventRow).where(RunEventRow.tenant_id == tenant_id, RunEventRow.run_id == run_id)
        if level:
            query = query.where(RunEventRow.level == level)
        if type_:
            query = query.where(RunEventRow.type == type_)
        created = core_select(RunRow.created_status, RunRow.created_at).where(RunRow.id == run_id,
                                                                                RunRow.tenant_id == tenant_id)
        async with self.db.session() as session:
            run = (await _execute(session, created)).first()
            events = list((await session.exec(query.order_by(RunEventRow.created_at, RunEventRow.seq))).all())
        if run is not None and run.created_status:
            first = created_event(run_id, tenant_id, run.created_status, as_utc(run.created_at))
            if (not level or first.level == level) and (not type_ or first.type == type_):
                events.insert(0, first)
        return events

    # -- the queue ----------------------------------------------------------------------------

    @staticmethod
    def usage(executor: Session | Connection, job_ids: Sequence[str], now: datetime) -> Usage:
        """The limited jobs' runs on devices / executing, and starts still inside their rate windows
        (synchronous: in a write, or a session's run_sync)."""
        usage = Usage({}, {}, {}, {})
        if not job_ids:
            return usage
        query = core_select(RunRow.job_id, RunRow.concurrency_key, RunRow.status, RunRow.rate_until,
                            RunRow.key_rate_until).where(
            RunRow.job_id.in_(list(job_ids)),
            or_(RunRow.status.in_(ON_DEVICE), RunRow.rate_until > now, RunRow.key_rate_until > now))
        for job_id, key, status, rate_until, key_rate_until in executor.execute(query).all():
            pair = (job_id, key)
            if status in ON_DEVICE:
                usage.active[job_id] = usage.active.get(job_id, 0) + 1
                usage.active_by_key[pair] = usage.active_by_key.get(pair, 0) + 1
            if rate_until is not None and as_utc(rate_until) > now:
                usage.started[job_id] = usage.started.get(job_id, 0) + 1
            if key_rate_until is not None and as_utc(key_rate_until) > now:
                usage.started_by_key[pair] = usage.started_by_key.get(pair, 0) + 1
        return usage

    async def queued_for(self, target_keys: Sequence[str], limit: int) -> list[Queued]:
        """Queued runs for these targets ("" for endpoint runs) that flow control lets start now, most
        urgent first, as rows of the QUEUED columns. Runs of a job at its concurrency or rate limit stay
        in the queue."""
        if not target_keys:
            return []
        now = self.clock.now()
        base = core_select(*QUEUED).where(RunRow.status == "queued", RunRow.target_key.in_(list(target_keys)))
        async with self.db.session() as session:
            limited_jobs = list((await _execute(session, 
                select(RunRow.job_id).where(RunRow.status == "queued", RunRow.limited,
                                            RunRow.target_key.in_(list(target_keys))).distinct()
            )).scalars().all())
            rows: list[Queued] = []
            if limited_jobs:
                usage = await session.run_sync(self.usage, limited_jobs, now)
                # Blocked jobs and keys are left out of the query, so they never starve the others.
                query = base
                blocked_jobs, blocked_keys = self._blocked(usage, await self._limits(session, limited_jobs))
                if blocked_jobs:
                    query = query.where(not_(and_(RunRow.limited, RunRow.job_id.in_(blocked_jobs))))
                for job_id, keys in blocked_keys.items():
                    query = query.where(not_(and_(RunRow.limited, RunRow.job_id == job_id,
                                                  RunRow.concurrency_key.in_(keys))))
                query = query.order_by(RunRow.priority.desc(), RunRow.created_at).limit(limit)
            else:
                query = base.order_by(RunRow.priority.desc(), RunRow.created_at).limit(limit)
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list((await _execute(session, query)).all())
        return rows

    async def _limits(self, session, job_ids: Sequence[str]) -> list[Any]:
        """The distinct (job, key, limits) of the queued limited runs of these jobs."""
        query = select(RunRow.job_id, RunRow.concurrency_key, RunRow.max_concurrency, RunRow.rate_limit_max,
                       RunRow.max_concurrency_per_key, RunRow.key_rate_max).where(
            RunRow.status == "queued", RunRow.limited, RunRow.job_id.in_(list(job_ids))).distinct()
        return list((await _execute(session, query)).all())

    @staticmethod
    def _blocked(usage: Usage, limits: Sequence[Any]) -> tuple[list[str], dict[str, list[str]]]:
        blocked_jobs: set[str] = set()
        blocked_keys: dict[str, list[str]] = {}
        for row in limits:
            if (row.max_concurrency and usage.active.get(row.job_id, 0) >= row.max_concurrency) or \
                    (row.rate_limit_max and usage.started.get(row.job_id, 0) >= row.rate_limit_max):
                blocked_jobs.add(row.job_id)
        for row in limits:
            if row.concurrency_key and row.job_id not in blocked_jobs and not usage.allows(row):
                blocked_keys.setdefault(row.job_id, []).append(row.concurrency_key)
        return sorted(blocked_jobs), blocked_keys

    async def claim(self, run_ids: Sequence[str], owner: str, now: datetime, lease_until: datetime,
                    placed: Mapping[str, tuple[str, str]] | None = None, start_slack: int | None = None) -> set[str]:
        """Leases queued runs to this replica; answers the ids it got (others were claimed elsewhere, or
        would exceed their job's concurrency or rate limit). `placed`: the device each pooled run goes to
        (run id -> (target key, device id)), which becomes its target. `start_slack`: for an executor that
        starts what it claims (the HTTP executor), the runs are executing at once, their lease the
        execution deadline (timeout_secs plus this slack; none without a timeout; not lease_until), as
        RunEngine.accept would make it."""
        if not run_ids:
            return set()
        return await self.db.write(lambda conn: self._claim(conn, list(run_ids), owner, now, lease_until,
                                                            placed or {}, start_slack))

    def _claim(self, conn: Connection, run_ids: list[str], owner: str, now: datetime,
               lease_until: datetime, placed: Mapping[str, tuple[str, str]], start_slack: int | None) -> set[str]:
        candidates = conn.execute(core_select(*_CLAIMED).where(RunRow.id.in_(run_ids),
                                                                RunRow.status == "queued")).all()
        limited = sorted({row.job_id for row in candidates if row.limited})
        plain = [row.id for row in candidates if not row.limited]
        windows: dict[str, tuple[datetime | None, datetime | None]] = {}
        if limited:
            if self.db.is_postgres:  # replicas take turns counting a limited job's usage
                for job_id in limited:
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"runs.limit/{job_id}"})
            usage = self.usage(conn, limited, now)
            order = {run_id: i for i, run_id in enumerate(run_ids)}
            for row in sorted((r for r in candidates if r.limited), key=lambda r: order[r.id]):
                if usage.allows(row):
                    usage.take(row)
                    windows[row.id] = (
                        now + timedelta(seconds=row.rate_limit_window_secs) if row.rate_limit_max else None,
                        now + timedelta(seconds=row.key_rate_window_secs)
                        if row.key_rate_max and row.concurrency_key else None)
        if start_slack is None:
            leases = {"status": "dequeued", "lease_owner": owner, "lease_expires_at": lease_until, "dequeued_at": now}

            def lease(_timeout_secs: int) -> dict[str, Any]:
                return leases
        else:
            def lease(timeout_secs: int) -> dict[str, Any]:
                return {"status": "executing", "lease_owner": owner, "dequeued_at": now, "started_at": now,
                        "heartbeat_at": now, "lease_expires_at": now + timedelta(seconds=timeout_secs + start_slack)
                        if timeout_secs > 0 else None}
        timeouts = {row.id: row.timeout_secs for row in candidates}
        statements = []
        alike: dict[int, list[str]] = {}  # the plain runs by timeout: one statement each
        for run_id in plain:
            if run_id not in placed:
                alike.setdefault(timeouts[run_id] if start_slack is not None else 0, []).append(run_id)
        for timeout_secs, ids in alike.items():
            statements.append(update(RunRow).where(RunRow.id.in_(ids), RunRow.status == "queued")
                              .values(**lease(timeout_secs)))
        chosen = {run_id: {} for run_id in plain if run_id in placed}
        for run_id, (rate_until, key_rate_until) in windows.items():
            chosen[run_id] = dict(rate_until=rate_until, key_rate_until=key_rate_until)
        for run_id, values in chosen.items():
            if run_id in placed:
                values.update(target_key=placed[run_id][0], device_id=placed[run_id][1])
            statements.append(update(RunRow).where(RunRow.id == run_id, RunRow.status == "queued")
                              .values(**lease(timeouts[run_id]), **values))
        changed = [Changed(*row) for statement in statements for row in conn.execute(statement.returning(*_CHANGED))]
        self._record(conn, changed)
        return {c.id for c in changed}

    async def queued_pools(self) -> list[str]:
        """The pools with queued runs (from the small index of pooled runs)."""
        query = select(RunRow.pool_key).where(RunRow.pool_key != "", RunRow.status == "queued").distinct()
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def pool_snapshot(self, pool_key: str) -> bytes | None:
        """The job snapshot of one run queued in this pool (every run of a pool has its targets)."""
        query = select(RunRow.snapshot).where(RunRow.status == "queued", RunRow.target_key == pool_key).limit(1)
        async with self.db.session() as session:
            return (await session.exec(query)).first()

    async def any_limited_queued(self) -> bool:
        query = select(RunRow.id).where(RunRow.status == "queued", RunRow.limited).limit(1)
        async with self.db.session() as session:
            return (await session.exec(query)).first() is not None

    async def due_delayed(self, now: datetime, limit: int = 1000) -> list[RunRow]:
        query = (
            select(RunRow)
            .where(RunRow.status == "delayed", RunRow.scheduled_at <= now)
            .order_by(RunRow.scheduled_at)
            .limit(limit)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def promote(self, run_ids: Sequence[str]) -> list[Changed]:
        return await self.set_many(run_ids, ("delayed",), status="queued")

    async def set_definitions(self, updates: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
        """Gives runs that have not started another job version (the same columns for each, one statement
        per run in one transaction); answers the ids changed."""
        def write(conn: Connection) -> set[str]:
            changed: set[str] = set()
            for run_id, values in updates:
                statement = (update(RunRow).where(RunRow.id == run_id, RunRow.status.in_(NOT_STARTED))
                             .values(**values).returning(RunRow.id))
                changed.update(conn.execute(statement).scalars().all())
            return changed

        return await self.db.write(write)

    async def postpone(self, run_ids: Sequence[str], until: datetime) -> list[Changed]:
        """Delayed runs that came due outside their job's execution window wait for it to open."""
        if not run_ids:
            return []
        statement = (update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.status == "delayed")
                     .values(scheduled_at=until))
        return await self._update(statement, message="outside the execution window; delayed until "
                                  + until.astimezone(UTC).isoformat().replace("+00:00", "Z"))

    async def expire(self, now: datetime, limit: int = 1000) -> list[Changed]:
        """Runs past their expires_at that never started become expired."""
        ids = select(RunRow.id).where(RunRow.expires_at.is_not(None), RunRow.expires_at < now,
                                      RunRow.status.in_(NOT_STARTED)).limit(limit)
        statement = (update(RunRow).where(RunRow.id.in_(ids.scalar_subquery()), RunRow.status.in_(NOT_STARTED))
                     .values(status="expired", finished_at=now, error="expired before it started"))
        return await self._update(statement)

    async def waiting(self, limit: int = 1000) -> list[RunRow]:
        query = select(RunRow).where(RunRow.status == "waiting").order_by(RunRow.created_at).limit(limit)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def latest_runs(self, tenant_id: str, job_ids: Sequence[str]) -> dict[str, RunRow]:
        """The most recent run of each of these jobs (one query)."""
        if not job_ids:
            return {}
        ranked = (select(RunRow.id, func.row_number().over(partition_by=RunRow.job_id,
                                                           order_by=(RunRow.created_at.desc(), RunRow.id.desc()))
                         .label("n"))
                  .where(RunRow.tenant_id == tenant_id, RunRow.job_id.in_(list(job_ids))).subquery())
        query = select(RunRow).join(ranked, ranked.c.id == RunRow.id).where(ranked.c.n == 1)
        async with self.db.session() as session:
            return {row.job_id: row for row in (await session.exec(query)).all()}

    async def stale(self, now: datetime, heartbeat_before: datetime, limit: int = 1000) -> list[RunRow]:
        """Runs on devices whose lease ran out without acceptance, whose heartbeat went silent, or that
        run past their execution deadline."""
        query = (
            select(RunRow)
            .where(
                or_(
                    and_(RunRow.status == "dequeued", RunRow.lease_expires_at < now),
                    and_(RunRow.status == "executing", RunRow.heartbeat_at < heartbeat_before),
                    # Past its execution deadline (see RunEngine.accept).
                    and_(RunRow.status == "executing", RunRow.lease_expires_at < now),
                )
            )
            .limit(limit)
        )
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def on_device(self, target_key: str) -> list[RunRow]:
        query = select(RunRow).where(RunRow.target_key == target_key, RunRow.status.in_(ON_DEVICE))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def on_devices(self, target_keys: Sequence[str]) -> list[RunRow]:
        """`on_device` of many devices in one query (devices connecting together)."""
        query = select(RunRow).where(RunRow.status.in_(ON_DEVICE), RunRow.target_key.in_(list(target_keys)))
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def touch_heartbeats(self, run_ids: Sequence[str], at: datetime) -> None:
        statement = (
            update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.status == "executing").values(heartbeat_at=at)
        )
        await self.db.write(lambda conn: conn.execute(statement))

    # -- health ---------------------------------------------------------------------------------

    async def health(self, tenant_id: str, job_id: str, since: datetime) -> tuple[dict[str, int], float | None,
                                                                                   float | None]:
        """Counts per terminal status (dead_letter excluded) of runs created since `since`, and the
        average and 95th percentile duration in ms: aggregates in SQL, never every row in Python."""
        where = (RunRow.tenant_id == tenant_id, RunRow.job_id == job_id, RunRow.created_at >= since,
                 RunRow.status.in_([s for s in TERMINAL if s != "dead_letter"]))
        async with self.db.session() as session:
            counts = dict((await _execute(session, 
                select(RunRow.status, func.count()).where(*where).group_by(RunRow.status))).all())
            timed = (*where, RunRow.duration_ms.is_not(None))
            n, avg = (await _execute(session, select(func.count(), func.avg(RunRow.duration_ms)).where(*timed))).one()
            p95 = None
            if n:
                if self.db.is_postgres:
                    p95 = (await _execute(session, select(
                        func.percentile_cont(0.95).within_group(RunRow.duration_ms)).where(*timed))).scalar()
                else:
                    offset = max(0, math.ceil(0.95 * n) - 1)
                    p95 = (await _execute(session, select(RunRow.duration_ms).where(*timed)
                                                 .order_by(RunRow.duration_ms).offset(offset).limit(1))).scalar()
        return counts, (float(avg) if avg is not None else None), (float(p95) if p95 is not None else None)

    async def count_by_status(self) -> dict[str, int]:
        """Runs per status across every tenant (operators' metrics): one GROUP BY."""
        async with self.db.session() as session:
            rows = (await _execute(session, select(RunRow.status, func.count()).group_by(RunRow.status))).all()
        return {status: int(count) for status, count in rows}

    async def purge(self, tenant_id: str, run_id: str) -> bool:
        """Deletes a finished run with its output, events and webhook deliveries (one transaction);
        False when there is no such finished run (missing, another tenant's, or still active)."""
        def write(conn: Connection) -> bool:
            deleted = conn.execute(delete(RunRow).where(
                RunRow.tenant_id == tenant_id, RunRow.id == run_id, RunRow.status.in_(TERMINAL)))
            if deleted.rowcount != 1:
                return False
            for table in (LogChunkRow, RunEventRow, WebhookDeliveryRow):
                conn.execute(delete(table).where(table.run_id == run_id))
            return True

        return await self.db.write(write)

    # -- output -----------------------------------------------------------------------------------

    async def add_chunks(self, chunks: Sequence[dict[str, Any]]) -> None:
        """Stores output chunks; a chunk already stored (same run, attempt, sequence) is ignored."""
        if not chunks:
            return
        insert_ = pg_insert if self.db.is_postgres else sqlite_insert
        statement = insert_(LogChunkRow.__table__).on_conflict_do_nothing()
        await self.db.write(lambda conn: conn.execute(statement, list(chunks)))

    async def highest_contiguous(self, run_id: str, attempt: int) -> int:
        """The highest sequence n such that chunks 1..n are all stored."""
        query = select(func.count(), func.max(LogChunkRow.sequence)).where(
            LogChunkRow.run_id == run_id, LogChunkRow.attempt == attempt
        )
        async with self.db.session() as session:
            count, highest = (await session.exec(query)).one()
        if not count:
            return 0
        if count == highest:
            return highest
        rows = await self.chunks(run_id, attempt)
        expected = 0
        for row in rows:
            if row.sequence != expected + 1:
                break
            expected = row.sequence
        return expected

    async def chunks(self, run_id: str, attempt: int | None = None, after: int = 0) -> list[LogChunkRow]:
        query = select(LogChunkRow).where(LogChunkRow.run_id == run_id, LogChunkRow.sequence > after)
        if attempt is not None:
            query = query.where(LogChunkRow.attempt == attempt)
        query = query.order_by(LogChunkRow.attempt, LogChunkRow.sequence)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def chunks_since(self, run_id: str, seen: tuple[int, int]) -> list[LogChunkRow]:
        """Chunks after (attempt, sequence) `seen`, in order."""
        attempt, sequence = seen
        query = select(LogChunkRow).where(
            LogChunkRow.run_id == run_id,
            or_(LogChunkRow.attempt > attempt, and_(LogChunkRow.attempt == attempt, LogChunkRow.sequence > sequence)),
        ).order_by(LogChunkRow.attempt, LogChunkRow.sequence)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    # -- webhook deliveries -----------------------------------------------------------------------

    async def take_due_deliveries(self, now: datetime, lease: timedelta, limit: int = 100
                                  ) -> list[tuple[WebhookDeliveryRow, bytes | None]]:
        """Due deliveries with their run's job snapshot, leased (next attempt pushed back) to the caller."""
        table = WebhookDeliveryRow.__table__
        query = (core_select(table).where(table.c.state == "pending", table.c.next_attempt_at <= now)
                 .order_by(table.c.next_attempt_at).limit(limit))
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)

        def write(conn: Connection) -> list[tuple[WebhookDeliveryRow, bytes | None]]:
            rows = [WebhookDeliveryRow(**row._mapping) for row in conn.execute(query)]
            if not rows:
                return []
            conn.execute(update(table).where(table.c.id.in_([row.id for row in rows]))
                         .values(next_attempt_at=now + lease))
            snapshots = dict(conn.execute(core_select(RunRow.id, RunRow.snapshot)
                                          .where(RunRow.id.in_({row.run_id for row in rows}))).all())
            return [(row, snapshots.get(row.run_id)) for row in rows]

        return await self.db.write(write)

    async def finish_delivery(self, delivery_id: str, **values: Any) -> None:
        statement = update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id).values(**values)
        await self.db.write(lambda conn: conn.execute(statement))

    async def rewrite_snapshots(self, rewrite, marker: str, batch: int = 500) -> int:
        """Once per database: replaces each run's snapshot by rewrite(snapshot) unless that is None, a batch
        per transaction, then records `marker` (a runs_counters row) so later starts skip the scan."""
        async with self.db.session() as session:
            if await session.get(CounterRow, marker) is not None:
                return 0
        postgres = self.db.is_postgres

        def rewrite_batch(conn: Connection, after: str) -> tuple[int, str | None]:
            """Rewrites the batch after run id `after`; answers how many changed, and where the next starts."""
            if not postgres:  # overwritten bytes zeroed, not left in freed space (see secrets.scrubbing)
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            query = core_select(RunRow.id, RunRow.snapshot).where(RunRow.id > after).order_by(RunRow.id).limit(batch)
            rows = conn.execute(query).all()
            changed = 0
            for run_id, snapshot in rows:
                replacement = rewrite(snapshot) if snapshot else None
                if replacement is not None:
                    conn.execute(update(RunRow).where(RunRow.id == run_id).values(snapshot=replacement))
                    changed += 1
            return changed, rows[-1][0] if len(rows) == batch else None

        changed, after = 0, ""
        while after is not None:
            done, after = await self.db.write(lambda conn, after=after: rewrite_batch(conn, after))
            changed += done
        if changed:
            await scrub_log(self.db.engine, self.db.is_postgres)
        try:
            await self.db.write(lambda conn: conn.execute(insert(CounterRow.__table__).values(name=marker, value=1)))
        except IntegrityError:
            pass  # another replica finished first
        return changed

    async def deliveries(self, run_id: str) -> list[WebhookDeliveryRow]:
        query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.run_id == run_id).order_by(
            WebhookDeliveryRow.created_at)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())


async def _execute(session, statement, params=None):
    """SQLAlchemy's execute (rows, executemany, RETURNING), without SQLModel's nudge towards exec()."""
    return await _SqlAlchemySession.execute(session, statement, params)


def webhook_body(c: Changed, now: datetime) -> str:
    body: dict[str, Any] = {"run_id": c.id, "job_id": c.job_id, "project_id": c.project_id, "status": c.status,
                            "attempt": c.attempt}
    if c.result is not None:
        body["result"] = c.result
    if c.error:
        body["error"] = c.error
    body["timestamp"] = now.isoformat().replace("+00:00", "Z")
    return json.dumps(body, separators=(",", ":"))


def _compare_and_set(run_ids: Sequence[str], attempt: int, from_statuses: Iterable[str], values: dict[str, Any],
                     on_target: str | None):
    """The UPDATE of a status change: these runs, if still at that attempt in one of those states (and, given
    `on_target`, still with that target), get the values (a pooled run going back to waiting, its pool)."""
    statement = (update(RunRow).where(RunRow.id.in_(list(run_ids)), RunRow.attempt == attempt,
                                      RunRow.status.in_(list(from_statuses)))
                 .values(**back_to_pool(values)))
    return statement if on_target is None else statement.where(RunRow.target_key == on_target)


def back_to_pool(values: dict[str, Any], pool_key: str | None = None) -> dict[str, Any]:
    """A status change back to waiting (queued, delayed, waiting) returns a pooled run to its pool:
    the device that had it is no longer its target. `pool_key`: the run's, when it is known (read
    already); else the statement decides per row."""
    if values.get("status") not in NOT_STARTED or "target_key" in values:
        return values
    if pool_key is not None:
        return {**values, "target_key": pool_key, "device_id": ""} if pool_key else values
    pooled = RunRow.pool_key != ""
    return {**values, "target_key": case((pooled, RunRow.pool_key), else_=RunRow.target_key),
            "device_id": case((pooled, ""), else_=RunRow.device_id)}


def _row(run: RunRow) -> tuple:
    """A new run's values in _RUN_INSERT's column order."""
    try:
        return _run_values(run.__dict__)  # a new run holds every field there (RunRow(...) and RunRow.new alike)
    except KeyError:
        return tuple(getattr(run, name) for name in _RUN_FIELDS)


def _changed(run: RunRow) -> Changed:
    try:
        return Changed(*_changed_values(run.__dict__))  # a new run holds every field there
    except KeyError:
        return Changed(run.id, run.tenant_id, run.job_id, run.project_id, run.status, run.attempt, run.result,
                       run.error, run.webhook_url, run.target_key, run.limited)


_changed_values = operator.itemgetter("id", "tenant_id", "job_id", "project_id", "status", "attempt", "result", "error",
                                      "webhook_url", "target_key", "limited")


def event_level(status: str) -> str:
    return EVENT_LEVELS.get(status, "info")


# What names a run's run.created event (stable: the same id every time it is read).
_CREATED_EVENT_NAMESPACE = uuid.UUID("5b0f4c1e-8a43-4d5e-9a55-6c1f2d7e3a90")


def created_event(run_id: str, tenant_id: str, status: str, created_at: datetime) -> RunEventRow:
    """A run's first event, run.created, as its row was written before the run row alone said it: at the
    run's creation, with the status it was created in (waiting, delayed or queued; a new run is at attempt 1)."""
    return RunEventRow(id=str(uuid.uuid5(_CREATED_EVENT_NAMESPACE, run_id)), run_id=run_id, tenant_id=tenant_id,
                       type="run.created", level=event_level(status), message=f"run {status}",
                       data={"status": status, "attempt": 1}, created_at=created_at, seq=0)


def _frozen(values: dict[str, Any]) -> tuple:
    """Values as a key (TypeError for values that do not hash)."""
    key = tuple(sorted(values.items()))
    hash(key)
    return key


def _per_batch(sizes: Iterable[int], outcomes: list[Any]) -> list[list[Any]]:
    """The outcomes of a grouped write's flattened items, split back per submitter (in order)."""
    answers, start = [], 0
    for size in sizes:
        answers.append(outcomes[start:start + size])
        start += size
    return answers


def _sqlite_json_value(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (dict, list)):
        return func.json(json.dumps(value))
    return value


__all__ = ["ACTIVE", "NOT_STARTED", "UNACCEPTED", "ON_DEVICE", "TERMINAL", "RunRow", "LogChunkRow",
           "RunEventRow", "WebhookDeliveryRow", "CounterRow", "RunStore", "Changed", "Transition", "IntegrityError",
           "canonical_hash"]
