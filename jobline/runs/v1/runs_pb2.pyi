import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobline.api.v1 import annotations_pb2 as _annotations_pb2_1
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_DELAYED: _ClassVar[RunStatus]
    RUN_STATUS_QUEUED: _ClassVar[RunStatus]
    RUN_STATUS_DEQUEUED: _ClassVar[RunStatus]
    RUN_STATUS_EXECUTING: _ClassVar[RunStatus]
    RUN_STATUS_WAITING: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_TIMED_OUT: _ClassVar[RunStatus]
    RUN_STATUS_CRASHED: _ClassVar[RunStatus]
    RUN_STATUS_SYSTEM_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELED: _ClassVar[RunStatus]
    RUN_STATUS_EXPIRED: _ClassVar[RunStatus]
    RUN_STATUS_DEAD_LETTER: _ClassVar[RunStatus]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
    OUTPUT_STREAM_DEBUG: _ClassVar[OutputStream]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_DELAYED: RunStatus
RUN_STATUS_QUEUED: RunStatus
RUN_STATUS_DEQUEUED: RunStatus
RUN_STATUS_EXECUTING: RunStatus
RUN_STATUS_WAITING: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_TIMED_OUT: RunStatus
RUN_STATUS_CRASHED: RunStatus
RUN_STATUS_SYSTEM_FAILED: RunStatus
RUN_STATUS_CANCELED: RunStatus
RUN_STATUS_EXPIRED: RunStatus
RUN_STATUS_DEAD_LETTER: RunStatus
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream
OUTPUT_STREAM_DEBUG: OutputStream

class ExecutionTrace(_message.Message):
    __slots__ = ("queue_wait_ms", "dequeue_ms", "connect_ms", "ttfb_ms", "transfer_ms", "total_ms", "dispatch_ms")
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    DEQUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    CONNECT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_MS_FIELD_NUMBER: _ClassVar[int]
    queue_wait_ms: int
    dequeue_ms: int
    connect_ms: int
    ttfb_ms: int
    transfer_ms: int
    total_ms: int
    dispatch_ms: int
    def __init__(self, queue_wait_ms: _Optional[int] = ..., dequeue_ms: _Optional[int] = ..., connect_ms: _Optional[int] = ..., ttfb_ms: _Optional[int] = ..., transfer_ms: _Optional[int] = ..., total_ms: _Optional[int] = ..., dispatch_ms: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "job_id", "project_id", "status", "attempt", "payload", "result", "metadata", "error", "triggered_by", "scheduled_at", "started_at", "finished_at", "heartbeat_at", "next_retry_at", "expires_at", "parent_run_id", "priority", "idempotency_key", "job_version", "workflow_step_run_id", "max_attempts_override", "timeout_secs_override", "retry_backoff", "retry_initial_delay_secs", "retry_max_delay_secs", "execution_trace", "debug_mode", "continuation_of", "lineage_depth", "tags", "job_version_id", "created_by", "batch_id", "concurrency_key", "created_at", "device_id", "invocation_id", "exit_code")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    JOB_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STEP_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECS_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    RETRY_INITIAL_DELAY_SECS_FIELD_NUMBER: _ClassVar[int]
    RETRY_MAX_DELAY_SECS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TRACE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_MODE_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_OF_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    JOB_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    project_id: str
    status: RunStatus
    attempt: int
    payload: _struct_pb2.Struct
    result: _struct_pb2.Struct
    metadata: _containers.ScalarMap[str, str]
    error: str
    triggered_by: str
    scheduled_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    heartbeat_at: _timestamp_pb2.Timestamp
    next_retry_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    parent_run_id: str
    priority: int
    idempotency_key: str
    job_version: int
    workflow_step_run_id: str
    max_attempts_override: int
    timeout_secs_override: int
    retry_backoff: str
    retry_initial_delay_secs: int
    retry_max_delay_secs: int
    execution_trace: ExecutionTrace
    debug_mode: bool
    continuation_of: str
    lineage_depth: int
    tags: _containers.ScalarMap[str, str]
    job_version_id: str
    created_by: str
    batch_id: str
    concurrency_key: str
    created_at: _timestamp_pb2.Timestamp
    device_id: str
    invocation_id: str
    exit_code: int
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., project_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., attempt: _Optional[int] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., error: _Optional[str] = ..., triggered_by: _Optional[str] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parent_run_id: _Optional[str] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., job_version: _Optional[int] = ..., workflow_step_run_id: _Optional[str] = ..., max_attempts_override: _Optional[int] = ..., timeout_secs_override: _Optional[int] = ..., retry_backoff: _Optional[str] = ..., retry_initial_delay_secs: _Optional[int] = ..., retry_max_delay_secs: _Optional[int] = ..., execution_trace: _Optional[_Union[ExecutionTrace, _Mapping]] = ..., debug_mode: _Optional[bool] = ..., continuation_of: _Optional[str] = ..., lineage_depth: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., job_version_id: _Optional[str] = ..., created_by: _Optional[str] = ..., batch_id: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_id: _Optional[str] = ..., invocation_id: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class TriggerJobRequest(_message.Message):
    __slots__ = ("job_id", "payload", "idempotency_key", "priority", "dry_run", "metadata", "scheduled_at", "device_ids")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    payload: _struct_pb2.Struct
    idempotency_key: str
    priority: int
    dry_run: bool
    metadata: _containers.ScalarMap[str, str]
    scheduled_at: _timestamp_pb2.Timestamp
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., priority: _Optional[int] = ..., dry_run: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("project_id", "status", "job_id", "limit", "cursor", "triggered_by", "batch_id", "invocation_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    status: RunStatus
    job_id: str
    limit: int
    cursor: str
    triggered_by: str
    batch_id: str
    invocation_id: str
    def __init__(self, project_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., job_id: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., triggered_by: _Optional[str] = ..., batch_id: _Optional[str] = ..., invocation_id: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_cursor")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_cursor: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("attempt", "sequence", "stream", "data", "created_at")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    sequence: int
    stream: OutputStream
    data: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, attempt: _Optional[int] = ..., sequence: _Optional[int] = ..., stream: _Optional[_Union[OutputStream, str]] = ..., data: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRunLogsRequest(_message.Message):
    __slots__ = ("run_id", "after_sequence")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_sequence: int
    def __init__(self, run_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class ListRunLogsResponse(_message.Message):
    __slots__ = ("chunks", "text")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[LogChunk]
    text: str
    def __init__(self, chunks: _Optional[_Iterable[_Union[LogChunk, _Mapping]]] = ..., text: _Optional[str] = ...) -> None: ...

class CountActiveRunsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CountActiveRunsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...
