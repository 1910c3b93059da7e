import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobline.runs.v1 import runs_pb2 as _runs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentMessage(_message.Message):
    __slots__ = ("hello", "accept", "reject", "started", "output", "progress", "heartbeat", "finished")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    accept: Accept
    reject: Reject
    started: Started
    output: OutputChunk
    progress: Progress
    heartbeat: Heartbeat
    finished: Finished
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., accept: _Optional[_Union[Accept, _Mapping]] = ..., reject: _Optional[_Union[Reject, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., output: _Optional[_Union[OutputChunk, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "assign", "cancel", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    cancel: Cancel
    ack: Ack
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run_id", "attempt")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("device_id", "credential", "agent_version", "capacity", "held_runs", "facts", "enrollment_token", "device_name")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    HELD_RUNS_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    credential: str
    agent_version: str
    capacity: int
    held_runs: _containers.RepeatedCompositeFieldContainer[RunRef]
    facts: _containers.ScalarMap[str, str]
    enrollment_token: str
    device_name: str
    def __init__(self, device_id: _Optional[str] = ..., credential: _Optional[str] = ..., agent_version: _Optional[str] = ..., capacity: _Optional[int] = ..., held_runs: _Optional[_Iterable[_Union[RunRef, _Mapping]]] = ..., facts: _Optional[_Mapping[str, str]] = ..., enrollment_token: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "credential")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    credential: str
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., credential: _Optional[str] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("run", "command", "inputs", "deadline", "timeout_secs", "handler")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    command: str
    inputs: _containers.ScalarMap[str, str]
    deadline: _timestamp_pb2.Timestamp
    timeout_secs: int
    handler: str
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., command: _Optional[str] = ..., inputs: _Optional[_Mapping[str, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeout_secs: _Optional[int] = ..., handler: _Optional[str] = ...) -> None: ...

class Accept(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ...) -> None: ...

class Reject(_message.Message):
    __slots__ = ("run", "reason")
    RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    reason: str
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("run", "started_at")
    RUN_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("run", "sequence", "stream", "data")
    RUN_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    sequence: int
    stream: _runs_pb2.OutputStream
    data: bytes
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., sequence: _Optional[int] = ..., stream: _Optional[_Union[_runs_pb2.OutputStream, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("run", "percent", "message")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    percent: int
    message: str
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., percent: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunRef]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunRef, _Mapping]]] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("run", "exit_code", "error", "last_sequence", "timed_out", "canceled")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    exit_code: int
    error: str
    last_sequence: int
    timed_out: bool
    canceled: bool
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., last_sequence: _Optional[int] = ..., timed_out: _Optional[bool] = ..., canceled: _Optional[bool] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("run", "force")
    RUN_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    force: bool
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., force: _Optional[bool] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("run", "sequence", "finished")
    RUN_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    run: RunRef
    sequence: int
    finished: bool
    def __init__(self, run: _Optional[_Union[RunRef, _Mapping]] = ..., sequence: _Optional[int] = ..., finished: _Optional[bool] = ...) -> None: ...
