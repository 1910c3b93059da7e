"""The run engine: triggering, reading and canceling runs, and every state change of
an attempt after it started. Timers (delayed runs, retries, heartbeat deadlines) are
rows, advanced by `tick()` against the injectable clock."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.devices.v1.devices_pb2 import DeviceTargets
from jobline.jobs.v1.jobs_pb2 import Job
from jobline.runs.v1 import runs_pb2
from services.common.clock import Clock, as_utc
from services.common.errors import AlreadyExists, Conflict, DomainError, InvalidArgument, NotFound
from services.common.ids import uuid7_string, uuid7_strings
from services.common.principal import READ, TRIGGER, WRITE, listed_project, reaches_project, require_scope
from services.common.secrets import SecretBox, new_secrets, secret_box, secret_hash

from . import domain, pools
from .mapping import (chunk_message, event_message, output_message, run_message, status_enum, status_word,
                      subject_word)
from .peers import Peers
from .store import (ACTIVE, ON_DEVICE, TERMINAL, UNACCEPTED, IntegrityError, RunRow, RunStore, RunTemplate,
                    Transition, canonical_hash)

log = logging.getLogger(__name__)

MAX_LIST = 1000
MAX_BULK = 1000
MAX_BULK_RUNS = 10_000  # runs one bulk trigger of a device job may create (items x target devices)
MAX_CANCEL_ALL = 10_000
WATCH_POLL_SECS = 0.25
NAME_ATTEMPTS = 3  # inserts tried when a generated run name happens to be taken already
SORT_KEYS = {runs_pb2.RUN_SORT_FIELD_UNSPECIFIED: "created_at", runs_pb2.RUN_SORT_FIELD_CREATED_AT: "created_at",
             runs_pb2.RUN_SORT_FIELD_DURATION: "duration", runs_pb2.RUN_SORT_FIELD_JOB_VERSION: "job_version",
             runs_pb2.RUN_SORT_FIELD_TRIGGERED_BY: "triggered_by", runs_pb2.RUN_SORT_FIELD_STATUS: "status",
             runs_pb2.RUN_SORT_FIELD_NAME: "name"}
# An executing run's deadline is its timeout plus this: room for the executor to stop it and report
# (the agent's SIGTERM-to-SIGKILL grace is 5 s by default).
EXECUTION_SLACK_SECS = 60


@dataclass
class RunSpec:
    """What one trigger (or one bulk item) asks for."""

    payload: dict[str, Any]
    payload_hash: str
    priority: int = 0
    scheduled: datetime | None = None
    idempotency_key: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    concurrency_key: str = ""


class Dispatcher(Protocol):
    """Whoever delivers runs to where they execute: the agent hub (devices) or the HTTP executor."""

    def wake(self, target_keys: Iterable[str] | None = None) -> None:
        """Queued runs for these targets (all, for None) may be ready: dispatch them."""

    def stop_run(self, row: RunRow, force: bool = False) -> None:
        """Stops the run where it executes, if it executes here."""

    # Optional (the agent hub): reserve(rows, now) -> a reservation with settle(stored), or None. It claims,
    # before they are inserted, the new runs it can hand out as soon as they are stored (see _store_runs).


def target_key(tenant_id: str, device_id: str) -> str:
    return f"{tenant_id}/{device_id}"


def _target(tenant_id: str, target: str) -> dict[str, str]:
    """A new run's target columns: for a device id, that device; for a pool key, the pool; "" for none."""
    if pools.is_pool(target):
        return dict(target_key=target, device_id="", pool_key=target)
    return dict(target_key=target_key(tenant_id, target) if target else "", device_id=target)


