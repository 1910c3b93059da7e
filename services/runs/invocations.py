"""Job invocations: one trigger of a job template fanned out to many devices (surface D's
/api/job_invocations), with its targeting, inputs and options.

An invocation is a row (`runs_job_invocations`) with a numeric id, and its runs are ordinary runs
whose `invocation_id` is the row's id; nothing about a run's life is special here. What the
invocation asks for is expressed with the engine's own mechanisms:
- targeting: `static_query` resolves the devices (the devices service's query language, Foreman
  dialect) once, at creation; `dynamic_query` again at every occurrence of a recurrence;
- `randomized_ordering` shuffles the order the runs queue in; `concurrency_level` is the runs'
  concurrency key `job-invocation:<id>` with max_concurrency_per_key = the level (flow control in
  the store's claim / queued_for);
- `start_at` is the runs' scheduled_at; `start_before` and `time_to_pickup` (default 86400 s after the
  start) are the runs' expires_at: a run not started by then ends `expired` (the engine's tick);
- `execution_timeout_interval` is the runs' timeout;
- `recurrence` is a jobs-service schedule carrying a TriggerJobRequest with this spec: the scheduler
  fires each occurrence through TriggerJob (idempotency key `cron:{schedule}:{tick}`), which lands here
  (`trigger_occurrence`): the occurrence fills the invocation waiting for it, and the next occurrence
  gets a waiting invocation of its own, as Foreman's recurring invocations do.

State and per-host counts are computed here from one GROUP BY over the invocations' runs; the
surfaces map them to their own words.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ColumnElement, Connection, Index, LargeBinary, and_, exists, false, func
from sqlalchemy import insert, not_, or_, select as sa_select, text, tuple_, update
from sqlmodel import Field, SQLModel, select

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1.devices_pb2 import DeviceTargets
from jobline.jobs.v1.jobs_pb2 import Job, JobSchedule
from jobline.runs.v1 import runs_pb2
from services.common.clock import as_utc
from services.common.counters import reserve
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import uuid7_string
from services.common.principal import READ, TRIGGER, WRITE, listed_project, reaches_project, require_scope
from services.devices import query as search

from . import domain
from .mapping import status_enum, timestamp
from .engine import RunSpec
from .mapping import run_message
from .store import ACTIVE, ON_DEVICE, TERMINAL, CounterRow, LogChunkRow, RunRow, _execute, canonical_hash

INVOCATION_NUMBER = "job_invocation_number"
TARGETING_TYPES = ("static_query", "dynamic_query")
DEFAULT_TIME_TO_PICKUP_SECS = 86400
MAX_DESCRIPTION = 255
# What an invocation gives as text, and its longest (an input's value is inserted into the command).
SPEC_TEXT_LIMITS = {"description_format": 4096, "ssh_user": 255, "effective_user": 255, "feature": 255}
MAX_INPUT_VALUE, MAX_PURPOSE = 65536, 255
DEFAULT_PAGE, MAX_PAGE = 20, 1000
SUCCESS = ("completed",)
CANCELLED_RUNS = ("canceled", "expired")
State = runs_pb2.JobInvocationState


class JobInvocationRow(SQLModel, table=True):
    __tablename__ = "runs_job_invocations"
    __table_args__ = (
        Index("ux_runs_job_invocations_number", "number", unique=True),
        Index("ix_runs_job_invocations_tenant", "tenant_id", "number"),
        Index("ix_runs_job_invocations_recurrence", "recurrence_id", "pending"),
        # One invocation per occurrence of a recurrence (the scheduler's idempotency key).
        Index("ux_runs_job_invocations_key", "tenant_id", "idempotency_key", unique=True,
              sqlite_where=text("idempotency_key != ''"), postgresql_where=text("idempotency_key != ''")),
    )

    id: str = Field(primary_key=True, max_length=64)
    number: int = Field(sa_type=BigInteger)
    tenant_id: str = Field(max_length=64)
    project_id: str = Field(max_length=128)
    job_id: str = Field(max_length=64)
    job_number: int = Field(default=0, sa_type=BigInteger)
    job_name: str = ""
    job_category: str = ""
    description: str = ""
    description_format: str = ""
    effective_user: str = ""
    # The jobline.runs.v1.JobInvocationSpec, serialized (targeting, inputs, options).
    spec: bytes = Field(sa_column=Column(LargeBinary))
    targeting_type: str = Field(default="static_query", max_length=16)
    search_query: str = ""
    # The targeted devices, in execution order (empty until a dynamic occurrence resolves them).
    device_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    targeting_resolved: bool = False
    mode: str = Field(default="immediate", max_length=16)
    start_at: datetime | None = None
    start_before: datetime | None = None
    recurrence_id: str = Field(default="", max_length=64)
    recurrence_number: int = Field(default=0, sa_type=BigInteger)
    user_subject_id: str = Field(default="", max_length=128)
    user_name: str = Field(default="", max_length=256)
    task_id: str = Field(max_length=64)
    # An occurrence of a recurrence still to come: no runs yet.
    pending: bool = False
    cancelled: bool = False
    cancelled_at: datetime | None = None
    idempotency_key: str = Field(default="", max_length=256)
    created_at: datetime
    started_at: datetime | None = None


TABLES = [JobInvocationRow]


# -- rules ---------------------------------------------------------------------------------------


def default_description_format(job: Job) -> str:
    """The template's description_format, else `%{template_name} with inputs name="%{name}" ...`."""
    spec = job.job_template
    if spec.description_format.strip():
        return spec.description_format
    described = "%{template_name}"
    if spec.inputs:
        described += " with inputs " + " ".join(f'{i.name}="%{{{i.name}}}"' for i in spec.inputs)
    return described


