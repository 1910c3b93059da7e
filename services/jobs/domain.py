"""Job rules: validation, defaults, one immutable version per change, batches, clone, dependencies."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import timestamp_pb2

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1.devices_pb2 import DeviceTargets
from jobline.jobs.v1.jobs_pb2 import Job, JobDependency, JobSchedule, JobVersion
from services.common.clock import Clock, as_utc
from services.common.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from services.common.principal import listed_project, reaches_project, require_project
from services.common.secrets import SecretBox, secret_box
from services.common.structs import struct_json

from . import templates
from .peers import Runs
from .scheduler import is_valid_cron, next_tick
from .store import SCHEDULE_NUMBER, DependencyRow, JobRow, JobStore, JobVersionRow, ScheduleRow

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
RETRY_STRATEGIES = {"exponential", "linear", "fixed", "custom"}
VERSION_POLICIES = {"pin", "latest", "minor"}
# Set by the service, never by a caller.
OUTPUT_ONLY = {"id", "version", "version_id", "created_by", "updated_by", "created_at", "updated_at"}
IMMUTABLE = OUTPUT_ONLY | {"project_id"}
TEXT_LIMITS = {"name": 256, "slug": 128, "description": 4096, "endpoint_url": 2048,
               "fallback_endpoint_url": 2048, "webhook_url": 2048, "command": 65536}
MAX_TAGS, MAX_TAG_LEN = 50, 256
CONDITIONS = ("on_success", "on_failure", "on_completion")
MAX_BATCH = 100
HANDLER = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# Missions (surface E): the agent handler they run, their priority scale and their defaults.
MISSION_HANDLER = "mission"
MISSION_PRIORITY_MIN, MISSION_PRIORITY_MAX, MISSION_PRIORITY_DEFAULT = 1, 10, 5
MISSION_MAX_ATTEMPTS, MISSION_TIMEOUT_SECS = 1, 3600
MISSION_TEXT_LIMITS = {"mission_id": 256, "device_group_id": 128, "device_id": 128}
MAX_MISSION_METADATA_BYTES = 64 * 1024
DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # the devices service's id rule
# What a sealed webhook secret is bound to (the runs service seals its snapshots' with its own purpose).
WEBHOOK_SECRET_PURPOSE = "jobs.webhook_secret"


def _ts(clock: Clock) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(clock.now())
    return ts


def validate_cron(expression: str, field: str) -> None:
    if expression and not is_valid_cron(expression):
        raise InvalidArgument(f"{field} must be a valid 5-field cron expression "
                              f"(minute hour day-of-month month day-of-week), got {expression!r}")


def validate(job: Job) -> None:
    """Raises InvalidArgument for the first thing wrong with a job definition."""
    if job.HasField("job_template"):  # its own words first (surface D renders them as Rails' errors)
        templates.validate(job)
    for field in ("project_id", "name", "slug"):
        if not getattr(job, field).strip():
            raise InvalidArgument(f"{field} is required")
    if not job.endpoint_url and not job.command and not job.handler:
        raise InvalidArgument("endpoint_url is required (or command or handler, for a device job)")
    if job.handler:
        if not HANDLER.match(job.handler):
            raise InvalidArgument("handler must be 1-64 lower-case letters, digits, '.', '_' or '-', "
                                  "starting with a letter")
        if job.command or job.endpoint_url:
            raise InvalidArgument("a job with a handler has no command or endpoint_url")
    if job.HasField("mission"):
        validate_mission(job)
    for field, limit in TEXT_LIMITS.items():
        if len(getattr(job, field)) > limit:
            raise InvalidArgument(f"{field} must be at most {limit} characters")
    if not SLUG.match(job.slug):
        raise InvalidArgument("slug must be lower-case letters, digits, '-' or '_'")
    for field in ("endpoint_url", "fallback_endpoint_url", "webhook_url"):
        url = getattr(job, field)
        if url and not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"{field} must be an http(s) URL")
    if job.HasField("max_attempts") and not 1 <= job.max_attempts <= 100:
        raise InvalidArgument("max_attempts must be between 1 and 100")
    if job.HasField("timeout_secs") and not 1 <= job.timeout_secs <= 86400:
        raise InvalidArgument("timeout_secs must be between 1 and 86400")
    for field in ("max_concurrency", "rate_limit_max", "rate_limit_window_secs",
                  "max_concurrency_per_key", "dedup_window_secs", "run_ttl_secs"):
        if getattr(job, field) < 0:
            raise InvalidArgument(f"{field} must not be negative")
    validate_cron(job.cron, "cron")
    validate_cron(job.execution_window_cron, "execution_window_cron")
    if job.timezone:
        try:
            ZoneInfo(job.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f"unknown timezone {job.timezone!r}") from None
    if job.retry_strategy and job.retry_strategy not in RETRY_STRATEGIES:
        raise InvalidArgument("retry_strategy must be one of " + ", ".join(sorted(RETRY_STRATEGIES)))
    if job.version_policy and job.version_policy not in VERSION_POLICIES:
        raise InvalidArgument(f"version_policy must be pin, latest or minor, got {job.version_policy!r}")
    if len(job.tags) > MAX_TAGS:
        raise InvalidArgument(f"tags: at most {MAX_TAGS} tags")
    for key, value in job.tags.items():
        if not key.strip():
            raise InvalidArgument("tags: a tag key must not be empty")
        if len(key) > MAX_TAG_LEN or len(value) > MAX_TAG_LEN:
            raise InvalidArgument(f"tags: keys and values must be at most {MAX_TAG_LEN} characters")


def validate_mission(job: Job) -> None:
    mission = job.mission
    if job.handler != MISSION_HANDLER:
        raise InvalidArgument(f"a mission job runs the {MISSION_HANDLER!r} handler")
    if not mission.device_group_id.strip():
        raise InvalidArgument("the device group is required")
    if "/" in mission.device_group_id:
        raise InvalidArgument("the device group id must not contain '/'")
    for field, limit in MISSION_TEXT_LIMITS.items():
        if len(getattr(mission, field)) > limit:
            raise InvalidArgument(f"{field} must be at most {limit} characters")
    if mission.device_id and not DEVICE_ID.match(mission.device_id):
        raise InvalidArgument("the device id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    if not MISSION_PRIORITY_MIN <= mission.priority <= MISSION_PRIORITY_MAX:
        raise InvalidArgument(f"priority must be between {MISSION_PRIORITY_MIN} and {MISSION_PRIORITY_MAX}")
    if mission.metadata.ByteSize() > MAX_MISSION_METADATA_BYTES:
        raise InvalidArgument(f"metadata must be at most {MAX_MISSION_METADATA_BYTES // 1024} KiB")


def derive_mission(job: Job) -> None:
    """A mission job's handler, targets, default inputs and defaults, from its mission spec: the named
    drone, which must be in the group, or any one available drone of the group (the run waits in the
    group's pool until a drone with room takes it: services/runs/pools.py)."""
    if not job.HasField("mission"):
        return
    mission = job.mission
    if not mission.HasField("priority"):
        mission.priority = MISSION_PRIORITY_DEFAULT
    job.handler = job.handler or MISSION_HANDLER
    if mission.device_id:
        targets = DeviceTargets(device_ids=[mission.device_id], group=mission.device_group_id,
                                device_ids_within_group=True)
    else:
        targets = DeviceTargets(group=mission.device_group_id, any_available=True)
    job.targets.CopyFrom(targets)
    job.default_inputs["missionId"] = mission.mission_id
    job.default_inputs["metadata"] = json.dumps(struct_json(mission.metadata), separators=(",", ":"),
                                                sort_keys=True)
    if not job.slug:
        job.slug = f"mission-{uuid.uuid4().hex[:16]}"
    if not job.HasField("max_attempts"):
        job.max_attempts = MISSION_MAX_ATTEMPTS
    if not job.HasField("timeout_secs"):
        job.timeout_secs = MISSION_TIMEOUT_SECS


def apply_defaults(job: Job) -> None:
    if job.HasField("job_template"):
        templates.apply_defaults(job)
    if not job.HasField("max_attempts"):
        job.max_attempts = 3
    if not job.HasField("timeout_secs"):
        job.timeout_secs = 300
    if not job.HasField("enabled"):
        job.enabled = True
    job.version_policy = job.version_policy or "pin"
    job.retry_strategy = job.retry_strategy or "exponential"
    job.timezone = job.timezone or "UTC"


REDACTED = "********"


def redacted(message: Job | JobVersion) -> Job | JobVersion:
    """A copy safe to show a caller: a set webhook secret reads as a mask, never as itself."""
    if not message.webhook_secret and not (isinstance(message, JobVersion) and message.snapshot.webhook_secret):
        return message
    copy = type(message)()
    copy.CopyFrom(message)
    if copy.webhook_secret:
        copy.webhook_secret = REDACTED
    if isinstance(copy, JobVersion) and copy.snapshot.webhook_secret:
        copy.snapshot.webhook_secret = REDACTED
    return copy


def to_version(job: Job) -> JobVersion:
    version = JobVersion(
        id=job.version_id, job_id=job.id, version=job.version, name=job.name, slug=job.slug,
        description=job.description, cron=job.cron, endpoint_url=job.endpoint_url,
        fallback_endpoint_url=job.fallback_endpoint_url, max_attempts=job.max_attempts,
        timeout_secs=job.timeout_secs, webhook_url=job.webhook_url, webhook_secret=job.webhook_secret,
        run_ttl_secs=job.run_ttl_secs, command=job.command, snapshot=job,
    )
    version.payload_schema.CopyFrom(job.payload_schema)
    version.tags.update(job.tags)
    version.created_at.CopyFrom(job.updated_at)
    return version


def _copy_field(source: Job, target: Job, field) -> None:
    """Replaces one field of target with source's value (an unset optional clears it)."""
    name = field.name
    target.ClearField(name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        getattr(target, name).update(getattr(source, name))
    elif field.is_repeated:
        getattr(target, name).extend(getattr(source, name))
    elif field.message_type is not None or field.has_presence:
        if source.HasField(name):
            if field.message_type is not None:
                getattr(target, name).CopyFrom(getattr(source, name))
            else:
                setattr(target, name, getattr(source, name))
    else:
        setattr(target, name, getattr(source, name))


def schedule_for(tenant_id: str, job: Job, now) -> ScheduleRow | None:
    """The schedule row an enabled job with a cron has (None for every other job)."""
    if not (job.enabled and job.cron):
        return None
    return ScheduleRow(job_id=job.id, tenant_id=tenant_id, project_id=job.project_id, cron=job.cron,
                       timezone=job.timezone, next_fire_at=next_tick(job.cron, job.timezone, now))


def dependency_message(row: DependencyRow) -> JobDependency:
    dependency = JobDependency(id=row.id, job_id=row.job_id, depends_on_job_id=row.depends_on_job_id,
                               condition=row.condition)
    dependency.created_at.FromDatetime(row.created_at)
    return dependency


def reaches(edges: list[tuple[str, str]], start: str, goal: str) -> bool:
    """Whether following depends-on edges from start leads to goal."""
    graph: dict[str, list[str]] = {}
    for job_id, depends_on in edges:
        graph.setdefault(job_id, []).append(depends_on)
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False


def encode_job(job: Job, box: SecretBox) -> bytes:
    """A job as stored: serialized, its webhook secret sealed (services.common.secrets)."""
    if not job.webhook_secret or box.is_sealed(job.webhook_secret):
        return job.SerializeToString()
    stored = Job()
    stored.CopyFrom(job)
    stored.webhook_secret = box.seal(job.webhook_secret, WEBHOOK_SECRET_PURPOSE)
    return stored.SerializeToString()


def decode_job(data: bytes, box: SecretBox) -> Job:
    """A stored job, its webhook secret opened (one stored in clear by an older release reads as it is)."""
    job = Job.FromString(data)
    if job.webhook_secret:
        job.webhook_secret = box.open(job.webhook_secret, WEBHOOK_SECRET_PURPOSE)
    return job


class Jobs:
    def __init__(self, store: JobStore, clock: Clock, runs: Runs, box: SecretBox | None = None) -> None:
        self.store = store
        self.clock = clock
        self.runs = runs
        self.box = box or secret_box()

    def _encode(self, job: Job) -> bytes:
        return encode_job(job, self.box)

    def _decode(self, data: bytes) -> Job:
        return decode_job(data, self.box)

    async def seal_stored(self) -> int:
        """Seals the webhook secrets an older release stored in clear (jobs and their versions); answers how many."""
        def rewrite(data: bytes) -> bytes | None:
            job = Job.FromString(data)
            if not self.box.needs_sealing(job.webhook_secret):
                return None
            job.webhook_secret = self.box.reseal(job.webhook_secret, WEBHOOK_SECRET_PURPOSE)
            return job.SerializeToString()

        return await self.store.rewrite_definitions(rewrite)

    def _version_row(self, tenant_id: str, job: Job) -> JobVersionRow:
        return JobVersionRow(
            id=job.version_id, job_id=job.id, tenant_id=tenant_id, version=job.version,
            definition=self._encode(job), created_at=self.clock.now(),
        )

    def _new(self, principal: Principal, job: Job, number: int = 0) -> tuple[JobRow, JobVersionRow, ScheduleRow | None]:
        """Validates a new job, fills its defaults and identity, and makes its rows (version 1)."""
        for field in OUTPUT_ONLY | {"number"}:
            job.ClearField(field)
        derive_mission(job)
        if job.HasField("job_template") and not job.slug and number:
            job.slug = f"job-template-{number}"
        validate(job)
        require_project(principal, job.project_id)
        apply_defaults(job)
        now = _ts(self.clock)
        job.id, job.version, job.version_id = str(uuid.uuid4()), 1, str(uuid.uuid4())
        job.number = number
        job.created_by = job.updated_by = principal.subject_name or principal.subject_id
        job.created_at.CopyFrom(now)
        job.updated_at.CopyFrom(now)
        row = JobRow(
            id=job.id, tenant_id=principal.tenant_id, project_id=job.project_id, slug=job.slug,
            version=1, version_id=job.version_id, enabled=job.enabled, is_mission=job.HasField("mission"),
            definition=self._encode(job), created_at=self.clock.now(), updated_at=self.clock.now(),
            number=number or None, is_template=job.HasField("job_template"),
        )
        return row, self._version_row(principal.tenant_id, job), schedule_for(principal.tenant_id, job, self.clock.now())

    def _next_version(self, principal: Principal, row: JobRow, job: Job) -> tuple[JobRow, JobVersionRow, ScheduleRow | None]:
        """Makes `job` (the changed definition of row's job) its next immutable version."""
        job.version = row.version + 1
        job.version_id = str(uuid.uuid4())
        job.updated_by = principal.subject_name or principal.subject_id
        job.updated_at.CopyFrom(_ts(self.clock))
        row.slug, row.version, row.version_id, row.enabled = job.slug, job.version, job.version_id, job.enabled
        row.is_mission = job.HasField("mission")
        row.definition, row.updated_at = self._encode(job), self.clock.now()
        return row, self._version_row(principal.tenant_id, job), schedule_for(principal.tenant_id, job, self.clock.now())

    async def _check_slug(self, principal: Principal, job: Job, except_id: str = "") -> None:
        if await self.store.slug_taken(principal.tenant_id, job.project_id, job.slug, except_id=except_id):
            raise AlreadyExists(f"a job with slug {job.slug!r} already exists in project {job.project_id!r}")

    async def _check_template_name(self, principal: Principal, job: Job, except_id: str = "") -> None:
        """Template names are unique in a tenant (as Foreman's are)."""
        if not job.HasField("job_template"):
            return
        for row in await self.store.templates(principal.tenant_id):
            if row.id != except_id and Job.FromString(row.definition).name == job.name:
                raise AlreadyExists("name: has already been taken")

    async def create(self, principal: Principal, job: Job) -> Job:
        rows = self._new(principal, job, await self.store.take_numbers(1))
        await self._check_slug(principal, job)
        await self._check_template_name(principal, job)
        await self.store.insert(*rows)
        return job

    async def batch_create(self, principal: Principal, jobs: list[Job]) -> list[Job]:
        """All or nothing: the first invalid job refuses the whole batch."""
        if not jobs:
            raise InvalidArgument("the batch is empty")
        if len(jobs) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} jobs per batch")
        items, slugs = [], set()
        last = await self.store.take_numbers(len(jobs))
        for i, job in enumerate(jobs):
            try:
                items.append(self._new(principal, job, last - len(jobs) + 1 + i))
            except InvalidArgument as error:
                raise InvalidArgument(f"jobs[{i}]: {error.message}") from None
            if (job.project_id, job.slug) in slugs:
                raise AlreadyExists(f"jobs[{i}]: slug {job.slug!r} appears twice in the batch")
            slugs.add((job.project_id, job.slug))
            await self._check_slug(principal, job)
            await self._check_template_name(principal, job)
        await self.store.insert_many(items)
        return jobs

    async def _row(self, principal: Principal, job_id: str) -> JobRow:
        row = await self.store.get(principal.tenant_id, job_id)
        if row is None or not reaches_project(principal, row.project_id):
            raise NotFound(f"job {job_id} not found")
        return row

    async def get(self, principal: Principal, job_id: str, number: int = 0) -> Job:
        if number:
            row = await self.store.get_by_number(principal.tenant_id, number)
            if row is None or not reaches_project(principal, row.project_id):
                raise NotFound(f"job number {number} not found")
            return self._decode(row.definition)
        return self._decode((await self._row(principal, job_id)).definition)

    async def list_templates(self, principal: Principal, feature: str = "", search: str = "") -> list[Job]:
        """The tenant's job templates by number (those serving `feature` and matching `search`, when given)."""
        jobs = [self._decode(row.definition) for row in await self.store.templates(principal.tenant_id)
                if reaches_project(principal, row.project_id)]
        if feature:
            jobs = [job for job in jobs if feature in job.job_template.features]
        return templates.search(jobs, search)

    async def list(self, principal: Principal, project_id: str, tag_key: str = "", tag_value: str = "",
                   page_size: int = 0, page_token: str = "", name: str = "",
                   missions_only: bool = False) -> tuple[list[Job], str]:
        limit = min(page_size or 1000, 1000)
        project = listed_project(principal, project_id)
        if project is None:
            return [], ""
        rows = await self.store.list(principal.tenant_id, project, page_token, limit, missions_only=missions_only)
        jobs = [self._decode(row.definition) for row in rows]
        if tag_key:
            jobs = [j for j in jobs if tag_key in j.tags and (not tag_value or j.tags[tag_key] == tag_value)]
        elif tag_value:
            raise InvalidArgument("tag_value needs tag_key")
        if name:
            jobs = [j for j in jobs if j.name == name]
        next_token = rows[-1].id if len(rows) == limit else ""
        return jobs, next_token

    async def update(self, principal: Principal, job_id: str, patch: Job, paths: list[str]) -> Job:
        row = await self._row(principal, job_id)
        job = self._decode(row.definition)
        fields = {f.name for f in Job.DESCRIPTOR.fields}
        if patch.webhook_secret == REDACTED:  # a job read back and sent again keeps its secret
            paths = [p for p in paths if p != "webhook_secret"]
        was_template = job.HasField("job_template")
        before = Job()
        before.CopyFrom(job)
        for path in paths:
            name, _, sub = path.partition(".")
            if name not in fields:
                raise InvalidArgument(f"unknown field {path!r}")
            if name in IMMUTABLE | {"number"}:
                raise InvalidArgument(f"{name} cannot be changed")
            field = Job.DESCRIPTOR.fields_by_name[name]
            if sub and field.message_type is not None and not field.message_type.GetOptions().map_entry:
                target_type = field.message_type
                if sub not in target_type.fields_by_name:
                    raise InvalidArgument(f"unknown field {path!r}")
                _copy_field(getattr(patch, name), getattr(job, name), target_type.fields_by_name[sub])
            else:
                _copy_field(patch, job, field)
        derive_mission(job)
        if was_template != job.HasField("job_template"):
            raise InvalidArgument("a job cannot become or stop being a job template")
        if was_template:
            templates.check_unlocked(before, job)
        validate(job)
        apply_defaults(job)
        if job.slug != row.slug:
            await self._check_slug(principal, job, except_id=job.id)
        if job.name != before.name:
            await self._check_template_name(principal, job, except_id=job.id)
        await self.store.save_version(*self._next_version(principal, row, job))
        return job

    async def set_enabled(self, principal: Principal, job_ids: list[str], enabled: bool) -> list[str]:
        """Enables or disables every listed job, all or nothing; returns the ids that changed
        (each gets a new version; a job already in that state is left as it is)."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            raise InvalidArgument("job_ids is required")
        if len(wanted) > 1000:
            raise InvalidArgument("at most 1000 job_ids")
        rows = {row.id: row for row in await self.store.get_many(principal.tenant_id, wanted)
                if reaches_project(principal, row.project_id)}
        missing = [job_id for job_id in wanted if job_id not in rows]
        if missing:
            raise NotFound(f"job {missing[0]} not found")
        items = []
        for job_id in wanted:
            row = rows[job_id]
            job = self._decode(row.definition)
            if job.enabled != enabled:
                job.enabled = enabled
                items.append(self._next_version(principal, row, job))
        if items:
            await self.store.save_versions(items)
        return [row.id for row, _, _ in items]

    async def clone(self, principal: Principal, job_id: str, name: str = "", slug: str = "") -> Job:
        source = await self.get(principal, job_id)
        job = Job()
        job.CopyFrom(source)
        job.name = name or f"{source.name} (copy)"[: TEXT_LIMITS["name"]]
        if slug:
            job.slug = slug
        else:
            base = f"{source.slug[: TEXT_LIMITS['slug'] - 8]}-copy"
            taken = await self.store.slugs_like(principal.tenant_id, source.project_id, base)
            job.slug = next(candidate for candidate in (base, *(f"{base}-{n}" for n in range(2, len(taken) + 3)))
                            if candidate not in taken)
        if job.HasField("job_template"):
            job.slug = ""  # a template's slug follows its number
            job.job_template.locked = False
            job.job_template.cloned_from_number = source.number
            await self._check_template_name(principal, job)
        rows = self._new(principal, job, await self.store.take_numbers(1))
        await self._check_slug(principal, job)
        await self.store.insert(*rows)
        return job

    async def delete(self, principal: Principal, job_id: str) -> None:
        row = await self._row(principal, job_id)
        job = Job.FromString(row.definition)
        if job.HasField("job_template") and job.job_template.locked:
            raise FailedPrecondition(f"job template {job.name!r} is locked: unlock it before deleting it")
        active = await self.runs.count_active(principal, job_id)
        if active:
            raise Conflict(f"job {job_id} has {active} active run{'s' if active != 1 else ''}; "
                           "cancel them or wait for them to finish")
        await self.store.delete(row)

    async def versions(self, principal: Principal, job_id: str) -> list[JobVersion]:
        await self._row(principal, job_id)
        rows = await self.store.versions(principal.tenant_id, job_id)
        return [to_version(self._decode(r.definition)) for r in rows]

    async def version(self, principal: Principal, job_id: str, version_id: str) -> JobVersion:
        """One version of a job; with no job_id, the version of that id of any job that still exists."""
        if not job_id:
            row = await self.store.version_by_id(principal.tenant_id, version_id) if version_id else None
            if row is None or await self.store.get(principal.tenant_id, row.job_id) is None:
                raise NotFound(f"version {version_id} not found")
            version = to_version(self._decode(row.definition))
            if not reaches_project(principal, version.snapshot.project_id):
                raise NotFound(f"version {version_id} not found")
            return version
        for version in await self.versions(principal, job_id):
            if version.id == version_id or str(version.version) == version_id:
                return version
        raise NotFound(f"version {version_id} of job {job_id} not found")

    # -- dependencies ---------------------------------------------------------------------

    async def dependencies(self, principal: Principal, job_id: str) -> list[JobDependency]:
        await self._row(principal, job_id)
        return [dependency_message(row) for row in await self.store.dependencies(principal.tenant_id, job_id)]

    async def snapshots(self, principal: Principal, job_ids: list[str]) -> tuple[list[Job], list[JobDependency]]:
        """Those of these jobs the principal reaches, with their secrets, and what they depend on: one query
        each (the runs service triggering a cron tick's jobs)."""
        rows = [row for row in await self.store.get_many(principal.tenant_id, list(dict.fromkeys(job_ids)))
                if reaches_project(principal, row.project_id)]
        deps = await self.store.dependencies_of(principal.tenant_id, [row.id for row in rows])
        return [self._decode(row.definition) for row in rows], [dependency_message(row) for row in deps]

    async def add_dependency(self, principal: Principal, job_id: str, depends_on_job_id: str,
                             condition: str = "") -> JobDependency:
        await self._row(principal, job_id)
        if not depends_on_job_id:
            raise InvalidArgument("depends_on_job_id is required")
        condition = condition or "on_success"
        if condition not in CONDITIONS:
            raise InvalidArgument(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
        if depends_on_job_id == job_id:
            raise InvalidArgument("a job cannot depend on itself")
        await self._row(principal, depends_on_job_id)
        edges = await self.store.dependency_edges(principal.tenant_id)
        if (job_id, depends_on_job_id) in edges:
            raise AlreadyExists(f"job {job_id} already depends on job {depends_on_job_id}")
        if reaches(edges, depends_on_job_id, job_id):
            raise InvalidArgument(f"job {depends_on_job_id} already depends on job {job_id}, "
                                  "directly or not: this dependency would make a cycle")
        row = DependencyRow(id=str(uuid.uuid4()), tenant_id=principal.tenant_id, job_id=job_id,
                            depends_on_job_id=depends_on_job_id, condition=condition, created_at=self.clock.now())
        await self.store.insert_dependency(row)
        return dependency_message(row)

    async def remove_dependency(self, principal: Principal, job_id: str, dep_id: str) -> None:
        await self._row(principal, job_id)
        if not await self.store.delete_dependency(principal.tenant_id, job_id, dep_id):
            raise NotFound(f"dependency {dep_id} of job {job_id} not found")

    # -- schedules that carry their own trigger request -------------------------------------

    async def create_schedule(self, principal: Principal, schedule: JobSchedule) -> JobSchedule:
        """A schedule firing `trigger_request` at each tick of its cron (UTC) after not_before (default
        now), up to max_iteration ticks and not after end_time."""
        await self._row(principal, schedule.job_id)
        if not schedule.trigger_request:
            raise InvalidArgument("trigger_request is required")
        validate_cron(schedule.cron, "cron_line")
        if schedule.max_iteration < 0:
            raise InvalidArgument("max_iteration must not be negative")
        now = self.clock.now()
        start = max(now, schedule.not_before.ToDatetime(tzinfo=UTC)) if schedule.HasField("not_before") else now
        first = next_tick(schedule.cron, "UTC", start)
        end_time = schedule.end_time.ToDatetime(tzinfo=UTC) if schedule.HasField("end_time") else None
        if end_time is not None and first > end_time:
            raise InvalidArgument("end_time: is before the first occurrence")
        if schedule.id and not re.fullmatch(r"[A-Za-z0-9-]{8,64}", schedule.id):
            raise InvalidArgument("id: 8-64 letters, digits or '-'")
        if schedule.id and await self.store.schedule(schedule.id) is not None:
            raise AlreadyExists(f"schedule {schedule.id} already exists")
        row = ScheduleRow(job_id=schedule.id or str(uuid.uuid4()), tenant_id=principal.tenant_id, project_id=principal.project_id,
                          cron=schedule.cron, timezone="UTC", next_fire_at=first, trigger_job_id=schedule.job_id,
                          number=await self.store.take_numbers(1, SCHEDULE_NUMBER),
                          trigger_request=schedule.trigger_request, max_iteration=schedule.max_iteration,
                          end_time=end_time, purpose=schedule.purpose[:256], created_at=now)
        await self.store.insert_schedule(row)
        return schedule_message(row)

    async def get_schedule(self, principal: Principal, schedule_id: str) -> JobSchedule:
        row = await self.store.tenant_schedule(principal.tenant_id, schedule_id) if schedule_id else None
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return schedule_message(row)

    async def cancel_schedule(self, principal: Principal, schedule_id: str) -> JobSchedule:
        row = await self.store.cancel_schedule(principal.tenant_id, schedule_id) if schedule_id else None
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return schedule_message(row)


def schedule_message(row: ScheduleRow) -> JobSchedule:
    schedule = JobSchedule(id=row.job_id, number=row.number or 0, job_id=row.trigger_job_id, cron=row.cron,
                           max_iteration=row.max_iteration, iteration=row.iteration, state=row.state,
                           purpose=row.purpose, trigger_request=row.trigger_request or b"")
    for field in ("end_time", "next_fire_at", "last_fired_at", "created_at"):
        value = getattr(row, field)
        if value is not None:
            getattr(schedule, field).FromDatetime(as_utc(value))
    return schedule