class RunEngine:
    def __init__(self, store: RunStore, peers: Peers, clock: Clock, heartbeat_timeout_secs: float = 30.0,
                 box: SecretBox | None = None) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock
        self.heartbeat_timeout = timedelta(seconds=heartbeat_timeout_secs)
        self.dispatchers: list[Dispatcher] = []
        self._windows: dict[str, tuple[str, str]] = {}  # job_version_id -> (execution_window_cron, timezone)
        # Job invocations (services/runs/invocations.py) register themselves here.
        self.job_invocations: Any = None
        self.box = box or secret_box()
        self._snapshot: tuple[Job, str, bytes] | None = None  # the last job stored: one seal per fan-out

    def _stored_snapshot(self, job: Job) -> bytes:
        cached = self._snapshot
        if cached is not None and cached[0] is job and cached[1] == job.webhook_secret:
            return cached[2]
        stored = domain.stored_snapshot(job, self.box)
        self._snapshot = (job, job.webhook_secret, stored)
        return stored

    async def seal_stored_snapshots(self) -> int:
        """Seals the webhook secrets older releases kept in clear in runs' snapshots (once per database)."""
        return await self.store.rewrite_snapshots(lambda snapshot: domain.resealed_snapshot(snapshot, self.box),
                                                  domain.SNAPSHOTS_SEALED)

    # -- triggering ---------------------------------------------------------------------------

    async def trigger(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> runs_pb2.Run:
        require_scope(principal, TRIGGER)
        if request.HasField("job_invocation"):  # an occurrence of a recurring job invocation
            return await self.job_invocations.trigger_occurrence(principal, request)
        job = await self._job_to_run(principal, request)
        payload = self._checked_payload(job, request)
        now = self.clock.now()
        if request.idempotency_key:
            existing = await self.store.by_idempotency_keys(principal.tenant_id, job.id, [request.idempotency_key])
            if request.idempotency_key in existing:
                return _hit(existing[request.idempotency_key])
        digest = _request_digest(request, payload)
        if job.dedup_window_secs:
            duplicate = await self.store.recent_duplicate(principal.tenant_id, job.id, digest,
                                                          now - timedelta(seconds=job.dedup_window_secs))
            if duplicate is not None:
                return _hit(duplicate)
        parent = await self._row(principal, request.parent_run_id) if request.parent_run_id else None
        rows = await self._new_runs(principal, request, job, payload, digest, now, parent)
        names = [row.name for row in rows]
        if request.dry_run:
            return run_message(rows[0])
        for attempt in range(NAME_ATTEMPTS):
            try:
                await self._store_runs(rows)
                break
            except IntegrityError:  # the same idempotency key or run name, triggered at the same moment
                if request.idempotency_key:
                    existing = await self.store.by_idempotency_keys(principal.tenant_id, job.id,
                                                                    [request.idempotency_key])
                    if request.idempotency_key in existing:
                        return _hit(existing[request.idempotency_key])
                if request.name:
                    await self._refuse_taken_names(principal, job, names)
                taken = set(await self.store.names_taken(principal.tenant_id, job.id, [r.name for r in rows]))
                if not taken or attempt == NAME_ATTEMPTS - 1:
                    raise
                for row in rows:  # a generated name someone has already: draw another
                    if row.name in taken:
                        row.name = domain.run_names(job.slug, "", 1)[0]
        self._wake({row.target_key for row in rows if row.status == "queued"})
        return run_message(rows[0])

    async def _store_runs(self, rows: Sequence[RunRow], also: Any = None) -> None:
        """Inserts new runs (`store.insert_runs`). Those a dispatcher can start at once (the agent hub: a
        device streaming on this replica with room and nothing queued before them) are inserted already
        claimed and handed out as soon as the insert commits: no claim round (read and write) after it.
        When the insert fails they are queued runs again and the room they took is given back. The
        write is shielded: a caller that goes away mid-write leaves the runs to be handed out (or the
        room released) when it settles."""
        now = self.clock.now()
        reserved = [r for d in self.dispatchers if (reserve := getattr(d, "reserve", None)) is not None
                    and (r := reserve(rows, now)) is not None]
        if not reserved:
            await self.store.insert_runs(rows, also)
            return

        def settle(write: asyncio.Future) -> None:  # before the caller resumes: a retried insert reserves anew
            stored = not write.cancelled() and write.exception() is None
            for reservation in reserved:
                reservation.settle(stored)

        write = asyncio.ensure_future(self.store.insert_runs(rows, also))
        write.add_done_callback(settle)
        await asyncio.shield(write)

    def _checked_payload(self, job: Job, request: runs_pb2.TriggerJobRequest) -> dict:
        """The trigger's payload, refused when the job's payload_schema does not take it (or when the
        trigger overrides a command the job has not)."""
        if request.command and not job.command:
            raise InvalidArgument(f"job {job.id} has no command to override")
        payload = MessageToDict(request.payload) if request.HasField("payload") else {}
        domain.validate_payload(_schema(job), payload)
        return payload

    async def _new_runs(self, principal: Principal, request: runs_pb2.TriggerJobRequest, job: Job, payload: dict,
                        digest: str, now: datetime, parent: RunRow | None = None) -> list[RunRow]:
        """A trigger's runs, not stored yet: one per target device (one for an endpoint job), one invocation."""
        deps = await self._dependencies(principal, job)
        spec = RunSpec(payload=payload, payload_hash=digest, priority=request.priority,
                       scheduled=request.scheduled_at.ToDatetime(tzinfo=UTC) if request.HasField("scheduled_at") else None,
                       idempotency_key=request.idempotency_key, metadata=dict(request.metadata), tags=dict(request.tags),
                       concurrency_key=request.concurrency_key)
        invocation_id = uuid7_string()
        if domain.is_device_job(job):
            template = request.command or job.command  # a handler job's command is the agent's own
            command = domain.render_command(template, domain.inputs_for(job, payload)) if template else ""
            devices = await self._run_targets(principal, job, list(request.device_ids))
        else:
            command, devices = "", [""]
        names = domain.run_names(job.slug, request.name, len(devices))
        if request.name:
            await self._refuse_taken_names(principal, job, names)
        return [self._new_run(principal, job, spec, now, i, invocation_id=invocation_id, deps=deps, parent=parent,
                              device_id=device_id, command=command, keyed=i == 0, name=names[i])
                for i, device_id in enumerate(devices)]

    async def trigger_many(self, principal: Principal, requests: list[runs_pb2.TriggerJobRequest]
                           ) -> list[runs_pb2.Run | DomainError]:
        """Many TriggerJob requests in one call, each answered on its own (services/runs/multi_trigger.py)."""
        from .multi_trigger import trigger_many
        return await trigger_many(self, principal, requests)

    async def _job_to_run(self, principal: Principal, request: runs_pb2.TriggerJobRequest) -> Job:
        """The job as the run will execute it: the version asked for (of a job still enabled), else the current one."""
        if not request.job_version_id:
            return await self._triggerable_job(principal, request.job_id)
        version = await self.peers.job_version(principal, request.job_id, request.job_version_id)
        await self._triggerable_job(principal, version.job_id)
        return version.snapshot

    async def _refuse_taken_names(self, principal: Principal, job: Job, names: list[str]) -> None:
        taken = await self.store.names_taken(principal.tenant_id, job.id, names)
        if taken:
            raise AlreadyExists(f"job {job.id} already has a run named {taken[0]!r}")

    async def bulk_trigger(self, principal: Principal,
                           request: runs_pb2.BulkTriggerJobRequest) -> runs_pb2.BulkTriggerJobResponse:
        """Many runs of one job: one read of the keys already used, one insert for every new run. Each item
        of a device job fans out like a single trigger: one run per target device (one invocation per
        item; with any_available, one run per item in the targets' pool)."""
        require_scope(principal, TRIGGER)
        if not request.items:
            raise InvalidArgument("items must not be empty")
        if len(request.items) > MAX_BULK:
            raise InvalidArgument(f"at most {MAX_BULK} items per call")
        job = await self._triggerable_job(principal, request.job_id)
        deps = await self._dependencies(principal, job)
        schema = _schema(job)
        now = self.clock.now()
        batch_id = str(uuid.uuid4())
        specs = []
        commands: list[str] = []
        # Items often repeat a payload or a time: each distinct one is parsed, checked and hashed once, and
        # its runs share the dict (so it is serialized once too).
        payloads: dict[bytes | None, tuple[dict[str, Any], str, str]] = {}  # serialized -> payload, hash, command
        times: dict[tuple[int, int], datetime] = {}
        no_tags: dict[str, str] = {}
        for index, item in enumerate(request.items):
            key = item.payload.SerializeToString(deterministic=True) if item.HasField("payload") else None
            known = payloads.get(key)
            if known is None:
                payload = MessageToDict(item.payload) if key is not None else {}
                try:
                    domain.validate_payload(schema, payload)
                    command = domain.render_command(job.command, domain.inputs_for(job, payload)) if job.command \
                        else ""
                except InvalidArgument as error:
                    raise InvalidArgument(f"items[{index}]: {error.message}") from None
                known = payloads[key] = (payload, canonical_hash(payload), command)
            payload, digest, command = known
            commands.append(command)
            scheduled = None
            if item.HasField("scheduled_at"):
                at = (item.scheduled_at.seconds, item.scheduled_at.nanos)
                scheduled = times.get(at)
                if scheduled is None:
                    scheduled = times[at] = item.scheduled_at.ToDatetime(tzinfo=UTC)
            specs.append(RunSpec(payload=payload, payload_hash=digest, priority=item.priority, scheduled=scheduled,
                                 idempotency_key=item.idempotency_key,
                                 metadata=dict(item.metadata) if item.metadata else {},
                                 tags=dict(item.tags) if item.tags else no_tags, concurrency_key=item.concurrency_key))
        targets: list[list[str]] = [[""]] * len(specs)  # endpoint jobs: one run, no device
        if domain.is_device_job(job):
            targets = await self._bulk_targets(principal, job, len(specs))
            runs = sum(len(devices) for devices in targets)
            if runs > MAX_BULK_RUNS:
                raise InvalidArgument(f"this bulk trigger would create {runs} runs; at most {MAX_BULK_RUNS} per call")
        for attempt in range(2):
            existing = await self.store.by_idempotency_keys(principal.tenant_id, job.id,
                                                            [s.idempotency_key for s in specs])
            response = runs_pb2.BulkTriggerJobResponse(batch_id=batch_id, total=len(specs))
            results = response.results
            rows: list[RunRow] = []
            fresh: dict[str, RunRow] = {}
            shared: dict = {}  # what the runs of this call have in common (see _new_run)
            count = sum(len(devices) for devices in targets)
            names, run_ids, invocation_ids = (iter(domain.run_names(job.slug, "", count)), iter(uuid7_strings(count)),
                                              iter(uuid7_strings(len(specs))))
            tokens = iter(new_secrets("jlrt_", len(specs)))
            for index, spec in enumerate(specs):
                hit = existing.get(spec.idempotency_key) or fresh.get(spec.idempotency_key)
                if hit is not None:
                    results.add(id=hit.id, status=hit.status, idempotency_hit=True, invocation_id=hit.invocation_id)
                    continue
                token = next(tokens)
                invocation_id = next(invocation_ids)
                item_rows = [self._new_run(principal, job, spec, now, len(rows) + i, invocation_id=invocation_id,
                                           deps=deps, batch_id=batch_id, device_id=device_id,
                                           command=commands[index], keyed=i == 0,
                                           run_token_hash=secret_hash(token) if i == 0 else "", name=next(names),
                                           shared=shared, run_id=next(run_ids))
                             for i, device_id in enumerate(targets[index])]
                rows.extend(item_rows)
                if spec.idempotency_key:
                    fresh[spec.idempotency_key] = item_rows[0]
                results.add(id=item_rows[0].id, status=item_rows[0].status, run_token=token,
                            invocation_id=invocation_id)
                response.created += 1
            try:
                await self._store_runs(rows)
                break
            except IntegrityError:
                if attempt:
                    raise Conflict("idempotency keys or run names were used concurrently; try again") from None
        self._wake({row.target_key for row in rows if row.status == "queued"})
        return response

    async def _bulk_targets(self, principal: Principal, job: Job, items: int) -> list[list[str]]:
        """The devices of each item of a device job's bulk trigger (at most one ResolveTargets call): the
        same for every item (see _run_targets)."""
        return [await self._run_targets(principal, job, [])] * items

    async def _triggerable_job(self, principal: Principal, job_id: str) -> Job:
        job = await self.peers.job(principal, job_id)
        if job.HasField("enabled") and not job.enabled:
            job = await self.peers.job(principal, job_id, fresh=True)  # enabled just now? never refuse on a stale copy
        if job.HasField("enabled") and not job.enabled:
            raise InvalidArgument(f"job {job.id} is disabled")
        return job

    async def _dependencies(self, principal: Principal, job: Job) -> list[dict]:
        deps = await self.peers.dependencies(principal, job.id)
        return [{"id": d.id, "depends_on_job_id": d.depends_on_job_id, "condition": d.condition or "on_success",
                 "created_at": d.created_at.ToJsonString() if d.HasField("created_at") else ""} for d in deps]

    def _new_run(self, principal: Principal, job: Job, spec: RunSpec, now: datetime, index: int, *,
                 invocation_id: str, deps: list[dict], parent: RunRow | None = None, device_id: str = "",
                 command: str = "", keyed: bool = True, batch_id: str = "", run_token_hash: str = "",
                 name: str = "", shared: dict | None = None, run_id: str = "") -> RunRow:
        """A new run of `job` as `spec` asks for it. `shared`, a dict the caller keeps for the runs of one
        trigger call (the same principal, job, now, deps, parent and batch_id), keeps what they have in
        common (computed once; their metadata, trace and limits are then shared objects, for runs written
        and let go, like a bulk trigger's)."""
        if shared is None:
            status, scheduled = self._initial_status(job, spec.scheduled, now, bool(deps))
            common = RunTemplate({**self._run_base(principal, job, now, deps, parent, batch_id),
                                  **self._limits(job, spec.concurrency_key), "status": status,
                                  "scheduled_at": scheduled, "trace": {},
                                  "metadata_": {**job.default_run_metadata, **spec.metadata}})
        else:
            common = shared.get((spec.scheduled, spec.concurrency_key))
            if common is None:
                base = shared.get("base")
                if base is None:
                    base = shared["base"] = {**self._run_base(principal, job, now, deps, parent, batch_id),
                                             "trace": {}, "metadata_": dict(job.default_run_metadata)}
                status, scheduled = self._initial_status(job, spec.scheduled, now, bool(deps))
                common = shared[(spec.scheduled, spec.concurrency_key)] = RunTemplate({
                    **base, **self._limits(job, spec.concurrency_key), "status": status, "scheduled_at": scheduled})
        run_id = run_id or uuid7_string()
        values = {
            "id": run_id, "invocation_id": invocation_id, **_target(principal.tenant_id, device_id),
            "priority": spec.priority, "command": command, "payload": spec.payload, "payload_hash": spec.payload_hash,
            "tags": spec.tags, "idempotency_key": spec.idempotency_key if keyed else "",
            # distinct, ordered: cursors page through a batch
            "created_at": now + timedelta(microseconds=index),
            "run_token_hash": run_token_hash, "root_run_id": run_id, "concurrency_key": spec.concurrency_key,
            "name": name}
        if shared is not None and spec.metadata:
            values["metadata_"] = {**job.default_run_metadata, **spec.metadata}
        return RunRow.from_values(values, common)

    def _run_base(self, principal: Principal, job: Job, now: datetime, deps: list[dict], parent: RunRow | None,
                  batch_id: str) -> dict[str, Any]:
        """The fields every run of one trigger call has alike."""
        return dict(
            tenant_id=principal.tenant_id, project_id=job.project_id, job_id=job.id, job_version=job.version,
            job_version_id=job.version_id, max_attempts=job.max_attempts or 1, timeout_secs=job.timeout_secs,
            snapshot=self._stored_snapshot(job), triggered_by=_trigger_source(principal, parent),
            created_by=principal.subject_name or principal.subject_id,
            expires_at=now + timedelta(seconds=job.run_ttl_secs) if job.run_ttl_secs > 0 else None,
            batch_id=batch_id, parent_run_id=parent.id if parent else "", dependencies=deps,
            webhook_url=job.webhook_url, **_subject(principal),
        )

    @staticmethod
    def _limits(job: Job, concurrency_key: str) -> dict[str, Any]:
        """A run's flow-control fields: the job's limits (the key's, for a run with a concurrency key)."""
        key_limit = next((k for k in job.rate_limit_keys if concurrency_key and k.name == concurrency_key), None)
        limits = dict(max_concurrency=max(job.max_concurrency, 0),
                      rate_limit_max=max(job.rate_limit_max, 0) if job.rate_limit_window_secs > 0 else 0,
                      rate_limit_window_secs=max(job.rate_limit_window_secs, 0),
                      max_concurrency_per_key=max(job.max_concurrency_per_key, 0) if concurrency_key else 0,
                      key_rate_max=key_limit.max if key_limit and key_limit.window_secs > 0 else 0,
                      key_rate_window_secs=key_limit.window_secs if key_limit else 0)
        limits["limited"] = any(limits.values()) and (
            bool(limits["max_concurrency"] or limits["rate_limit_max"] or limits["max_concurrency_per_key"]
                 or limits["key_rate_max"]))
        return limits

    def _initial_status(self, job: Job, scheduled: datetime | None, now: datetime,
                        waiting: bool) -> tuple[str, datetime]:
        """waiting on dependencies; delayed until scheduled_at or the execution window opens; else queued."""
        at = scheduled if scheduled and scheduled > now else now
        opening = domain.window_opening(job.execution_window_cron, job.timezone, at)
        if opening is not None:
            at = opening
        if waiting:
            return "waiting", at
        return ("delayed" if at > now else "queued"), at

    async def _run_targets(self, principal: Principal, job: Job, device_ids: list[str]) -> list[str]:
        """Where a trigger's runs go: the devices named by the trigger, else the job's targets; with
        any_available, the devices the job names and the pool of its group / query (one run there,
        taken by the first device of the pool with room: services/runs/pools.py)."""
        if device_ids or not pools.is_pooled(job.targets):
            return await self._targets(principal, DeviceTargets(device_ids=device_ids) if device_ids else job.targets)
        named = job.targets
        fixed = await self._targets(principal, DeviceTargets(device_ids=named.device_ids,
                                                             device_numbers=named.device_numbers)) \
            if named.device_ids or named.device_numbers else []
        # The pool must have a device (online or not): its targets are checked now, not left to wait forever.
        pool = await self.peers.resolve(principal, pools.pool_targets(job.targets), pool_members=True,
                                        max_pool_members=1)
        if not pool.devices:
            raise InvalidArgument("the job has no target devices"
                                  + (" besides the named ones (they have runs of their own)" if fixed else ""))
        return [*fixed, pools.pool_key(principal.tenant_id, job.targets)]

    async def _targets(self, principal: Principal, targets: DeviceTargets) -> list[str]:
        resolved = await self.peers.resolve(principal, targets)
        if resolved.missing_device_ids:
            raise NotFound(f"device {resolved.missing_device_ids[0]} not found")
        if not resolved.devices:
            raise InvalidArgument("the job has no target devices")
        return [device.id for device in resolved.devices]

    # -- reading ------------------------------------------------------------------------------

    async def _row(self, principal: Principal, run_id: str) -> RunRow:
        row = await self.store.get(principal.tenant_id, run_id) if run_id else None
        if row is None or not reaches_project(principal, row.project_id):
            raise NotFound(f"run {run_id} not found")
        return row

    async def _rows(self, principal: Principal, run_ids: list[str]) -> list[RunRow]:
        """Those of these runs the principal reaches (its tenant's; its project's, for a bound credential)."""
        return [r for r in await self.store.get_many(principal.tenant_id, run_ids)
                if reaches_project(principal, r.project_id)]

    async def get(self, principal: Principal, run_id: str) -> runs_pb2.Run:
        require_scope(principal, READ)
        return run_message(await self._row(principal, run_id))

    async def _find(self, principal: Principal, run_id: str, job_id: str = "", name: str = "") -> RunRow:
        """The run by its id, or (with name) by its job and name."""
        if not name:
            return await self._row(principal, run_id)
        if not job_id:
            raise InvalidArgument("a run name needs its job_id")
        row = await self.store.get_by_name(principal.tenant_id, job_id, name)
        if row is None or not reaches_project(principal, row.project_id):
            raise NotFound(f"job {job_id} has no run named {name!r}")
        return row

    async def get_by_name(self, principal: Principal, job_id: str, name: str) -> runs_pb2.Run:
        require_scope(principal, READ)
        return run_message(await self._find(principal, "", job_id, name))

    async def get_by_number(self, principal: Principal, number: int) -> runs_pb2.Run:
        require_scope(principal, READ)
        row = await self.store.get_by_number(principal.tenant_id, number)
        if row is None or not reaches_project(principal, row.project_id):
            raise NotFound(f"run number {number} not found")
        return run_message(row)

    async def list(self, principal: Principal, request: runs_pb2.ListRunsRequest,
                   status: str = "") -> runs_pb2.ListRunsResponse:
        # Whoever may trigger may read back the runs of an invocation (its id comes from the trigger).
        if not (request.invocation_id and TRIGGER in principal.scopes):
            require_scope(principal, READ)
        if request.latest_for_job_ids:
            job_ids = list(dict.fromkeys(request.latest_for_job_ids))
            if len(job_ids) > MAX_LIST:
                raise InvalidArgument(f"at most {MAX_LIST} latest_for_job_ids")
            latest = await self.store.latest_runs(principal.tenant_id, job_ids)
            rows = sorted((r for r in latest.values() if reaches_project(principal, r.project_id)),
                          key=lambda r: (as_utc(r.created_at), r.id), reverse=True)
            return runs_pb2.ListRunsResponse(runs=[run_message(r) for r in rows])
        limit = request.limit or 50
        if not 1 <= limit <= MAX_LIST:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST}")
        before = _cursor(request.cursor)
        if bool(request.metadata_key) != bool(request.metadata_value) and not request.metadata_key:
            raise InvalidArgument("metadata_value needs metadata_key")
        contains = None
        if request.payload_contains:
            try:
                contains = json.loads(request.payload_contains)
            except ValueError:
                contains = None
            if not isinstance(contains, dict):
                raise InvalidArgument("payload_contains must be a JSON object")
        project = listed_project(principal, request.project_id)
        if project is None:
            return runs_pb2.ListRunsResponse()
        if request.offset < 0:
            raise InvalidArgument("offset must not be negative")
        if request.offset and before is not None:
            raise InvalidArgument("page with cursor or with offset, not both")
        order_by = SORT_KEYS.get(request.order_by)
        if order_by is None:
            raise InvalidArgument("unknown order_by")
        default_order = order_by == "created_at" and not request.ascending
        if before is not None and not default_order:
            raise InvalidArgument("a cursor pages runs newest first only; use offset with another order")
        if runs_pb2.RUN_STATUS_UNSPECIFIED in request.statuses:
            raise InvalidArgument("statuses must not contain RUN_STATUS_UNSPECIFIED")
        filters = dict(
            project_id=project, status=status or (status_word(request.status) if request.status else ""),
            job_id=request.job_id, invocation_id=request.invocation_id, triggered_by=request.triggered_by,
            batch_id=request.batch_id,
            metadata=(request.metadata_key, request.metadata_value) if request.metadata_key else None,
            payload_contains=contains, name_prefix=request.name_prefix,
            statuses=[status_word(s) for s in request.statuses], job_versions=list(request.job_versions),
            subject_names=list(request.triggered_by_subject_names))
        rows = await self.store.list(principal.tenant_id, **filters, before=before, limit=limit,
                                     offset=request.offset, order_by=order_by, ascending=request.ascending)
        paged_by_cursor = default_order and not request.offset
        next_cursor = f"{_rfc3339(rows[-1].created_at)}" if paged_by_cursor and len(rows) == limit else ""
        reply = runs_pb2.ListRunsResponse(runs=[run_message(r) for r in rows], next_cursor=next_cursor)
        if request.include_total_count:
            reply.total_count = await self.store.count(principal.tenant_id, **filters)
        return reply

    async def list_dead_letter(self, principal: Principal, request: runs_pb2.ListRunsRequest) -> runs_pb2.ListRunsResponse:
        return await self.list(principal, request, status="dead_letter")

    async def children(self, principal: Principal, run_id: str) -> runs_pb2.ListRunsResponse:
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        rows = await self.store.list(principal.tenant_id, parent_run_id=row.id, limit=MAX_LIST)
        return runs_pb2.ListRunsResponse(runs=[run_message(r) for r in reversed(rows)
                                               if reaches_project(principal, r.project_id)])

    async def lineage(self, principal: Principal, run_id: str) -> runs_pb2.ListRunsResponse:
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        rows = [r for r in await self.store.lineage(principal.tenant_id, row.root_run_id or row.id)
                if reaches_project(principal, r.project_id)]
        return runs_pb2.ListRunsResponse(runs=[run_message(r) for r in rows or [row]])

    async def events(self, principal: Principal, request: runs_pb2.ListRunEventsRequest) -> runs_pb2.ListRunEventsResponse:
        require_scope(principal, READ)
        row = await self._row(principal, request.run_id)
        events = await self.store.events(principal.tenant_id, row.id, request.level, request.type)
        return runs_pb2.ListRunEventsResponse(events=[event_message(e) for e in events])

    async def outputs(self, principal: Principal, run_id: str) -> runs_pb2.ListRunOutputsResponse:
        """An endpoint run's result; a device run's stdout (output_key "stdout", value {"text": ...})."""
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        outputs = []
        if row.result is not None:
            outputs.append(output_message(row, "result", row.result))
        if row.device_id:
            chunks = await self.store.chunks(row.id, attempt=row.attempt)
            stdout = b"".join(c.data for c in chunks if c.stream == runs_pb2.OUTPUT_STREAM_STDOUT)
            if chunks:
                outputs.append(output_message(row, "stdout", {"text": stdout.decode("utf-8", errors="replace")},
                                              at=chunks[-1].created_at))
        return runs_pb2.ListRunOutputsResponse(outputs=outputs)

    async def dependency_status(self, principal: Principal, run_id: str) -> runs_pb2.RunDependencyStatus:
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        deps = row.dependencies or []
        latest = await self.store.latest_runs(principal.tenant_id, [d["depends_on_job_id"] for d in deps])
        satisfied = all(domain.dependency_state(d["condition"], latest[d["depends_on_job_id"]].status
                                                if d["depends_on_job_id"] in latest else None) == "met" for d in deps)
        if row.status != "waiting" and row.status not in ("canceled",) and deps:
            satisfied = satisfied or row.status not in ("waiting",)
        reply = runs_pb2.RunDependencyStatus(run_id=row.id, job_id=row.job_id, status=status_enum(row.status),
                                             dependencies_satisfied=satisfied)
        for d in deps:
            dep = reply.dependencies.add(id=d.get("id", ""), job_id=row.job_id, depends_on_job_id=d["depends_on_job_id"],
                                         condition=d["condition"])
            if d.get("created_at"):
                dep.created_at.FromJsonString(d["created_at"])
        return reply

    async def health(self, principal: Principal, request: runs_pb2.GetJobHealthRequest) -> runs_pb2.JobHealthStats:
        require_scope(principal, READ)
        window = request.window or "7d"
        if window not in domain.HEALTH_WINDOWS:
            raise InvalidArgument("window must be one of 1h, 1d, 7d, 30d")
        await self.peers.job(principal, request.job_id)  # 404 for a job that is not the caller's
        since = self.clock.now() - timedelta(seconds=domain.HEALTH_WINDOWS[window])
        counts, avg_ms, p95_ms = await self.store.health(principal.tenant_id, request.job_id, since)
        total = sum(counts.values())
        avg = avg_ms / 1000 if avg_ms is not None else None
        p95 = p95_ms / 1000 if p95_ms is not None else None
        success_rate, score = domain.health_score(total, counts.get("completed", 0), avg, p95)
        return runs_pb2.JobHealthStats(
            total_runs=total, completed_runs=counts.get("completed", 0), failed_runs=counts.get("failed", 0),
            timed_out_runs=counts.get("timed_out", 0), crashed_runs=counts.get("crashed", 0),
            canceled_runs=counts.get("canceled", 0), expired_runs=counts.get("expired", 0),
            success_rate=success_rate, avg_duration_secs=avg or 0.0, p95_duration_secs=p95 or 0.0,
            health_score=score)

    async def count_active(self, principal: Principal, job_id: str) -> int:
        return await self.store.count_active(principal.tenant_id, job_id)

    async def logs(self, principal: Principal, run_id: str, after: int) -> runs_pb2.ListRunLogsResponse:
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        chunks = await self.store.chunks(row.id, after=after)
        latest = b"".join(c.data for c in chunks if c.attempt == row.attempt)
        return runs_pb2.ListRunLogsResponse(
            chunks=[chunk_message(c) for c in chunks], text=latest.decode("utf-8", errors="replace")
        )

    async def watch(self, principal: Principal, run_id: str) -> AsyncIterator[runs_pb2.WatchRunResponse]:
        """The run whenever it changes and each new output chunk, until the run has ended."""
        require_scope(principal, READ)
        row = await self._row(principal, run_id)
        last = b""
        seen = (0, 0)
        while True:
            message = run_message(row)
            chunks = await self.store.chunks_since(row.id, seen)
            for chunk in chunks:
                seen = (chunk.attempt, chunk.sequence)
                yield runs_pb2.WatchRunResponse(output=chunk_message(chunk))
            serialized = message.SerializeToString(deterministic=True)
            if serialized != last:
                last = serialized
                yield runs_pb2.WatchRunResponse(run=message)
            if row.status in TERMINAL:
                return
            await asyncio.sleep(WATCH_POLL_SECS)
            row = await self._row(principal, run_id)

    # -- changing runs ------------------------------------------------------------------------

    async def cancel(self, principal: Principal, run_id: str, job_id: str = "", name: str = "",
                     only_if_not_started: bool = False) -> runs_pb2.Run:
        """Cancels an active run (with `only_if_not_started`, only one that has not started)."""
        require_scope(principal, WRITE)
        row = await self._find(principal, run_id, job_id, name)
        if row.status in TERMINAL:
            raise Conflict(f"run {row.id} is already {row.status}")
        cancelable = UNACCEPTED if only_if_not_started else ACTIVE
        if row.status not in cancelable:
            raise Conflict(f"run {row.id} is {row.status}; only a run that has not started can be canceled")
        now = self.clock.now()
        if not await self.store.transition(row.id, row.attempt, cancelable, status="canceled", finished_at=now,
                                           error="canceled", duration_ms=_duration(row, now)):
            raise Conflict(f"run {row.id} finished or started before it could be canceled")
        if row.status in ON_DEVICE:
            self._stop_where_it_runs(row)
        await self._cancel_children([row.id], now)
        return run_message(await self._row(principal, row.id))

    async def purge(self, principal: Principal, run_id: str, job_id: str = "", name: str = "") -> None:
        """Deletes a finished run for good (output, events and webhook deliveries too); an active one
        is refused: it is canceled first."""
        require_scope(principal, WRITE)
        row = await self._find(principal, run_id, job_id, name)
        if row.status not in TERMINAL:
            raise Conflict(f"run {row.id} is still {row.status}; cancel it before deleting it")
        if not await self.store.purge(principal.tenant_id, row.id):
            raise NotFound(f"run {row.id} not found")

    async def _cancel_children(self, parent_ids: list[str], now: datetime) -> None:
        """Cancels the active descendants of these runs, one level (one statement) at a time."""
        seen: set[str] = set(parent_ids)
        while parent_ids:
            children = [c for c in await self.store.active_children(parent_ids) if c.id not in seen]
            if not children:
                return
            changed = await self.store.set_many([c.id for c in children], ACTIVE, status="canceled",
                                                finished_at=now, error="parent run canceled")
            done = {c.id for c in changed}
            for child in children:
                if child.id in done and child.status in ON_DEVICE:
                    self._stop_where_it_runs(child)
            seen |= done
            parent_ids = list(done)

    async def bulk_cancel(self, principal: Principal, run_ids: list[str]) -> runs_pb2.BulkCancelRunsResponse:
        require_scope(principal, WRITE)
        if len(run_ids) > MAX_BULK:
            raise InvalidArgument(f"at most {MAX_BULK} runs per call")
        rows = {r.id: r for r in await self._rows(principal, list(dict.fromkeys(run_ids)))}
        now = self.clock.now()
        changed = await self.store.set_many([r.id for r in rows.values() if r.status in ACTIVE], ACTIVE,
                                            status="canceled", finished_at=now, error="canceled")
        canceled = {c.id for c in changed}
        for run_id in canceled:
            if rows[run_id].status in ON_DEVICE:
                self._stop_where_it_runs(rows[run_id])
        if canceled:
            await self._cancel_children(sorted(canceled), now)
        results = []
        for run_id in run_ids:
            if run_id in canceled:
                results.append(runs_pb2.BulkCancelResult(id=run_id, status="canceled"))
            elif run_id in rows:
                results.append(runs_pb2.BulkCancelResult(id=run_id, status=rows[run_id].status,
                                                         error=f"run is already {rows[run_id].status}"))
            else:
                results.append(runs_pb2.BulkCancelResult(id=run_id, status="not_found", error="run not found"))
        return runs_pb2.BulkCancelRunsResponse(results=results, total=len(results), canceled=len(canceled),
                                               failed=len(results) - len(canceled))

    async def bulk_cancel_all(self, principal: Principal,
                              request: runs_pb2.BulkCancelAllRunsRequest) -> runs_pb2.BulkCancelRunsResponse:
        require_scope(principal, WRITE)
        if not request.project_id:
            raise InvalidArgument("project_id is required")
        f = request.filter
        status = status_word(f.status) if f.status else ""
        if status and status not in ACTIVE:
            raise InvalidArgument(f"only active runs can be canceled, not {status}")
        rows = await self.store.list(principal.tenant_id, project_id=request.project_id, job_id=f.job_id,
                                     batch_id=f.batch_id, triggered_by=f.triggered_by, status=status,
                                     limit=MAX_CANCEL_ALL, active_only=True)
        return await self.bulk_cancel(principal, [r.id for r in rows])

    async def replay(self, principal: Principal, run_id: str, dead_letter_only: bool = False) -> runs_pb2.Run:
        require_scope(principal, TRIGGER)
        row = await self._row(principal, run_id)
        if dead_letter_only and row.status != "dead_letter":
            raise Conflict(f"run {run_id} is {row.status}, not dead_letter")
        if row.status not in TERMINAL:
            raise Conflict(f"run {run_id} is still {row.status}")
        replayed = self._replay_row(row, principal=principal)
        await self.store.insert_runs([replayed])
        self._wake({replayed.target_key})
        return run_message(replayed)

    async def bulk_replay(self, principal: Principal, run_ids: list[str],
                          dead_letter_only: bool = False) -> list[runs_pb2.Run]:
        require_scope(principal, TRIGGER)
        if not run_ids and not dead_letter_only:
            raise InvalidArgument("run_ids is required")
        if len(run_ids) > MAX_BULK:
            raise InvalidArgument(f"at most {MAX_BULK} runs per call")
        rows = await self._rows(principal, list(dict.fromkeys(run_ids)))
        eligible = [r for r in rows if (r.status == "dead_letter" if dead_letter_only else r.status in TERMINAL)]
        order = {run_id: i for i, run_id in enumerate(run_ids)}
        replayed = [self._replay_row(r, i, principal)
                    for i, r in enumerate(sorted(eligible, key=lambda r: order[r.id]))]
        await self.store.insert_runs(replayed)
        self._wake({r.target_key for r in replayed})
        return [run_message(r) for r in replayed]

    async def bulk_replay_dead_letter(self, principal: Principal, request: runs_pb2.BulkReplayDeadLetterRunsRequest
                                      ) -> runs_pb2.BulkReplayDeadLetterRunsResponse:
        require_scope(principal, TRIGGER)
        if request.run_ids:
            run_ids = list(request.run_ids)
        elif request.project_id:
            limit = request.limit or 100
            if not 1 <= limit <= 500:
                raise InvalidArgument("limit must be between 1 and 500")
            rows = await self.store.list(principal.tenant_id, project_id=request.project_id, status="dead_letter",
                                         limit=limit)
            run_ids = [r.id for r in rows]
        else:
            raise InvalidArgument("give run_ids or project_id")
        replayed = await self.bulk_replay(principal, run_ids, dead_letter_only=True)
        if not replayed:
            raise Conflict("no eligible dead-letter runs to replay")
        return runs_pb2.BulkReplayDeadLetterRunsResponse(replayed=replayed, count=len(replayed))

    def _replay_row(self, row: RunRow, index: int = 0, principal: Principal | None = None) -> RunRow:
        now = self.clock.now()
        job = Job.FromString(row.snapshot)
        values = row.model_dump()
        run_id = uuid7_string()
        if principal is not None:
            values.update(_subject(principal))
        values.update(name=domain.run_names(job.slug, "", 1)[0],
            id=run_id, status="queued", attempt=1, result=None, error="", exit_code=None, trace={},
            triggered_by="retry", idempotency_key="", batch_id="", run_token_hash="", invocation_id=uuid7_string(),
            continuation_of=row.id, root_run_id=row.root_run_id or row.id, lineage_depth=row.lineage_depth + 1,
            created_at=now + timedelta(microseconds=index), scheduled_at=now, dequeued_at=None, started_at=None,
            finished_at=None, heartbeat_at=None, next_retry_at=None, lease_owner="", lease_expires_at=None,
            rate_until=None, key_rate_until=None, duration_ms=None, dependencies=[],
            **({"target_key": row.pool_key, "device_id": ""} if row.pool_key else {}),
            expires_at=now + timedelta(seconds=job.run_ttl_secs) if job.run_ttl_secs > 0 else None,
        )
        return RunRow(**values)

    async def reset_idempotency_key(self, principal: Principal, run_id: str) -> runs_pb2.ResetIdempotencyKeyResponse:
        require_scope(principal, WRITE)
        row = await self._row(principal, run_id)
        await self.store.reset_idempotency_key(principal.tenant_id, row.id)
        return runs_pb2.ResetIdempotencyKeyResponse(status="reset", run_id=row.id)

    async def reschedule(self, principal: Principal, request: runs_pb2.RescheduleRunRequest) -> runs_pb2.Run:
        require_scope(principal, WRITE)
        if not request.HasField("scheduled_at") and not request.HasField("priority"):
            raise InvalidArgument("scheduled_at is required (or priority)")
        row = await self._row(principal, request.run_id)
        if row.status not in ("delayed", "queued"):
            raise Conflict(f"run {row.id} is {row.status}; only delayed or queued runs can be rescheduled")
        now = self.clock.now()
        values: dict = {}
        if request.HasField("scheduled_at"):
            at = request.scheduled_at.ToDatetime(tzinfo=UTC)
            if at <= now and (opening := self._window_opening(row, now)) is not None:
                at = opening  # due now, but the job's execution window is closed
            values.update(scheduled_at=at, status="delayed" if at > now else "queued")
        if request.HasField("priority"):
            values["priority"] = request.priority
        if request.HasField("payload"):
            payload = MessageToDict(request.payload)
            job = Job.FromString(row.snapshot)
            domain.validate_payload(_schema(job), payload)
            values.update(payload=payload, payload_hash=canonical_hash(payload))
            if row.target_key:  # a device run: the command is rendered from the new inputs (refused if one is missing)
                values["command"] = domain.render_command(job.command, domain.inputs_for(job, payload))
        if not await self.store.transition(row.id, row.attempt, ("delayed", "queued"), **values):
            raise Conflict(f"run {row.id} started before it could be rescheduled")
        if values.get("status", row.status) == "queued":
            self._wake({row.target_key})
        return run_message(await self._row(principal, row.id))

    # -- an attempt's life ---------------------------------------------------------------

    async def accept(self, run_id: str, attempt: int, timeout_secs: int = 0, device_key: str | None = None) -> bool:
        """The executor started the attempt (see `accept_many`)."""
        return _one((await self.accept_many([(run_id, attempt, timeout_secs, device_key)]))[0])

    async def accept_many(self, accepts: Sequence[tuple[str, int, int, str | None]]) -> list[bool | BaseException]:
        """Executors started these attempts, (run_id, attempt, timeout_secs, device_key) each: dequeued ->
        executing, in one write with whatever else is accepted meanwhile. With a timeout, the run's lease
        becomes its execution deadline: timeout_secs plus EXECUTION_SLACK_SECS, after which tick() ends it
        timed_out even if the executor never reported (an agent that failed to stop it, a call that trickles
        forever). `device_key`: the device reporting, which must be the run's (a pooled run handed back and
        taken by another device is no longer the first one's); None for any. Answers, per attempt, whether
        it was accepted, or the error it alone hit."""
        now = self.clock.now()
        changes = await self.store.transition_many([Transition(run_id, attempt, ("dequeued",), dict(
            status="executing", started_at=now, heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=timeout_secs + EXECUTION_SLACK_SECS) if timeout_secs > 0
            else None), device_key) for run_id, attempt, timeout_secs, device_key in accepts])
        return [change if isinstance(change, BaseException) else change is not None for change in changes]

    async def end_attempt(self, run_id: str, attempt: int, outcome: domain.Outcome,
                          result: dict | None = None, timings: dict[str, int] | None = None,
                          device_key: str | None = None) -> bool:
        """Records how an attempt ended: final status, or a retry per the job's policy (see `end_attempts`).
        `device_key`: the device reporting, which must be the run's (see accept)."""
        return _one((await self.end_attempts([Ending(run_id, attempt, outcome, result, timings, device_key)]))[0])

    async def end_attempts(self, endings: Sequence[Ending]) -> list[bool | BaseException]:
        """Records how these attempts ended, in one write (one read of their runs, one UPDATE per shape of
        change): for each, its final status, or a retry per its job's policy (domain.after_failure).
        Answers, per ending, whether it changed its run (False: the run was no longer at that attempt on a
        device or queued, or no longer the reporting device's), or the error it alone hit; one ending's
        failure fails no other."""
        if not endings:
            return []
        now = self.clock.now()
        changes = await self.store.end_attempts(endings, lambda row, ending: _ending_values(row, ending, now))
        answers: list[bool | BaseException] = []
        limited = False
        for ending, change in zip(endings, changes):
            if isinstance(change, BaseException) or change is None:
                answers.append(change if change is not None else False)
                continue
            log.info("run %s attempt %d ended %s -> %s", ending.run_id, ending.attempt, ending.outcome.status,
                     change.status)
            limited = limited or change.limited
            answers.append(True)
        if limited:  # a concurrency slot is free: runs of this job elsewhere may start
            self._wake(None)
        return answers

    async def requeue(self, run_id: str, attempt: int, device_key: str | None = None, wake: bool = True) -> bool:
        """Puts a run that was handed out but never accepted back in the queue (a pooled run in its pool),
        same attempt, and wakes its dispatch (`wake`). `device_key`: the device handing it back, which must
        be the run's (see accept)."""
        changed = await self.store.transition_rows(run_id, attempt, ("dequeued",), device_key, status="queued",
                                                   lease_owner="", lease_expires_at=None, dequeued_at=None)
        if wake:
            self._wake({c.target_key for c in changed})
        return bool(changed)

    async def tick(self, heartbeats: dict[str, datetime] | None = None) -> None:
        """Advances every timer that is due: heartbeats, delayed runs, leases, silent runs."""
        now = self.clock.now()
        if heartbeats:
            await self.store.touch_heartbeats(list(heartbeats), now)
        await self.store.expire(now)
        due = await self.store.due_delayed(now)
        if due:
            await self._follow_versions(due)
            ready = await self._outside_windows_wait(due, now)
            if ready:
                await self.store.promote([row.id for row in ready])
                self._wake({row.target_key for row in ready})
        await self._advance_waiting(now)
        silent: list[tuple[RunRow, Ending]] = []
        for row in await self.store.stale(now, now - self.heartbeat_timeout):
            if row.status == "dequeued":
                await self.requeue(row.id, row.attempt)
                continue
            if row.lease_expires_at is not None and as_utc(row.lease_expires_at) < now:
                outcome = domain.Outcome("timed_out", f"timed out after {row.timeout_secs} s "
                                         "(the executor did not stop it)")
            else:
                outcome = domain.Outcome("crashed", "heartbeat lost")
            silent.append((row, Ending(row.id, row.attempt, outcome)))
        ended = await self.end_attempts([ending for _, ending in silent])
        for (row, _), answer in zip(silent, ended):
            if isinstance(answer, BaseException):
                log.error("run %s: ending its silent attempt %d failed", row.id, row.attempt, exc_info=answer)
            elif answer:
                self._stop_where_it_runs(row, force=True)
        if await self.store.any_limited_queued():  # rate-limit windows move with time
            self._wake(None)

    async def _advance_waiting(self, now: datetime) -> None:
        """Waiting runs whose dependencies are met go on (queued or delayed); those whose dependencies
        can no longer be met are canceled. One query per tenant for the latest runs depended on."""
        waiting = await self.store.waiting()
        by_tenant: dict[str, list[RunRow]] = {}
        for row in waiting:
            by_tenant.setdefault(row.tenant_id, []).append(row)
        go: dict[tuple[str, datetime], list[RunRow]] = {}
        broken: list[RunRow] = []
        met: list[RunRow] = []
        for tenant_id, rows in by_tenant.items():
            job_ids = sorted({d["depends_on_job_id"] for r in rows for d in (r.dependencies or [])})
            latest = await self.store.latest_runs(tenant_id, job_ids)
            for row in rows:
                states = [domain.dependency_state(d["condition"], latest[d["depends_on_job_id"]].status
                                                  if d["depends_on_job_id"] in latest else None)
                          for d in row.dependencies or []]
                if "broken" in states:
                    broken.append(row)
                elif all(state == "met" for state in states):
                    met.append(row)
        await self._follow_versions(met)
        for row in met:
            scheduled = as_utc(row.scheduled_at) if row.scheduled_at else now
            if scheduled <= now and (opening := self._window_opening(row, now)) is not None:
                scheduled = opening
            status = "delayed" if scheduled > now else "queued"
            go.setdefault((status, scheduled if status == "delayed" else now), []).append(row)
        if broken:
            await self.store.set_many([r.id for r in broken], ("waiting",), status="canceled", finished_at=now,
                                      error="a dependency can no longer be met")
        for (status, at), rows in go.items():
            await self.store.set_many([r.id for r in rows], ("waiting",), status=status, scheduled_at=at)
            if status == "queued":
                self._wake({r.target_key for r in rows})

    async def _follow_versions(self, rows: list[RunRow]) -> None:
        """Runs that waited (scheduled, retrying, on dependencies) and are about to be queued follow their
        job's version_policy, as of the version they were triggered with: `latest` takes the job's current
        version, `minor` the current version if it is backwards_compatible, `pin` (default) keeps its own.
        The new version replaces the run's snapshot (command, endpoint, timeout, webhook); its attempts
        and flow-control limits stay as triggered. One fresh job read per job; rows are updated in place."""
        following = [row for row in rows if Job.FromString(row.snapshot).version_policy in ("latest", "minor")]
        if not following:
            return
        current: dict[tuple[str, str], Job | None] = {}
        for row in following:
            key = (row.tenant_id, row.job_id)
            if key not in current:
                reader = Principal(tenant_id=row.tenant_id, project_id=row.project_id, subject_id="runs",
                                   subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, subject_name="runs", scopes=[READ])
                try:
                    current[key] = await self.peers.job(reader, row.job_id, fresh=True)
                except DomainError:  # deleted, or the jobs service is away: keep the version triggered
                    current[key] = None
        updates: list[tuple[RunRow, dict[str, Any]]] = []
        for row in following:
            job = current[(row.tenant_id, row.job_id)]
            if job is None or job.version <= row.job_version or domain.is_device_job(job) != bool(row.target_key):
                continue
            pool = pools.pool_key(row.tenant_id, job.targets) if pools.is_pooled(job.targets) else ""
            if bool(pool) != bool(row.pool_key):  # one run cannot become a fan-out, nor the reverse
                continue
            if Job.FromString(row.snapshot).version_policy == "minor" and not job.backwards_compatible:
                continue
            command = row.command
            if job.command:
                try:
                    command = domain.render_command(job.command, domain.inputs_for(job, row.payload or {}))
                except InvalidArgument:  # the new version needs inputs this run lacks: it keeps its own
                    continue
            updates.append((row, dict(snapshot=job.SerializeToString(), job_version=job.version,
                                      job_version_id=job.version_id, command=command, timeout_secs=job.timeout_secs,
                                      webhook_url=job.webhook_url, **({"target_key": pool, "pool_key": pool}
                                                                      if pool else {}))))
        if updates:
            changed = await self.store.set_definitions([(row.id, values) for row, values in updates])
            for row, values in updates:
                if row.id in changed:
                    for name, value in values.items():
                        setattr(row, name, value)
                    log.info("run %s follows its job to version %d", row.id, row.job_version)

    async def _outside_windows_wait(self, rows: list[RunRow], now: datetime) -> list[RunRow]:
        """Runs about to be queued whose job's execution window is closed now stay delayed until it next
        opens (one statement per opening); answers the others. For delayed runs coming due (scheduled_at,
        retries) and waiting runs whose dependencies are met."""
        ready: list[RunRow] = []
        later: dict[datetime, list[str]] = {}
        for row in rows:
            opening = self._window_opening(row, now)
            if opening is None:
                ready.append(row)
            else:
                later.setdefault(opening, []).append(row.id)
        for opening, run_ids in later.items():
            await self.store.postpone(run_ids, opening)
        return ready

    def _window_opening(self, row: RunRow, now: datetime) -> datetime | None:
        """None when the run's job (as of its version) has no execution window or it is open now; else when
        it next opens."""
        window = self._windows.get(row.job_version_id)
        if window is None:
            job = Job.FromString(row.snapshot)
            window = (job.execution_window_cron, job.timezone)
            if len(self._windows) >= 10_000:
                self._windows.clear()
            self._windows[row.job_version_id] = window
        if not window[0]:
            return None
        try:
            return domain.window_opening(window[0], window[1], now)
        except InvalidArgument as error:  # accepted when the job was saved; never block the queue on it
            log.warning("run %s: %s; ignoring the execution window", row.id, error.message)
            return None

    def _wake(self, target_keys: set[str] | None = None) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake(target_keys)

    def _stop_where_it_runs(self, row: RunRow, force: bool = False) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.stop_run(row, force)