def describe(description_format: str, job: Job, given: dict[str, str]) -> str:
    """The format filled in: %{input} with its value (hidden ones as ***), %{job_category},
    %{template_name}; anything unknown or without a value is ''."""
    import re

    values = {i.name: i.default_value for i in job.job_template.inputs if i.HasField("default_value")}
    values.update(given)
    hidden = {i.name for i in job.job_template.inputs if i.hidden_value}
    known = {f"%{{{name}}}": ("***" if name in hidden else value) for name, value in values.items()}
    known["%{job_category}"] = job.job_template.job_category
    known["%{template_name}"] = job.name
    return re.sub(r"%\{[^}]+\}", lambda m: known.get(m.group(0), "''"), description_format)[:MAX_DESCRIPTION]


def check_inputs(job: Job, given: dict[str, str]) -> None:
    declared = {i.name: i for i in job.job_template.inputs}
    for name in given:
        if name not in declared:
            raise InvalidArgument(f"inputs: Unknown input {name} for template {job.name}")
    missing = [i.name for i in job.job_template.inputs
               if i.required and not given.get(i.name, "") and not i.default_value]
    if missing:
        raise InvalidArgument("inputs: Not all required inputs have values. Missing inputs: " + ", ".join(missing))


def effective_user(job: Job, requested: str, principal: Principal) -> str:
    user = job.job_template.effective_user
    if user.overridable and requested:
        return requested
    if user.current_user:
        return principal.subject_name or principal.subject_id
    return user.value or "root"


def validate_spec(spec: runs_pb2.JobInvocationSpec, now: datetime) -> None:
    """Raises InvalidArgument ("<field>: <why>") for the first thing wrong with what is asked."""
    if spec.targeting_type not in TARGETING_TYPES:
        raise InvalidArgument("targeting_type: is not included in the list (static_query, dynamic_query)")
    if not spec.search_query.strip():
        raise InvalidArgument("search_query: can't be blank")
    for field, limit in SPEC_TEXT_LIMITS.items():
        if len(getattr(spec, field)) > limit:
            raise InvalidArgument(f"{field}: is too long (maximum is {limit} characters)")
    if any(len(value) > MAX_INPUT_VALUE for value in spec.inputs.values()):
        raise InvalidArgument(f"inputs: a value is too long (maximum is {MAX_INPUT_VALUE} characters)")
    if spec.concurrency_level < 0:
        raise InvalidArgument("concurrency_level: must be greater than 0")
    if spec.HasField("execution_timeout_interval") and not 1 <= spec.execution_timeout_interval <= 86400:
        raise InvalidArgument("execution_timeout_interval: must be between 1 and 86400")
    if spec.HasField("time_to_pickup") and spec.time_to_pickup < 0:
        raise InvalidArgument("time_to_pickup: must not be negative")
    if spec.HasField("start_at") and spec.HasField("start_before") and \
            spec.start_before.ToDatetime(tzinfo=UTC) < spec.start_at.ToDatetime(tzinfo=UTC):
        raise InvalidArgument("start_before: must not be before start_at")


def run_deadline(spec: runs_pb2.JobInvocationSpec, start: datetime) -> datetime:
    """When a run of the invocation not started yet expires: start_before, or time_to_pickup after its start."""
    pickup = spec.time_to_pickup if spec.HasField("time_to_pickup") else DEFAULT_TIME_TO_PICKUP_SECS
    deadline = start + timedelta(seconds=pickup) if pickup > 0 else start + timedelta(days=365 * 100)
    if spec.HasField("start_before"):
        deadline = min(deadline, spec.start_before.ToDatetime(tzinfo=UTC))
    return deadline


def invocation_state(row: JobInvocationRow, counts: dict[str, int], now: datetime) -> int:
    """Where the invocation is, from its runs per status."""
    if row.pending:
        return State.JOB_INVOCATION_STATE_CANCELLED if row.cancelled else State.JOB_INVOCATION_STATE_SCHEDULED
    active = sum(counts.get(status, 0) for status in ACTIVE)
    if active:
        waiting_to_start = row.start_at is not None and as_utc(row.start_at) > now and \
            active == counts.get("delayed", 0)
        return State.JOB_INVOCATION_STATE_SCHEDULED if waiting_to_start else State.JOB_INVOCATION_STATE_RUNNING
    if sum(counts.values()) == counts.get("completed", 0):
        return State.JOB_INVOCATION_STATE_SUCCEEDED
    return State.JOB_INVOCATION_STATE_CANCELLED if row.cancelled else State.JOB_INVOCATION_STATE_FAILED


