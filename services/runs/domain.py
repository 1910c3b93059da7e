"""Run rules with no I/O: how a command is rendered, how an attempt's end maps to a
status, and when and how a run is retried."""

from __future__ import annotations

import random
import re
import shlex
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobline.jobs.v1.jobs_pb2 import Job
from services.common.command_template import ERB_COMMENT, ERB_INPUT, PLACEHOLDER, erb_name
from services.common.errors import InvalidArgument
from services.common.secrets import SecretBox

MAX_BACKOFF_SECS = 3600
MAX_COMMAND_CHARS = 65536  # a command template's longest: the jobs service's for a job's, a trigger's override too
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
NAME_SUFFIX_LENGTH = 8


def is_device_job(job: Job) -> bool:
    """A device job runs on agents (a command template, or a handler the agent has); else it calls an endpoint."""
    return bool(job.command or job.handler)


# Either way of using an input, in one pass (an inserted value is never rendered again).
_INPUT_USE = re.compile(f"{ERB_INPUT.pattern}|{PLACEHOLDER.pattern}")


def inputs_for(job: Job, payload: dict[str, Any]) -> dict[str, str]:
    """A device run's inputs: a job template's declared inputs (their default, else empty), the job's
    defaults, then the trigger's payload."""
    inputs = {i.name: i.default_value for i in job.job_template.inputs} if job.HasField("job_template") else {}
    inputs.update(job.default_inputs)
    for key, value in payload.items():
        inputs[key] = value if isinstance(value, str) else _json_text(value)
    return inputs


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def render_command(template: str, inputs: dict[str, str]) -> str:
    """The command a device runs: {{name}} becomes the shell-quoted input value, Foreman's
    `<%= input('name') %>` the value as given, `<%# comments %>` nothing (see
    services.common.command_template); a missing input is an error, and so is an input no process
    could be given (a NUL character ends a C string: argv and environment)."""
    if len(template) > MAX_COMMAND_CHARS:
        raise InvalidArgument(f"command must be at most {MAX_COMMAND_CHARS} characters")
    body = ERB_COMMENT.sub("", template) if "<%#" in template else template

    def name_of(match: re.Match[str]) -> str:
        return erb_name(match) if match.group(0).startswith("<%") else match.group(3)

    missing = sorted({name_of(m) for m in _INPUT_USE.finditer(body) if name_of(m) not in inputs})
    if missing:
        raise InvalidArgument("missing inputs: " + ", ".join(missing))
    if "\0" in body:
        raise InvalidArgument("the command contains a NUL character")
    for name, value in inputs.items():
        if "\0" in name or "\0" in value:
            raise InvalidArgument(f"input {name.replace(chr(0), '?')!r} contains a NUL character")

    def fill(match: re.Match[str]) -> str:
        value = inputs[name_of(match)]
        return value if match.group(0).startswith("<%") else shlex.quote(value)

    return _INPUT_USE.sub(fill, body)


def validate_run_name(name: str) -> None:
    """A run name chosen by the caller: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not RUN_NAME.fullmatch(name):
        raise InvalidArgument("a run name must be 1 to 128 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")


def run_names(slug: str, name: str, count: int, rng: random.Random | None = None) -> list[str]:
    """The names of the `count` runs one trigger makes: `name`, `name-2`, `name-3`... when the caller
    chose one, else the job's slug and a short random suffix each."""
    if name:
        validate_run_name(name)
        return [name, *(f"{name}-{n}" for n in range(2, count + 1))]
    # One draw for every suffix (the same characters as one draw per name, at a fraction of the calls).
    drawn = "".join((rng or random).choices(NAME_SUFFIX_ALPHABET, k=NAME_SUFFIX_LENGTH * count))
    return [f"{slug}-{drawn[i:i + NAME_SUFFIX_LENGTH]}" for i in range(0, len(drawn), NAME_SUFFIX_LENGTH)]


# A run's snapshot keeps the job's webhook secret sealed (services.common.secrets), for this purpose.
WEBHOOK_SECRET_PURPOSE = "runs.webhook_secret"
SNAPSHOTS_SEALED = "snapshots_sealed_v1"  # the runs_counters marker of the one-time sealing of older rows


def stored_snapshot(job: Job, box: SecretBox) -> bytes:
    """The job as a run stores it: serialized, its webhook secret sealed."""
    if not job.webhook_secret or box.is_sealed(job.webhook_secret):
        return job.SerializeToString()
    stored = Job()
    stored.CopyFrom(job)
    stored.webhook_secret = box.seal(job.webhook_secret, WEBHOOK_SECRET_PURPOSE)
    return stored.SerializeToString()


def snapshot_webhook_secret(snapshot: bytes, box: SecretBox) -> str:
    """The webhook secret of a stored snapshot, in clear (one stored in clear by an older release as it is)."""
    return box.open(Job.FromString(snapshot).webhook_secret, WEBHOOK_SECRET_PURPOSE)


