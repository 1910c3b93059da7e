import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobline.api.v1 import annotations_pb2 as _annotations_pb2_1
from jobline.auth.v1 import auth_pb2 as _auth_pb2
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

class RunSortField(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_SORT_FIELD_UNSPECIFIED: _ClassVar[RunSortField]
    RUN_SORT_FIELD_CREATED_AT: _ClassVar[RunSortField]
    RUN_SORT_FIELD_DURATION: _ClassVar[RunSortField]
    RUN_SORT_FIELD_JOB_VERSION: _ClassVar[RunSortField]
    RUN_SORT_FIELD_TRIGGERED_BY: _ClassVar[RunSortField]
    RUN_SORT_FIELD_STATUS: _ClassVar[RunSortField]
    RUN_SORT_FIELD_NAME: _ClassVar[RunSortField]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
    OUTPUT_STREAM_DEBUG: _ClassVar[OutputStream]

class JobInvocationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_INVOCATION_STATE_UNSPECIFIED: _ClassVar[JobInvocationState]
    JOB_INVOCATION_STATE_SCHEDULED: _ClassVar[JobInvocationState]
    JOB_INVOCATION_STATE_RUNNING: _ClassVar[JobInvocationState]
    JOB_INVOCATION_STATE_SUCCEEDED: _ClassVar[JobInvocationState]
    JOB_INVOCATION_STATE_FAILED: _ClassVar[JobInvocationState]
    JOB_INVOCATION_STATE_CANCELLED: _ClassVar[JobInvocationState]
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
RUN_SORT_FIELD_UNSPECIFIED: RunSortField
RUN_SORT_FIELD_CREATED_AT: RunSortField
RUN_SORT_FIELD_DURATION: RunSortField
RUN_SORT_FIELD_JOB_VERSION: RunSortField
RUN_SORT_FIELD_TRIGGERED_BY: RunSortField
RUN_SORT_FIELD_STATUS: RunSortField
RUN_SORT_FIELD_NAME: RunSortField
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream
OUTPUT_STREAM_DEBUG: OutputStream
JOB_INVOCATION_STATE_UNSPECIFIED: JobInvocationState
JOB_INVOCATION_STATE_SCHEDULED: JobInvocationState
JOB_INVOCATION_STATE_RUNNING: JobInvocationState
JOB_INVOCATION_STATE_SUCCEEDED: JobInvocationState
JOB_INVOCATION_STATE_FAILED: JobInvocationState
JOB_INVOCATION_STATE_CANCELLED: JobInvocationState

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
    __slots__ = ("id", "job_id", "project_id", "status", "attempt", "payload", "result", "metadata", "error", "triggered_by", "scheduled_at", "started_at", "finished_at", "heartbeat_at", "next_retry_at", "expires_at", "parent_run_id", "priority", "idempotency_key", "job_version", "workflow_step_run_id", "max_attempts_override", "timeout_secs_override", "retry_backoff", "retry_initial_delay_secs", "retry_max_delay_secs", "execution_trace", "debug_mode", "continuation_of", "lineage_depth", "tags", "job_version_id", "created_by", "batch_id", "concurrency_key", "created_at", "idempotency_hit", "number", "device_id", "invocation_id", "exit_code", "name", "triggered_by_subject", "command", "duration_ms")
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
    IDEMPOTENCY_HIT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
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
    idempotency_hit: bool
    number: int
    device_id: str
    invocation_id: str
    exit_code: int
    name: str
    triggered_by_subject: RunSubject
    command: str
    duration_ms: int
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., project_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., attempt: _Optional[int] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., error: _Optional[str] = ..., triggered_by: _Optional[str] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parent_run_id: _Optional[str] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., job_version: _Optional[int] = ..., workflow_step_run_id: _Optional[str] = ..., max_attempts_override: _Optional[int] = ..., timeout_secs_override: _Optional[int] = ..., retry_backoff: _Optional[str] = ..., retry_initial_delay_secs: _Optional[int] = ..., retry_max_delay_secs: _Optional[int] = ..., execution_trace: _Optional[_Union[ExecutionTrace, _Mapping]] = ..., debug_mode: _Optional[bool] = ..., continuation_of: _Optional[str] = ..., lineage_depth: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., job_version_id: _Optional[str] = ..., created_by: _Optional[str] = ..., batch_id: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_hit: _Optional[bool] = ..., number: _Optional[int] = ..., device_id: _Optional[str] = ..., invocation_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., name: _Optional[str] = ..., triggered_by_subject: _Optional[_Union[RunSubject, _Mapping]] = ..., command: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class RunSubject(_message.Message):
    __slots__ = ("id", "type", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: _auth_pb2.SubjectType
    name: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[_auth_pb2.SubjectType, str]] = ..., name: _Optional[str] = ...) -> None: ...