def _runs_of(row_id: Any, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(sa_select(RunRow.id).where(RunRow.invocation_id == row_id, *conditions))


def state_condition(state: int, now: datetime) -> ColumnElement[bool]:
    """`invocation_state(...) == state` in SQL, on JobInvocationRow (for searches by status)."""
    inv = JobInvocationRow
    active = _runs_of(inv.id, RunRow.status.in_(ACTIVE))
    started = _runs_of(inv.id, RunRow.status.in_(ACTIVE), RunRow.status != "delayed")
    failed = _runs_of(inv.id, RunRow.status != "completed")
    waiting = and_(active, not_(started), inv.start_at.is_not(None), inv.start_at > now)
    if state == State.JOB_INVOCATION_STATE_SCHEDULED:
        return or_(and_(inv.pending, not_(inv.cancelled)), and_(not_(inv.pending), waiting))
    if state == State.JOB_INVOCATION_STATE_RUNNING:
        return and_(not_(inv.pending), active, not_(waiting))
    if state == State.JOB_INVOCATION_STATE_SUCCEEDED:
        return and_(not_(inv.pending), not_(active), not_(failed))
    if state == State.JOB_INVOCATION_STATE_CANCELLED:
        return or_(and_(inv.pending, inv.cancelled), and_(not_(inv.pending), not_(active), failed, inv.cancelled))
    return and_(not_(inv.pending), not_(active), failed, not_(inv.cancelled))


# -- the search of invocations: the devices' query language, with the invocation's fields --------

STATE_WORDS = {"scheduled": State.JOB_INVOCATION_STATE_SCHEDULED, "queued": State.JOB_INVOCATION_STATE_SCHEDULED,
               "running": State.JOB_INVOCATION_STATE_RUNNING, "succeeded": State.JOB_INVOCATION_STATE_SUCCEEDED,
               "failed": State.JOB_INVOCATION_STATE_FAILED, "cancelled": State.JOB_INVOCATION_STATE_CANCELLED}
_TEXT_FIELDS = {"description": "description", "job_category": "job_category", "pattern_template_name": "job_name",
                "template": "job_name", "user": "user_name", "owner": "user_name"}
_FIELDS = {**_TEXT_FIELDS, "id": "number", "recurring_logic.id": "recurrence_number", "status": "status",
           "recurring": "recurring"}
INVOCATION_DIALECT = search.Dialect(
    "foreman job invocations", lambda name: _FIELDS.get(name.lower()),
    "id, description, job_category, status, recurring, user, owner, pattern_template_name, recurring_logic.id",
    numeric_fields=("number", "recurrence_number"), contains_like=True, bare_field="description",
    logic_symbols=True)
ORDER_FIELDS = {"id": "number", "description": "description", "job_category": "job_category",
                "start_at": "start_at", "started_at": "started_at"}


def search_condition(text_: str, now: datetime) -> ColumnElement[bool] | None:
    if not text_.strip():
        return None
    return _compile(search.parse(text_, INVOCATION_DIALECT), now)


def _compile(node: Any, now: datetime) -> ColumnElement[bool]:
    if isinstance(node, search.Comparison):
        return _comparison(node, now)
    if node[0] == "not":
        return not_(_compile(node[1], now))
    combine = and_ if node[0] == "and" else or_
    return combine(_compile(node[1], now), _compile(node[2], now))


def _comparison(node: search.Comparison, now: datetime) -> ColumnElement[bool]:
    positive, negated = search.positive_op(node.op)
    inv = JobInvocationRow
    if node.field == "status":
        states = []
        for value in node.values:
            if value.lower() not in STATE_WORDS:
                raise InvalidArgument(f"invalid query: status is one of {', '.join(STATE_WORDS)}, not {value!r}")
            states.append(STATE_WORDS[value.lower()])
        if positive not in ("=", "^"):
            raise InvalidArgument("invalid query: status takes = != ^ !^")
        condition = or_(false(), *(state_condition(s, now) for s in states))
    elif node.field == "recurring":
        if positive != "=" or node.values[0].lower() not in ("true", "false"):
            raise InvalidArgument("invalid query: recurring is compared (= or !=) with true or false")
        condition = (inv.recurrence_id != "") if node.values[0].lower() == "true" else (inv.recurrence_id == "")
    else:
        column = getattr(inv, node.field)
        values: tuple[Any, ...] = tuple(int(v) for v in node.values) if node.field in ("number", "recurrence_number") \
            else node.values
        condition = search.match(positive, column, values)
    return not_(condition) if negated else condition


def order_clause(order_by: str) -> list[Any]:
    if not order_by.strip():
        return [JobInvocationRow.number.desc()]
    parts = order_by.split()
    field = ORDER_FIELDS.get(parts[0].lower())
    direction = parts[1].upper() if len(parts) > 1 else "ASC"
    if field is None or len(parts) > 2 or direction not in ("ASC", "DESC"):
        raise InvalidArgument(f"invalid query: the order {order_by!r} is not valid; order by "
                              f"{', '.join(ORDER_FIELDS)} [ASC|DESC]")
    column = getattr(JobInvocationRow, field)
    return [column.desc() if direction == "DESC" else column.asc(), JobInvocationRow.number.desc()]


# -- the engine's part ------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """One invocation's runs, counted in SQL."""

    counts: dict[str, int]
    finished_at: datetime | None


class JobInvocations:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.store = engine.store
        self.peers = engine.peers
        self.clock = engine.clock
        engine.job_invocations = self

    # -- reading ---------------------------------------------------------------------------------

    async def _row(self, principal: Principal, number: int) -> JobInvocationRow:
        query = select(JobInvocationRow).where(JobInvocationRow.tenant_id == principal.tenant_id,
                                               JobInvocationRow.number == number)
        async with self.store.db.session() as session:
            row = (await session.exec(query)).first()
        if row is None or not reaches_project(principal, row.project_id):
            raise NotFound(f"job invocation {number} not found")
        return row

    async def _aggregates(self, ids: Sequence[str]) -> dict[str, Aggregate]:
        """Runs per status and the latest finish of each invocation: one GROUP BY for all of them."""
        found: dict[str, Aggregate] = {i: Aggregate({}, None) for i in ids}
        if not ids:
            return found
        query = (sa_select(RunRow.invocation_id, RunRow.status, func.count(), func.max(RunRow.finished_at))
                 .where(RunRow.invocation_id.in_(list(ids))).group_by(RunRow.invocation_id, RunRow.status))
        async with self.store.db.session() as session:
            for invocation_id, status, count, finished in (await _execute(session, query)).all():
                aggregate = found[invocation_id]
                aggregate.counts[status] = int(count)
                if finished is not None and (aggregate.finished_at is None or as_utc(finished) > aggregate.finished_at):
                    aggregate.finished_at = as_utc(finished)
        return found

    async def _hosts(self, row: JobInvocationRow) -> list[runs_pb2.JobInvocationHost]:
        query = sa_select(RunRow.device_id, RunRow.id, RunRow.status, RunRow.number).where(
            RunRow.invocation_id == row.id)
        async with self.store.db.session() as session:
            runs = {device: (run_id, status, number) for device, run_id, status, number
                    in (await _execute(session, query)).all()}
        hosts = []
        for device_id in row.device_ids or []:
            host = runs_pb2.JobInvocationHost(device_id=device_id)
            if device_id in runs:
                run_id, status, number = runs[device_id]
                host.run_id, host.run_status, host.run_number = run_id, status_enum(status), number or 0
            hosts.append(host)
        return hosts

    def _message(self, row: JobInvocationRow, aggregate: Aggregate, now: datetime) -> runs_pb2.JobInvocation:
        spec = runs_pb2.JobInvocationSpec.FromString(row.spec)
        state = invocation_state(row, aggregate.counts, now)
        message = runs_pb2.JobInvocation(
            id=row.id, number=row.number, project_id=row.project_id, job_id=row.job_id, job_number=row.job_number,
            job_name=row.job_name, job_category=row.job_category, description=row.description,
            description_format=row.description_format, effective_user=row.effective_user, state=state,
            runs_by_status=aggregate.counts, targeting_resolved=row.targeting_resolved,
            host_count=len(row.device_ids or []), spec=spec, mode=row.mode, task_id=row.task_id,
            cancelled=row.cancelled)
        message.created_at.CopyFrom(timestamp(row.created_at))
        message.start_at.CopyFrom(timestamp(row.start_at or row.created_at))
        started = row.started_at
        if started is not None and as_utc(started) <= now and state != State.JOB_INVOCATION_STATE_SCHEDULED:
            message.started_at.CopyFrom(timestamp(started))
        if state in (State.JOB_INVOCATION_STATE_SUCCEEDED, State.JOB_INVOCATION_STATE_FAILED,
                     State.JOB_INVOCATION_STATE_CANCELLED):
            ended = aggregate.finished_at or row.cancelled_at or row.started_at or row.created_at
            message.finished_at.CopyFrom(timestamp(ended))
        return message

    async def get(self, principal: Principal, request: runs_pb2.GetJobInvocationRequest) -> runs_pb2.JobInvocation:
        require_scope(principal, READ)
        row = await self._row(principal, request.number)
        message = self._message(row, (await self._aggregates([row.id]))[row.id], self.clock.now())
        if request.include_hosts:
            message.hosts.extend(await self._hosts(row))
        return message

    async def list(self, principal: Principal,
                   request: runs_pb2.ListJobInvocationsRequest) -> runs_pb2.ListJobInvocationsResponse:
        require_scope(principal, READ)
        limit = request.limit or DEFAULT_PAGE
        if not 1 <= limit <= MAX_PAGE or request.offset < 0:
            raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE}, offset not negative")
        now = self.clock.now()
        condition = search_condition(request.search, now)
        order = order_clause(request.order_by)
        mine = JobInvocationRow.tenant_id == principal.tenant_id
        if project := listed_project(principal, ""):  # a credential bound to a project sees its own
            mine = and_(mine, JobInvocationRow.project_id == project)
        query = select(JobInvocationRow).where(mine)
        if condition is not None:
            query = query.where(condition)
        query = query.order_by(*order).offset(request.offset).limit(limit)
        count = sa_select(func.count()).select_from(JobInvocationRow).where(mine)
        async with self.store.db.session() as session:
            rows = list((await session.exec(query)).all())
            total = int((await _execute(session, count)).scalar())
            matched = total if condition is None else int((await _execute(session, count.where(condition))).scalar())
        aggregates = await self._aggregates([row.id for row in rows])
        return runs_pb2.ListJobInvocationsResponse(
            invocations=[self._message(row, aggregates[row.id], now) for row in rows], total_count=total,
            matched_count=matched)

    async def outputs(self, principal: Principal,
                      request: runs_pb2.ListJobInvocationOutputsRequest) -> runs_pb2.ListJobInvocationOutputsResponse:
        """Each targeted device's latest-attempt output after `since`: one query for the runs, one for the chunks."""
        require_scope(principal, READ)
        row = await self._row(principal, request.number)
        wanted = set(request.device_ids)
        devices = [d for d in row.device_ids or [] if not wanted or d in wanted]
        async with self.store.db.session() as session:
            runs = {r.device_id: r for r in (await session.exec(
                select(RunRow).where(RunRow.invocation_id == row.id))).all()}
            keys = [(runs[d].id, runs[d].attempt) for d in devices if d in runs]
            chunks: dict[str, list[LogChunkRow]] = {}
            if keys:
                query = select(LogChunkRow).where(tuple_(LogChunkRow.run_id, LogChunkRow.attempt).in_(keys))
                if request.since:
                    query = query.where(LogChunkRow.created_at > datetime.fromtimestamp(request.since, UTC))
                for chunk in (await session.exec(query.order_by(LogChunkRow.run_id, LogChunkRow.sequence))).all():
                    chunks.setdefault(chunk.run_id, []).append(chunk)
        reply = runs_pb2.ListJobInvocationOutputsResponse()
        for device_id in devices:
            output = reply.outputs.add(device_id=device_id)
            run = runs.get(device_id)
            if run is None:
                continue
            output.run_id, output.run_status = run.id, status_enum(run.status)
            for chunk in chunks.get(run.id, []):
                if request.since and as_utc(chunk.created_at).timestamp() <= request.since:
                    continue
                output.chunks.add(stream=chunk.stream, data=chunk.data.decode("utf-8", errors="replace"),
                                  timestamp=as_utc(chunk.created_at).timestamp())
        reply.invocation.CopyFrom(self._message(row, (await self._aggregates([row.id]))[row.id], self.clock.now()))
        return reply

    # -- creating ----------------------------------------------------------------------------------

    async def _template(self, principal: Principal, job_id: str, fresh: bool = False) -> Job:
        job = await self.peers.job(principal, job_id, fresh=fresh)
        if not job.HasField("job_template"):
            raise InvalidArgument("job_template_id: is not a job template")
        if job.job_template.snippet:
            raise InvalidArgument("job_template_id: is a snippet, which cannot be run")
        return job

    async def _resolve(self, principal: Principal, spec: runs_pb2.JobInvocationSpec) -> list[str]:
        """The devices the search query matches, by name (then id), shuffled when randomized."""
        resolved = await self.peers.resolve(principal, DeviceTargets(query=spec.search_query, query_dialect="foreman"))
        devices = sorted(resolved.devices, key=lambda device: (device.name, device.id))
        ids = [device.id for device in devices]
        if spec.randomized_ordering:
            random.shuffle(ids)
        return ids

    def _new_row(self, principal: Principal, job: Job, spec: runs_pb2.JobInvocationSpec, now: datetime, *,
                 mode: str, device_ids: list[str], resolved: bool, start_at: datetime | None, pending: bool = False,
                 recurrence: JobSchedule | None = None, idempotency_key: str = "") -> JobInvocationRow:
        description_format = spec.description_format or default_description_format(job)
        return JobInvocationRow(
            id=uuid7_string(), number=0, tenant_id=principal.tenant_id, project_id=job.project_id, job_id=job.id,
            job_number=job.number, job_name=job.name, job_category=job.job_template.job_category,
            description=describe(description_format, job, dict(spec.inputs)), description_format=description_format,
            effective_user=spec.effective_user, spec=spec.SerializeToString(), targeting_type=spec.targeting_type,
            search_query=spec.search_query, device_ids=device_ids, targeting_resolved=resolved, mode=mode,
            start_at=start_at, start_before=spec.start_before.ToDatetime(tzinfo=UTC) if spec.HasField("start_before")
            else None, recurrence_id=spec.recurrence_id, recurrence_number=recurrence.number if recurrence else 0,
            user_subject_id=spec.user_subject_id, user_name=spec.user_name, task_id=str(uuid.uuid4()),
            pending=pending, idempotency_key=idempotency_key, created_at=now,
            started_at=None if pending else (start_at if start_at and start_at > now else now))

    def _runs(self, principal: Principal, job: Job, invocation: JobInvocationRow, spec: runs_pb2.JobInvocationSpec,
              now: datetime) -> list[RunRow]:
        """One run per targeted device, queued in order (or delayed to start_at), under the invocation's
        concurrency level, deadline and timeout."""
        payload = dict(spec.inputs)
        command = domain.render_command(job.command, domain.inputs_for(job, payload))
        start = invocation.start_at if invocation.start_at and invocation.start_at > now else now
        run_spec = RunSpec(payload=payload, payload_hash=canonical_hash(payload), scheduled=invocation.start_at)
        rows = []
        for index, device_id in enumerate(invocation.device_ids):
            row = self.engine._new_run(principal, job, run_spec, now, index, invocation_id=invocation.id, deps=[],
                                       device_id=device_id, command=command, keyed=False)
            row.expires_at = run_deadline(spec, start)
            if spec.HasField("execution_timeout_interval"):
                row.timeout_secs = spec.execution_timeout_interval
            if spec.concurrency_level > 0:
                row.concurrency_key = f"job-invocation:{invocation.id}"
                row.max_concurrency_per_key = spec.concurrency_level
                row.limited = True
            row.triggered_by = "cron" if invocation.idempotency_key else "manual"
            rows.append(row)
        return rows

    async def _store(self, rows: list[RunRow], invocations: list[JobInvocationRow],
                     fill: JobInvocationRow | None = None) -> None:
        """The invocations (numbered), the runs and, for an occurrence, the waiting invocation it fills: one
        transaction."""

        def write(conn: Connection) -> None:
            if invocations:
                last = reserve(conn, CounterRow, INVOCATION_NUMBER, len(invocations))
                for i, invocation in enumerate(invocations):
                    invocation.number = last - len(invocations) + 1 + i
                conn.execute(insert(JobInvocationRow.__table__),
                             [{name: getattr(inv, name) for name in JobInvocationRow.model_fields}
                              for inv in invocations])
            if fill is not None:
                done = conn.execute(update(JobInvocationRow).where(
                    JobInvocationRow.id == fill.id, JobInvocationRow.pending).values(
                    pending=False, device_ids=fill.device_ids, targeting_resolved=True, started_at=fill.started_at,
                    idempotency_key=fill.idempotency_key, description=fill.description))
                if done.rowcount != 1:
                    raise AlreadyExists("the occurrence was filled concurrently")

        await self.store.insert_runs(rows, also=write)
        self.engine._wake({row.target_key for row in rows if row.status == "queued"})

    async def create(self, principal: Principal,
                     request: runs_pb2.CreateJobInvocationRequest) -> runs_pb2.JobInvocation:
        require_scope(principal, TRIGGER)
        now = self.clock.now()
        job = await self._template(principal, request.job_id)
        spec = runs_pb2.JobInvocationSpec()
        spec.CopyFrom(request.spec)
        validate_spec(spec, now)
        check_inputs(job, dict(spec.inputs))
        if not spec.HasField("execution_timeout_interval") and job.job_template.HasField("execution_timeout_interval"):
            spec.execution_timeout_interval = job.job_template.execution_timeout_interval
        spec.effective_user = effective_user(job, spec.effective_user, principal)
        spec.user_subject_id, spec.user_name = principal.subject_id, principal.subject_name or principal.subject_id
        spec.ClearField("next_occurrence")
        start_at = spec.start_at.ToDatetime(tzinfo=UTC) if spec.HasField("start_at") else None
        if request.HasField("recurrence"):
            return await self._create_recurring(principal, job, spec, request.recurrence, now, start_at)
        device_ids = await self._resolve(principal, spec)
        if spec.targeting_type == "static_query":
            spec.ClearField("device_ids")
            spec.device_ids.extend(device_ids)
        row = self._new_row(principal, job, spec, now, mode="future" if start_at and start_at > now else "immediate",
                            device_ids=device_ids, resolved=True, start_at=start_at)
        await self._store(self._runs(principal, job, row, spec, now), [row])
        return await self._with_hosts(row, now)

    async def _with_hosts(self, row: JobInvocationRow, now: datetime) -> runs_pb2.JobInvocation:
        message = self._message(row, (await self._aggregates([row.id]))[row.id], now)
        message.hosts.extend(await self._hosts(row))
        return message

    async def _create_recurring(self, principal: Principal, job: Job, spec: runs_pb2.JobInvocationSpec,
                                recurrence: runs_pb2.JobInvocationRecurrence, now: datetime,
                                start_at: datetime | None) -> runs_pb2.JobInvocation:
        """The schedule in the jobs service (carrying this spec), and the invocation of its first occurrence."""
        if recurrence.max_iteration < 0:
            raise InvalidArgument("max_iteration: must not be negative")
        if not recurrence.cron_line.strip():
            raise InvalidArgument("cron_line: can't be blank")
        if len(recurrence.purpose) > MAX_PURPOSE:
            raise InvalidArgument(f"purpose: is too long (maximum is {MAX_PURPOSE} characters)")
        resolved = spec.targeting_type == "static_query"
        device_ids: list[str] = []
        if resolved:  # static: the hosts are the same at every occurrence
            device_ids = await self._resolve(principal, spec)
            spec.ClearField("device_ids")
            spec.device_ids.extend(device_ids)
        spec.recurrence_id = str(uuid.uuid4())
        schedule = JobSchedule(id=spec.recurrence_id, job_id=job.id, cron=recurrence.cron_line,
                               max_iteration=recurrence.max_iteration, purpose=recurrence.purpose,
                               trigger_request=runs_pb2.TriggerJobRequest(
                                   job_id=job.id, job_invocation=spec).SerializeToString())
        if recurrence.HasField("end_time"):
            schedule.end_time.CopyFrom(recurrence.end_time)
        if start_at is not None:
            schedule.not_before.FromDatetime(start_at)
        created = await self.peers.create_schedule(principal, schedule)
        first = created.next_fire_at.ToDatetime(tzinfo=UTC)
        row = self._new_row(principal, job, spec, now, mode="recurring", device_ids=device_ids, resolved=resolved,
                            start_at=first, pending=True, recurrence=created)
        try:
            await self._store([], [row])
        except Exception:
            await self.peers.cancel_schedule(principal, created.id)
            raise
        return await self._with_hosts(row, now)

    async def trigger_occurrence(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run:
        """One occurrence of a recurring invocation (the jobs service's scheduler, through TriggerJob): fills
        the invocation waiting for it (or makes one), re-resolving a dynamic query, and makes the next
        occurrence's waiting invocation. A repeated key answers the occurrence already made."""
        require_scope(principal, TRIGGER)
        now = self.clock.now()
        spec = runs_pb2.JobInvocationSpec()
        spec.CopyFrom(request.job_invocation)
        key = request.idempotency_key
        existing = await self._by_key(principal.tenant_id, key)
        if existing is not None:
            return await self._first_run(existing, hit=True)
        job = await self._template(principal, request.job_id)
        device_ids = list(spec.device_ids) if spec.targeting_type == "static_query" \
            else await self._resolve(principal, spec)
        next_occurrence = spec.next_occurrence.ToDatetime(tzinfo=UTC) if spec.HasField("next_occurrence") else None
        spec.ClearField("next_occurrence")
        waiting = await self._waiting(principal.tenant_id, spec.recurrence_id)
        recurrence = JobSchedule(number=waiting.recurrence_number) if waiting is not None else \
            await self.peers.get_schedule(principal, spec.recurrence_id)
        row = self._new_row(principal, job, spec, now, mode="recurring", device_ids=device_ids, resolved=True,
                            start_at=now, recurrence=recurrence, idempotency_key=key)
        new = []
        if waiting is not None:  # the occurrence's own invocation, waiting since the last one (or the creation)
            row.id, row.number, row.task_id, row.start_at = waiting.id, waiting.number, waiting.task_id, waiting.start_at
            row.created_at = waiting.created_at
        else:
            new.append(row)
        if next_occurrence is not None:
            new.append(self._new_row(principal, job, spec, now, mode="recurring", device_ids=[] if
                                     spec.targeting_type == "dynamic_query" else device_ids,
                                     resolved=spec.targeting_type == "static_query", start_at=next_occurrence,
                                     pending=True, recurrence=recurrence))
        try:
            await self._store(self._runs(principal, job, row, spec, now), new, fill=row if waiting else None)
        except (AlreadyExists, *self._integrity()):
            existing = await self._by_key(principal.tenant_id, key)
            if existing is None:
                raise
            return await self._first_run(existing, hit=True)
        return await self._first_run(row)

    @staticmethod
    def _integrity() -> tuple[type[Exception], ...]:
        from sqlalchemy.exc import IntegrityError

        return (IntegrityError,)

    async def _by_key(self, tenant_id: str, key: str) -> JobInvocationRow | None:
        if not key:
            return None
        query = select(JobInvocationRow).where(JobInvocationRow.tenant_id == tenant_id,
                                               JobInvocationRow.idempotency_key == key)
        async with self.store.db.session() as session:
            return (await session.exec(query)).first()

    async def _waiting(self, tenant_id: str, recurrence_id: str) -> JobInvocationRow | None:
        if not recurrence_id:
            return None
        query = (select(JobInvocationRow).where(JobInvocationRow.tenant_id == tenant_id,
                                                JobInvocationRow.recurrence_id == recurrence_id,
                                                JobInvocationRow.pending, not_(JobInvocationRow.cancelled))
                 .order_by(JobInvocationRow.number).limit(1))
        async with self.store.db.session() as session:
            return (await session.exec(query)).first()

    async def _first_run(self, row: JobInvocationRow, hit: bool = False) -> runs_pb2.Run:
        """What TriggerJob answers for an occurrence: its first run, or (no device matched) a run message
        carrying only the invocation's id."""
        query = select(RunRow).where(RunRow.invocation_id == row.id).order_by(RunRow.created_at).limit(1)
        async with self.store.db.session() as session:
            first = (await session.exec(query)).first()
        run = run_message(first) if first is not None else runs_pb2.Run(job_id=row.job_id, invocation_id=row.id)
        run.idempotency_hit = hit
        return run

    # -- changing ----------------------------------------------------------------------------------

    async def cancel(self, principal: Principal,
                     request: runs_pb2.CancelJobInvocationRequest) -> runs_pb2.CancelJobInvocationResponse:
        """Cancels what has not finished (and the recurrence); refuses when nothing can be cancelled."""
        require_scope(principal, WRITE)
        row = await self._row(principal, request.number)
        now = self.clock.now()
        state = invocation_state(row, (await self._aggregates([row.id]))[row.id].counts, now)
        if state not in (State.JOB_INVOCATION_STATE_SCHEDULED, State.JOB_INVOCATION_STATE_RUNNING):
            raise FailedPrecondition("The job could not be cancelled.")
        cancelled = update(JobInvocationRow).where(JobInvocationRow.id == row.id).values(cancelled=True,
                                                                                       cancelled_at=now)
        await self.store.db.write(lambda conn: conn.execute(cancelled))
        active = await self.store.list(principal.tenant_id, invocation_id=row.id, limit=100_000, active_only=True)
        changed = await self.store.set_many([r.id for r in active], ACTIVE, status="canceled", finished_at=now,
                                            error="the job invocation was cancelled")
        done = {c.id for c in changed}
        for run in active:
            if run.id in done and run.status in ON_DEVICE:
                self.engine._stop_where_it_runs(run, force=request.force)
        if row.recurrence_id:
            await self.peers.cancel_schedule(principal, row.recurrence_id)
            to_come = update(JobInvocationRow).where(  # the occurrences still to come go too
                JobInvocationRow.tenant_id == principal.tenant_id,
                JobInvocationRow.recurrence_id == row.recurrence_id, JobInvocationRow.pending).values(
                cancelled=True, cancelled_at=now)
            await self.store.db.write(lambda conn: conn.execute(to_come))
        row = await self._row(principal, request.number)
        invocation = self._message(row, (await self._aggregates([row.id]))[row.id], self.clock.now())
        return runs_pb2.CancelJobInvocationResponse(cancelled=True, invocation=invocation)

    async def rerun(self, principal: Principal, request: runs_pb2.RerunJobInvocationRequest) -> runs_pb2.JobInvocation:
        """A new, immediate invocation of the same template with the same inputs and options, on every
        targeted device, the failed ones or the succeeded ones."""
        require_scope(principal, TRIGGER)
        row = await self._row(principal, request.number)
        try:
            job = await self._template(principal, row.job_id, fresh=True)
        except NotFound:
            raise NotFound(f"Could not rerun job {row.number} because its template could not be found") from None
        now = self.clock.now()
        spec = runs_pb2.JobInvocationSpec.FromString(row.spec)
        for field in ("start_at", "start_before", "recurrence_id", "next_occurrence"):
            spec.ClearField(field)
        spec.reruns_number = row.number
        spec.user_subject_id, spec.user_name = principal.subject_id, principal.subject_name or principal.subject_id
        if request.failed_only or request.succeeded_only:
            devices = await self._hosts_that(row, succeeded=request.succeeded_only and not request.failed_only)
        elif spec.targeting_type == "static_query" or row.targeting_resolved and row.targeting_type == "static_query":
            devices = list(row.device_ids or [])
        else:
            devices = await self._resolve(principal, spec)
        if spec.targeting_type == "static_query":
            spec.ClearField("device_ids")
            spec.device_ids.extend(devices)
        rerun = self._new_row(principal, job, spec, now, mode="immediate", device_ids=devices, resolved=True,
                              start_at=None)
        rerun.description, rerun.description_format = row.description, row.description_format
        await self._store(self._runs(principal, job, rerun, spec, now), [rerun])
        return await self._with_hosts(rerun, now)

    async def _hosts_that(self, row: JobInvocationRow, succeeded: bool) -> list[str]:
        """The targeted devices whose run completed (succeeded), or did not (failed: a finished invocation's
        devices without a completed run; a running one's whose run failed or was cancelled)."""
        query = sa_select(RunRow.device_id, RunRow.status).where(RunRow.invocation_id == row.id)
        async with self.store.db.session() as session:
            status = dict((await _execute(session, query)).all())
        finished = not any(s in ACTIVE for s in status.values())
        if succeeded:
            return [d for d in row.device_ids or [] if status.get(d) == "completed"]
        if finished:
            return [d for d in row.device_ids or [] if status.get(d) != "completed"]
        return [d for d in row.device_ids or [] if status.get(d) in TERMINAL and status.get(d) != "completed"]


__all__ = ["JobInvocationRow", "JobInvocations", "TABLES", "invocation_state", "state_condition"]