def _trace(row: RunRow, now: datetime) -> dict[str, int]:
    def ms(start: datetime | None, end: datetime | None) -> int:
        return int((end - start).total_seconds() * 1000) if start and end else 0

    queued_since = row.scheduled_at or row.created_at
    return {
        "queue_wait_ms": ms(queued_since, row.dequeued_at),
        "dispatch_ms": ms(row.dequeued_at, row.started_at),
        "total_ms": ms(row.created_at, now),
    }


@dataclass(frozen=True)
class Ending:
    """How one attempt ended, for `RunEngine.end_attempts`."""

    run_id: str
    attempt: int
    outcome: domain.Outcome
    result: dict | None = None
    timings: dict[str, int] | None = None
    device_key: str | None = None  # the device reporting, which must be the run's (see RunEngine.accept)


def _ending_values(row: Any, ending: Ending, now: datetime) -> dict[str, Any] | None:
    """What the end of an attempt changes on its run (None when the run is no longer at that attempt
    on a device or queued): its final status, or a retry per the job's policy. Pure: it runs on the
    database writer."""
    if row.attempt != ending.attempt or row.status not in ON_DEVICE + ("queued",):
        return None
    if ending.device_key is not None and row.target_key != ending.device_key:
        return None
    outcome = ending.outcome
    trace = {**_trace(row, now), **(ending.timings or {})}
    if outcome.status == "completed":
        step = domain.NextStep("completed")
    else:
        step = domain.after_failure(Job.FromString(row.snapshot), outcome, row.attempt, row.max_attempts, now)
    values: dict[str, Any] = dict(error=outcome.error, exit_code=outcome.exit_code, trace=trace, lease_owner="",
                                  lease_expires_at=None, result=ending.result)
    if step.retry_at is not None:
        values.update(status="delayed", attempt=row.attempt + 1, scheduled_at=step.retry_at,
                      next_retry_at=step.retry_at, dequeued_at=None, heartbeat_at=None)
    else:
        values.update(status=step.status, finished_at=now, duration_ms=_duration(row, now))
    return values