class TriggerJobRequest(_message.Message):
    __slots__ = ("job_id", "payload", "idempotency_key", "priority", "dry_run", "metadata", "scheduled_at", "concurrency_key", "tags", "parent_run_id", "device_ids", "job_invocation", "job_version_id", "command", "name")
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
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    JOB_INVOCATION_FIELD_NUMBER: _ClassVar[int]
    JOB_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    payload: _struct_pb2.Struct
    idempotency_key: str
    priority: int
    dry_run: bool
    metadata: _containers.ScalarMap[str, str]
    scheduled_at: _timestamp_pb2.Timestamp
    concurrency_key: str
    tags: _containers.ScalarMap[str, str]
    parent_run_id: str
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    job_invocation: JobInvocationSpec
    job_version_id: str
    command: str
    name: str
    def __init__(self, job_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., priority: _Optional[int] = ..., dry_run: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., concurrency_key: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., parent_run_id: _Optional[str] = ..., device_ids: _Optional[_Iterable[str]] = ..., job_invocation: _Optional[_Union[JobInvocationSpec, _Mapping]] = ..., job_version_id: _Optional[str] = ..., command: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id", "number", "job_id", "name")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    number: int
    job_id: str
    name: str
    def __init__(self, run_id: _Optional[str] = ..., number: _Optional[int] = ..., job_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("project_id", "status", "job_id", "limit", "cursor", "triggered_by", "batch_id", "metadata_key", "metadata_value", "payload_contains", "invocation_id", "offset", "order_by", "ascending", "name_prefix", "statuses", "job_versions", "triggered_by_subject_names", "include_total_count", "latest_for_job_ids")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_VALUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    JOB_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_SUBJECT_NAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATEST_FOR_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    status: RunStatus
    job_id: str
    limit: int
    cursor: str
    triggered_by: str
    batch_id: str
    metadata_key: str
    metadata_value: str
    payload_contains: str
    invocation_id: str
    offset: int
    order_by: RunSortField
    ascending: bool
    name_prefix: str
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    job_versions: _containers.RepeatedScalarFieldContainer[int]
    triggered_by_subject_names: _containers.RepeatedScalarFieldContainer[str]
    include_total_count: bool
    latest_for_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., job_id: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., triggered_by: _Optional[str] = ..., batch_id: _Optional[str] = ..., metadata_key: _Optional[str] = ..., metadata_value: _Optional[str] = ..., payload_contains: _Optional[str] = ..., invocation_id: _Optional[str] = ..., offset: _Optional[int] = ..., order_by: _Optional[_Union[RunSortField, str]] = ..., ascending: _Optional[bool] = ..., name_prefix: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., job_versions: _Optional[_Iterable[int]] = ..., triggered_by_subject_names: _Optional[_Iterable[str]] = ..., include_total_count: _Optional[bool] = ..., latest_for_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_cursor", "total_count")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_cursor: str
    total_count: int
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class PurgeRunRequest(_message.Message):
    __slots__ = ("run_id", "job_id", "name")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    name: str
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "job_id", "name", "only_if_not_started")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_NOT_STARTED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    name: str
    only_if_not_started: bool
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., name: _Optional[str] = ..., only_if_not_started: _Optional[bool] = ...) -> None: ...

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

class TriggerJobsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TriggerJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[TriggerJobRequest, _Mapping]]] = ...) -> None: ...