def resealed_snapshot(snapshot: bytes, box: SecretBox) -> bytes | None:
    """A stored snapshot with its webhook secret sealed anew, or None when it needs nothing."""
    job = Job.FromString(snapshot)
    if not box.needs_sealing(job.webhook_secret):
        return None
    job.webhook_secret = box.reseal(job.webhook_secret, WEBHOOK_SECRET_PURPOSE)
    return job.SerializeToString()


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the agent or the HTTP executor reported it."""

    status: str  # completed | failed | timed_out | crashed | canceled | system_failed
    error: str = ""
    exit_code: int | None = None
    retryable: bool = True


def agent_outcome(exit_code: int, error: str, timed_out: bool, canceled: bool) -> Outcome:
    if canceled:
        return Outcome("canceled", error or "canceled", exit_code, retryable=False)
    if timed_out:
        return Outcome("timed_out", error or "timed out", exit_code)
    if exit_code == 0:
        return Outcome("completed", "", 0)
    return Outcome("failed", error or f"exit code {exit_code}", exit_code)


def backoff_secs(job: Job, attempt: int, rng: random.Random | None = None) -> float:
    """Delay before attempt+1 after attempt `attempt` failed: the job's strategy, capped, ±20 % jitter."""
    strategy = job.retry_strategy or "exponential"
    delays = list(job.retry_delays_secs)
    if strategy == "custom" and delays:
        base = float(delays[min(attempt - 1, len(delays) - 1)])
    elif strategy == "fixed":
        base = float(delays[0]) if delays else 1.0
    elif strategy == "linear":
        base = float(attempt * (delays[0] if delays else 1))
    else:
        base = float(2 ** (attempt - 1))
    base = min(base, MAX_BACKOFF_SECS)
    jitter = (rng or random).uniform(-0.2, 0.2)
    return max(0.0, min(base * (1 + jitter), MAX_BACKOFF_SECS))


@dataclass(frozen=True)
class NextStep:
    """What follows a failed attempt: a retry at `retry_at`, or a final status."""

    status: str
    retry_at: datetime | None = None


def after_failure(job: Job, outcome: Outcome, attempt: int, max_attempts: int, now: datetime,
                  rng: random.Random | None = None) -> NextStep:
    if not outcome.retryable:
        return NextStep(outcome.status)
    if attempt < max_attempts:
        return NextStep("delayed", now + timedelta(seconds=backoff_secs(job, attempt, rng)))
    # A job with retries that exhausted them goes to the dead-letter queue; one without keeps its status.
    return NextStep("dead_letter" if max_attempts > 1 else outcome.status)


# -- triggering -------------------------------------------------------------------------------


def validate_payload(schema: dict[str, Any], payload: dict[str, Any]) -> None:
    """Refuses a payload that fails the job's JSON Schema (a bad schema is the job's error, also 400)."""
    if not schema:
        return
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        errors = sorted(cls(schema).iter_errors(payload), key=lambda e: list(e.absolute_path))
    except jsonschema.SchemaError as error:
        raise InvalidArgument(f"the job's payload_schema is invalid: {error.message}") from None
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "payload"
        raise InvalidArgument(f"payload does not match the job's payload_schema: {where}: {first.message}")


def window_opening(expression: str, timezone: str, now: datetime) -> datetime | None:
    """None when `now` is inside the execution window (the minutes the 5-field cron matches, in the
    job's timezone), else when the window next opens (UTC)."""
    if not expression:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import CroniterBadCronError, croniter

    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown timezone {timezone!r}") from None
    local = now.astimezone(zone)
    try:
        if croniter.match(expression, local.replace(second=0, microsecond=0)):
            return None
        opening = croniter(expression, local).get_next(datetime)
    except (CroniterBadCronError, ValueError, KeyError) as error:
        raise InvalidArgument(f"invalid execution_window_cron {expression!r}: {error}") from None
    return opening.astimezone(now.tzinfo)


# -- dependencies -----------------------------------------------------------------------------

FAILURES = ("failed", "timed_out", "crashed", "system_failed", "dead_letter", "expired")


def dependency_state(condition: str, latest_status: str | None) -> str:
    """'met', 'pending' (no finished run yet) or 'broken' (the latest run ended the wrong way)."""
    from .store import TERMINAL

    if latest_status is None or latest_status not in TERMINAL:
        return "pending"
    condition = condition or "on_success"
    if condition == "on_completion":
        return "met"
    if condition == "on_failure":
        return "met" if latest_status in FAILURES else "broken"
    return "met" if latest_status == "completed" else "broken"


# -- health -----------------------------------------------------------------------------------

HEALTH_WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def health_score(total: int, completed: int, avg_secs: float | None, p95_secs: float | None) -> tuple[float, float]:
    """(success_rate, score): score = 0.7·success_rate + stability, capped at 100; −1 with no runs."""
    if total == 0:
        return 0.0, -1.0
    success_rate = completed / total * 100
    stability = 0.0
    if avg_secs and avg_secs > 0:
        stability = 30.0
        if p95_secs is not None and p95_secs > 2 * avg_secs:
            stability -= min((p95_secs / avg_secs - 2) * 15, 30)
    return success_rate, min(0.7 * success_rate + stability, 100.0)
