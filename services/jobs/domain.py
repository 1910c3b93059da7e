"""Job rules: validation, defaults, and one immutable version per change."""

from __future__ import annotations

import re
import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import timestamp_pb2

from jobline.auth.v1.auth_pb2 import Principal
from jobline.jobs.v1.jobs_pb2 import Job, JobVersion
from services.common.clock import Clock
from services.common.errors import AlreadyExists, InvalidArgument, NotFound

from .store import JobRow, JobStore, JobVersionRow

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
RETRY_STRATEGIES = {"exponential", "linear", "fixed", "custom"}
VERSION_POLICIES = {"pin", "latest"}
# Set by the service, never by a caller.
OUTPUT_ONLY = {"id", "version", "version_id", "created_by", "updated_by", "created_at", "updated_at"}
IMMUTABLE = OUTPUT_ONLY | {"project_id"}
TEXT_LIMITS = {"name": 256, "slug": 128, "description": 4096, "endpoint_url": 2048,
               "fallback_endpoint_url": 2048, "webhook_url": 2048, "command": 65536}
MAX_TAGS, MAX_TAG_LEN = 50, 256


def _ts(clock: Clock) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(clock.now())
    return ts


def validate_cron(expression: str, field: str) -> None:
    if expression and len(expression.split()) != 5:
        raise InvalidArgument(f"{field} must be a 5-field cron expression")


def validate(job: Job) -> None:
    """Raises InvalidArgument for the first thing wrong with a job definition."""
    for field in ("project_id", "name", "slug"):
        if not getattr(job, field).strip():
            raise InvalidArgument(f"{field} is required")
    if not job.endpoint_url and not job.command:
        raise InvalidArgument("endpoint_url is required (or command, for a device job)")
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
        raise InvalidArgument("version_policy must be pin or latest")
    if len(job.tags) > MAX_TAGS or any(len(k) > MAX_TAG_LEN or len(v) > MAX_TAG_LEN for k, v in job.tags.items()):
        raise InvalidArgument(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LEN} characters")


def apply_defaults(job: Job) -> None:
    if not job.HasField("max_attempts"):
        job.max_attempts = 3
    if not job.HasField("timeout_secs"):
        job.timeout_secs = 300
    if not job.HasField("enabled"):
        job.enabled = True
    job.version_policy = job.version_policy or "pin"
    job.retry_strategy = job.retry_strategy or "exponential"
    job.timezone = job.timezone or "UTC"


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


class Jobs:
    def __init__(self, store: JobStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _version_row(self, tenant_id: str, job: Job) -> JobVersionRow:
        return JobVersionRow(
            id=job.version_id, job_id=job.id, tenant_id=tenant_id, version=job.version,
            definition=job.SerializeToString(), created_at=self.clock.now(),
        )

    async def create(self, principal: Principal, job: Job) -> Job:
        for field in OUTPUT_ONLY:
            job.ClearField(field)
        validate(job)
        apply_defaults(job)
        if await self.store.slug_taken(principal.tenant_id, job.project_id, job.slug):
            raise AlreadyExists(f"a job with slug {job.slug!r} already exists in project {job.project_id!r}")
        now = _ts(self.clock)
        job.id, job.version, job.version_id = str(uuid.uuid4()), 1, str(uuid.uuid4())
        job.created_by = job.updated_by = principal.subject_name or principal.subject_id
        job.created_at.CopyFrom(now)
        job.updated_at.CopyFrom(now)
        row = JobRow(
            id=job.id, tenant_id=principal.tenant_id, project_id=job.project_id, slug=job.slug,
            version=1, version_id=job.version_id, enabled=job.enabled,
            definition=job.SerializeToString(), created_at=self.clock.now(), updated_at=self.clock.now(),
        )
        await self.store.insert(row, self._version_row(principal.tenant_id, job))
        return job

    async def _row(self, principal: Principal, job_id: str) -> JobRow:
        row = await self.store.get(principal.tenant_id, job_id)
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row

    async def get(self, principal: Principal, job_id: str) -> Job:
        return Job.FromString((await self._row(principal, job_id)).definition)

    async def list(self, principal: Principal, project_id: str, tag_key: str = "", tag_value: str = "",
                   page_size: int = 0, page_token: str = "") -> tuple[list[Job], str]:
        limit = min(page_size or 1000, 1000)
        rows = await self.store.list(principal.tenant_id, project_id, page_token, limit)
        jobs = [Job.FromString(row.definition) for row in rows]
        if tag_key:
            jobs = [j for j in jobs if tag_key in j.tags and (not tag_value or j.tags[tag_key] == tag_value)]
        next_token = rows[-1].id if len(rows) == limit else ""
        return jobs, next_token

    async def update(self, principal: Principal, job_id: str, patch: Job, paths: list[str]) -> Job:
        row = await self._row(principal, job_id)
        job = Job.FromString(row.definition)
        fields = {f.name for f in Job.DESCRIPTOR.fields}
        for path in paths:
            name = path.split(".")[0]
            if name not in fields:
                raise InvalidArgument(f"unknown field {path!r}")
            if name in IMMUTABLE:
                raise InvalidArgument(f"{name} cannot be changed")
            _copy_field(patch, job, Job.DESCRIPTOR.fields_by_name[name])
        validate(job)
        apply_defaults(job)
        if job.slug != row.slug and await self.store.slug_taken(
            principal.tenant_id, job.project_id, job.slug, except_id=job.id
        ):
            raise AlreadyExists(f"a job with slug {job.slug!r} already exists in project {job.project_id!r}")
        job.version += 1
        job.version_id = str(uuid.uuid4())
        job.updated_by = principal.subject_name or principal.subject_id
        job.updated_at.CopyFrom(_ts(self.clock))
        row.slug, row.version, row.version_id, row.enabled = job.slug, job.version, job.version_id, job.enabled
        row.definition, row.updated_at = job.SerializeToString(), self.clock.now()
        await self.store.save_version(row, self._version_row(principal.tenant_id, job))
        return job

    async def delete(self, principal: Principal, job_id: str) -> None:
        await self.store.delete(await self._row(principal, job_id))

    async def versions(self, principal: Principal, job_id: str) -> list[JobVersion]:
        await self._row(principal, job_id)
        rows = await self.store.versions(principal.tenant_id, job_id)
        return [to_version(Job.FromString(r.definition)) for r in rows]

    async def version(self, principal: Principal, job_id: str, version_id: str) -> JobVersion:
        for version in await self.versions(principal, job_id):
            if version.id == version_id or str(version.version) == version_id:
                return version
        raise NotFound(f"version {version_id} of job {job_id} not found")