def _one(answer: bool | BaseException) -> bool:
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _request_digest(request: runs_pb2.TriggerJobRequest, payload: dict) -> str:
    """What dedup_window_secs compares: a duplicate asks for the same thing, the same payload and, when
    given, version, command and name."""
    if not (request.job_version_id or request.command or request.name):
        return canonical_hash(payload)
    return canonical_hash({"payload": payload, "job_version_id": request.job_version_id, "command": request.command,
                           "name": request.name})


def _schema(job: Job) -> dict:
    return MessageToDict(job.payload_schema) if job.HasField("payload_schema") else {}


def _hit(row: RunRow) -> runs_pb2.Run:
    run = run_message(row)
    run.idempotency_hit = True
    return run


def _subject(principal: Principal) -> dict[str, str]:
    """Who triggers, as the run stores it."""
    return dict(triggered_by_subject_id=principal.subject_id,
                triggered_by_subject_type=subject_word(principal.subject_type),
                triggered_by_subject_name=principal.subject_name)


def _trigger_source(principal: Principal, parent: RunRow | None) -> str:
    """cron for the jobs service's scheduler (service account "cron"), spawn for a child run, else manual."""
    if principal.subject_name == "cron" and principal.subject_type == SUBJECT_TYPE_SERVICE_ACCOUNT:
        return "cron"
    return "spawn" if parent is not None else "manual"


def _duration(row: RunRow, now: datetime) -> int | None:
    if row.started_at is None:
        return None
    return max(0, int((now - as_utc(row.started_at)).total_seconds() * 1000))


def _rfc3339(dt: datetime) -> str:
    return as_utc(dt).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cursor(cursor: str) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument("cursor must be an RFC 3339 timestamp") from None
    return as_utc(at), ""