class TriggerJobsResult(_message.Message):
    __slots__ = ("run", "error_code", "error_message")
    RUN_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run: Run
    error_code: int
    error_message: str
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class TriggerJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TriggerJobsResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TriggerJobsResult, _Mapping]]] = ...) -> None: ...

class BulkTriggerItem(_message.Message):
    __slots__ = ("payload", "scheduled_at", "priority", "idempotency_key", "tags", "concurrency_key", "metadata")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    payload: _struct_pb2.Struct
    scheduled_at: _timestamp_pb2.Timestamp
    priority: int
    idempotency_key: str
    tags: _containers.ScalarMap[str, str]
    concurrency_key: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., concurrency_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BulkTriggerJobRequest(_message.Message):
    __slots__ = ("job_id", "items")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    items: _containers.RepeatedCompositeFieldContainer[BulkTriggerItem]
    def __init__(self, job_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[BulkTriggerItem, _Mapping]]] = ...) -> None: ...

class BulkTriggerResult(_message.Message):
    __slots__ = ("id", "status", "run_token", "idempotency_hit", "invocation_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RUN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_HIT_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    run_token: str
    idempotency_hit: bool
    invocation_id: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., run_token: _Optional[str] = ..., idempotency_hit: _Optional[bool] = ..., invocation_id: _Optional[str] = ...) -> None: ...

class BulkTriggerJobResponse(_message.Message):
    __slots__ = ("results", "total", "created", "batch_id")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BulkTriggerResult]
    total: int
    created: int
    batch_id: str
    def __init__(self, results: _Optional[_Iterable[_Union[BulkTriggerResult, _Mapping]]] = ..., total: _Optional[int] = ..., created: _Optional[int] = ..., batch_id: _Optional[str] = ...) -> None: ...

class GetJobHealthRequest(_message.Message):
    __slots__ = ("job_id", "window")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    window: str
    def __init__(self, job_id: _Optional[str] = ..., window: _Optional[str] = ...) -> None: ...

class JobHealthStats(_message.Message):
    __slots__ = ("total_runs", "completed_runs", "failed_runs", "timed_out_runs", "crashed_runs", "canceled_runs", "expired_runs", "success_rate", "avg_duration_secs", "p95_duration_secs", "health_score")
    TOTAL_RUNS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_RUNS_FIELD_NUMBER: _ClassVar[int]
    FAILED_RUNS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_RUNS_FIELD_NUMBER: _ClassVar[int]
    CRASHED_RUNS_FIELD_NUMBER: _ClassVar[int]
    CANCELED_RUNS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_RUNS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_SECS_FIELD_NUMBER: _ClassVar[int]
    P95_DURATION_SECS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_SCORE_FIELD_NUMBER: _ClassVar[int]
    total_runs: int
    completed_runs: int
    failed_runs: int
    timed_out_runs: int
    crashed_runs: int
    canceled_runs: int
    expired_runs: int
    success_rate: float
    avg_duration_secs: float
    p95_duration_secs: float
    health_score: float
    def __init__(self, total_runs: _Optional[int] = ..., completed_runs: _Optional[int] = ..., failed_runs: _Optional[int] = ..., timed_out_runs: _Optional[int] = ..., crashed_runs: _Optional[int] = ..., canceled_runs: _Optional[int] = ..., expired_runs: _Optional[int] = ..., success_rate: _Optional[float] = ..., avg_duration_secs: _Optional[float] = ..., p95_duration_secs: _Optional[float] = ..., health_score: _Optional[float] = ...) -> None: ...

class BulkCancelRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BulkCancelResult(_message.Message):
    __slots__ = ("id", "status", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    error: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class BulkCancelRunsResponse(_message.Message):
    __slots__ = ("results", "total", "canceled", "failed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BulkCancelResult]
    total: int
    canceled: int
    failed: int
    def __init__(self, results: _Optional[_Iterable[_Union[BulkCancelResult, _Mapping]]] = ..., total: _Optional[int] = ..., canceled: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class BulkCancelAllFilter(_message.Message):
    __slots__ = ("job_id", "batch_id", "triggered_by", "status")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_BY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    batch_id: str
    triggered_by: str
    status: RunStatus
    def __init__(self, job_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., triggered_by: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ...) -> None: ...

class BulkCancelAllRunsRequest(_message.Message):
    __slots__ = ("project_id", "filter")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    filter: BulkCancelAllFilter
    def __init__(self, project_id: _Optional[str] = ..., filter: _Optional[_Union[BulkCancelAllFilter, _Mapping]] = ...) -> None: ...

class ReplayRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class BulkReplayDeadLetterRunsRequest(_message.Message):
    __slots__ = ("run_ids", "project_id", "limit")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    project_id: str
    limit: int
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., project_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class BulkReplayDeadLetterRunsResponse(_message.Message):
    __slots__ = ("replayed", "count")
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    replayed: _containers.RepeatedCompositeFieldContainer[Run]
    count: int
    def __init__(self, replayed: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., count: _Optional[int] = ...) -> None: ...

class BulkReplayRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("id", "run_id", "type", "level", "message", "data", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    run_id: str
    type: str
    level: str
    message: str
    data: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., run_id: _Optional[str] = ..., type: _Optional[str] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRunEventsRequest(_message.Message):
    __slots__ = ("run_id", "level", "type")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    level: str
    type: str
    def __init__(self, run_id: _Optional[str] = ..., level: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class ListRunEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ...) -> None: ...

class RunOutput(_message.Message):
    __slots__ = ("id", "run_id", "output_key", "schema", "value", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    run_id: str
    output_key: str
    schema: _struct_pb2.Struct
    value: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., run_id: _Optional[str] = ..., output_key: _Optional[str] = ..., schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRunOutputsResponse(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[RunOutput]
    def __init__(self, outputs: _Optional[_Iterable[_Union[RunOutput, _Mapping]]] = ...) -> None: ...

class RunDependency(_message.Message):
    __slots__ = ("id", "job_id", "depends_on_job_id", "condition", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    depends_on_job_id: str
    condition: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., depends_on_job_id: _Optional[str] = ..., condition: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunDependencyStatus(_message.Message):
    __slots__ = ("run_id", "job_id", "status", "dependencies", "dependencies_satisfied")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_SATISFIED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    status: RunStatus
    dependencies: _containers.RepeatedCompositeFieldContainer[RunDependency]
    dependencies_satisfied: bool
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., dependencies: _Optional[_Iterable[_Union[RunDependency, _Mapping]]] = ..., dependencies_satisfied: _Optional[bool] = ...) -> None: ...

class ResetIdempotencyKeyResponse(_message.Message):
    __slots__ = ("status", "run_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    status: str
    run_id: str
    def __init__(self, status: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class RescheduleRunRequest(_message.Message):
    __slots__ = ("run_id", "scheduled_at", "payload", "priority")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    scheduled_at: _timestamp_pb2.Timestamp
    payload: _struct_pb2.Struct
    priority: int
    def __init__(self, run_id: _Optional[str] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("run", "output")
    RUN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    run: Run
    output: LogChunk
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., output: _Optional[_Union[LogChunk, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("runs_by_status", "agent_streams_connected", "dispatch_latency_bucket_bounds_secs", "dispatch_latency_bucket_counts", "dispatch_latency_count", "dispatch_latency_sum_secs")
    class RunsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUNS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_STREAMS_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_BUCKET_BOUNDS_SECS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_SUM_SECS_FIELD_NUMBER: _ClassVar[int]
    runs_by_status: _containers.ScalarMap[str, int]
    agent_streams_connected: int
    dispatch_latency_bucket_bounds_secs: _containers.RepeatedScalarFieldContainer[float]
    dispatch_latency_bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    dispatch_latency_count: int
    dispatch_latency_sum_secs: float
    def __init__(self, runs_by_status: _Optional[_Mapping[str, int]] = ..., agent_streams_connected: _Optional[int] = ..., dispatch_latency_bucket_bounds_secs: _Optional[_Iterable[float]] = ..., dispatch_latency_bucket_counts: _Optional[_Iterable[int]] = ..., dispatch_latency_count: _Optional[int] = ..., dispatch_latency_sum_secs: _Optional[float] = ...) -> None: ...

class JobInvocationSpec(_message.Message):
    __slots__ = ("targeting_type", "search_query", "device_ids", "randomized_ordering", "inputs", "description_format", "concurrency_level", "execution_timeout_interval", "time_to_pickup", "start_at", "start_before", "ssh_user", "effective_user", "feature", "recurrence_id", "next_occurrence", "user_subject_id", "user_name", "reruns_number")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGETING_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_QUERY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    RANDOMIZED_ORDERING_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_PICKUP_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    START_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SSH_USER_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_USER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_OCCURRENCE_FIELD_NUMBER: _ClassVar[int]
    USER_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    RERUNS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    targeting_type: str
    search_query: str
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    randomized_ordering: bool
    inputs: _containers.ScalarMap[str, str]
    description_format: str
    concurrency_level: int
    execution_timeout_interval: int
    time_to_pickup: int
    start_at: _timestamp_pb2.Timestamp
    start_before: _timestamp_pb2.Timestamp
    ssh_user: str
    effective_user: str
    feature: str
    recurrence_id: str
    next_occurrence: _timestamp_pb2.Timestamp
    user_subject_id: str
    user_name: str
    reruns_number: int
    def __init__(self, targeting_type: _Optional[str] = ..., search_query: _Optional[str] = ..., device_ids: _Optional[_Iterable[str]] = ..., randomized_ordering: _Optional[bool] = ..., inputs: _Optional[_Mapping[str, str]] = ..., description_format: _Optional[str] = ..., concurrency_level: _Optional[int] = ..., execution_timeout_interval: _Optional[int] = ..., time_to_pickup: _Optional[int] = ..., start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ssh_user: _Optional[str] = ..., effective_user: _Optional[str] = ..., feature: _Optional[str] = ..., recurrence_id: _Optional[str] = ..., next_occurrence: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_subject_id: _Optional[str] = ..., user_name: _Optional[str] = ..., reruns_number: _Optional[int] = ...) -> None: ...

class JobInvocationRecurrence(_message.Message):
    __slots__ = ("cron_line", "max_iteration", "end_time", "purpose")
    CRON_LINE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATION_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    cron_line: str
    max_iteration: int
    end_time: _timestamp_pb2.Timestamp
    purpose: str
    def __init__(self, cron_line: _Optional[str] = ..., max_iteration: _Optional[int] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., purpose: _Optional[str] = ...) -> None: ...

class JobInvocationHost(_message.Message):
    __slots__ = ("device_id", "run_id", "run_status", "run_number")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    RUN_NUMBER_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    run_id: str
    run_status: RunStatus
    run_number: int
    def __init__(self, device_id: _Optional[str] = ..., run_id: _Optional[str] = ..., run_status: _Optional[_Union[RunStatus, str]] = ..., run_number: _Optional[int] = ...) -> None: ...

class JobInvocation(_message.Message):
    __slots__ = ("id", "number", "project_id", "job_id", "job_number", "job_name", "job_category", "description", "description_format", "effective_user", "state", "runs_by_status", "targeting_resolved", "host_count", "spec", "mode", "task_id", "created_at", "started_at", "finished_at", "cancelled", "hosts", "start_at")
    class RunsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NUMBER_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_USER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    TARGETING_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    HOST_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    project_id: str
    job_id: str
    job_number: int
    job_name: str
    job_category: str
    description: str
    description_format: str
    effective_user: str
    state: JobInvocationState
    runs_by_status: _containers.ScalarMap[str, int]
    targeting_resolved: bool
    host_count: int
    spec: JobInvocationSpec
    mode: str
    task_id: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cancelled: bool
    hosts: _containers.RepeatedCompositeFieldContainer[JobInvocationHost]
    start_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., project_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_number: _Optional[int] = ..., job_name: _Optional[str] = ..., job_category: _Optional[str] = ..., description: _Optional[str] = ..., description_format: _Optional[str] = ..., effective_user: _Optional[str] = ..., state: _Optional[_Union[JobInvocationState, str]] = ..., runs_by_status: _Optional[_Mapping[str, int]] = ..., targeting_resolved: _Optional[bool] = ..., host_count: _Optional[int] = ..., spec: _Optional[_Union[JobInvocationSpec, _Mapping]] = ..., mode: _Optional[str] = ..., task_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled: _Optional[bool] = ..., hosts: _Optional[_Iterable[_Union[JobInvocationHost, _Mapping]]] = ..., start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateJobInvocationRequest(_message.Message):
    __slots__ = ("job_id", "spec", "recurrence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec: JobInvocationSpec
    recurrence: JobInvocationRecurrence
    def __init__(self, job_id: _Optional[str] = ..., spec: _Optional[_Union[JobInvocationSpec, _Mapping]] = ..., recurrence: _Optional[_Union[JobInvocationRecurrence, _Mapping]] = ...) -> None: ...

class GetJobInvocationRequest(_message.Message):
    __slots__ = ("number", "include_hosts")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HOSTS_FIELD_NUMBER: _ClassVar[int]
    number: int
    include_hosts: bool
    def __init__(self, number: _Optional[int] = ..., include_hosts: _Optional[bool] = ...) -> None: ...

class ListJobInvocationsRequest(_message.Message):
    __slots__ = ("search", "order_by", "offset", "limit")
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    search: str
    order_by: str
    offset: int
    limit: int
    def __init__(self, search: _Optional[str] = ..., order_by: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobInvocationsResponse(_message.Message):
    __slots__ = ("invocations", "total_count", "matched_count")
    INVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    invocations: _containers.RepeatedCompositeFieldContainer[JobInvocation]
    total_count: int
    matched_count: int
    def __init__(self, invocations: _Optional[_Iterable[_Union[JobInvocation, _Mapping]]] = ..., total_count: _Optional[int] = ..., matched_count: _Optional[int] = ...) -> None: ...

class CancelJobInvocationRequest(_message.Message):
    __slots__ = ("number", "force")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    number: int
    force: bool
    def __init__(self, number: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class CancelJobInvocationResponse(_message.Message):
    __slots__ = ("cancelled", "invocation")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    invocation: JobInvocation
    def __init__(self, cancelled: _Optional[bool] = ..., invocation: _Optional[_Union[JobInvocation, _Mapping]] = ...) -> None: ...

class RerunJobInvocationRequest(_message.Message):
    __slots__ = ("number", "failed_only", "succeeded_only")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FAILED_ONLY_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_ONLY_FIELD_NUMBER: _ClassVar[int]
    number: int
    failed_only: bool
    succeeded_only: bool
    def __init__(self, number: _Optional[int] = ..., failed_only: _Optional[bool] = ..., succeeded_only: _Optional[bool] = ...) -> None: ...

class ListJobInvocationOutputsRequest(_message.Message):
    __slots__ = ("number", "device_ids", "since")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    number: int
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    since: float
    def __init__(self, number: _Optional[int] = ..., device_ids: _Optional[_Iterable[str]] = ..., since: _Optional[float] = ...) -> None: ...

class JobInvocationOutputChunk(_message.Message):
    __slots__ = ("stream", "data", "timestamp")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    stream: OutputStream
    data: str
    timestamp: float
    def __init__(self, stream: _Optional[_Union[OutputStream, str]] = ..., data: _Optional[str] = ..., timestamp: _Optional[float] = ...) -> None: ...

class JobInvocationOutput(_message.Message):
    __slots__ = ("device_id", "run_id", "run_status", "chunks")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    run_id: str
    run_status: RunStatus
    chunks: _containers.RepeatedCompositeFieldContainer[JobInvocationOutputChunk]
    def __init__(self, device_id: _Optional[str] = ..., run_id: _Optional[str] = ..., run_status: _Optional[_Union[RunStatus, str]] = ..., chunks: _Optional[_Iterable[_Union[JobInvocationOutputChunk, _Mapping]]] = ...) -> None: ...

class ListJobInvocationOutputsResponse(_message.Message):
    __slots__ = ("outputs", "invocation")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[JobInvocationOutput]
    invocation: JobInvocation
    def __init__(self, outputs: _Optional[_Iterable[_Union[JobInvocationOutput, _Mapping]]] = ..., invocation: _Optional[_Union[JobInvocation, _Mapping]] = ...) -> None: ...
