"""RunRow <-> jobline.runs.v1 messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import struct_pb2, timestamp_pb2

from jobline.auth.v1 import auth_pb2
from jobline.runs.v1 import runs_pb2

from .store import LogChunkRow, RunEventRow, RunRow


def status_enum(word: str) -> int:
    return runs_pb2.RunStatus.Value(f"RUN_STATUS_{word.upper()}")


def status_word(value: int) -> str:
    return runs_pb2.RunStatus.Name(value).removeprefix("RUN_STATUS_").lower()


SUBJECT_TYPES = {auth_pb2.SUBJECT_TYPE_USER: "user", auth_pb2.SUBJECT_TYPE_SERVICE_ACCOUNT: "service_account",
                 auth_pb2.SUBJECT_TYPE_DEVICE: "device"}
SUBJECT_TYPE_VALUES = {word: value for value, word in SUBJECT_TYPES.items()}


def subject_word(value: int) -> str:
    return SUBJECT_TYPES.get(value, "")


def timestamp(dt: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt)
    return ts


def run_message(row: RunRow) -> runs_pb2.Run:
    run = runs_pb2.Run(
        id=row.id, job_id=row.job_id, project_id=row.project_id, status=status_enum(row.status),
        attempt=row.attempt, metadata=row.metadata_ or {}, error=row.error, triggered_by=row.triggered_by,
        priority=row.priority, idempotency_key=row.idempotency_key, job_version=row.job_version,
        job_version_id=row.job_version_id, created_by=row.created_by, device_id=row.device_id,
        invocation_id=row.invocation_id, execution_trace=runs_pb2.ExecutionTrace(**(row.trace or {})),
        tags=row.tags or {}, batch_id=row.batch_id, concurrency_key=row.concurrency_key,
        parent_run_id=row.parent_run_id, continuation_of=row.continuation_of, lineage_depth=row.lineage_depth,
        number=row.number or 0, name=row.name, command=row.command,
        triggered_by_subject=runs_pb2.RunSubject(
            id=row.triggered_by_subject_id, name=row.triggered_by_subject_name,
            type=SUBJECT_TYPE_VALUES.get(row.triggered_by_subject_type, auth_pb2.SUBJECT_TYPE_UNSPECIFIED)),
    )
    run.payload.update(row.payload or {})
    if row.result is not None:
        run.result.CopyFrom(_struct(row.result))
    if row.exit_code is not None:
        run.exit_code = row.exit_code
    if row.duration_ms is not None:
        run.duration_ms = row.duration_ms
    for field in ("scheduled_at", "started_at", "finished_at", "heartbeat_at", "next_retry_at", "expires_at",
                  "created_at"):
        value = getattr(row, field)
        if value is not None:
            getattr(run, field).CopyFrom(timestamp(value))
    return run


def _struct(value: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def chunk_message(row: LogChunkRow) -> runs_pb2.LogChunk:
    return runs_pb2.LogChunk(
        attempt=row.attempt, sequence=row.sequence, stream=row.stream,
        data=row.data.decode("utf-8", errors="replace"), created_at=timestamp(row.created_at),
    )


def event_message(row: RunEventRow) -> runs_pb2.RunEvent:
    event = runs_pb2.RunEvent(id=row.id, run_id=row.run_id, type=row.type, level=row.level, message=row.message,
                              created_at=timestamp(row.created_at))
    event.data.update(row.data or {})
    return event


def output_message(row: RunRow, key: str, value: dict, at: datetime | None = None) -> runs_pb2.RunOutput:
    output = runs_pb2.RunOutput(id=f"{row.id}/{key}", run_id=row.id, output_key=key, value=_struct(value))
    when = at or row.finished_at or row.created_at
    output.created_at.CopyFrom(timestamp(when))
    return output
