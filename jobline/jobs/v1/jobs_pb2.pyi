import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobline.api.v1 import annotations_pb2 as _annotations_pb2_1
from jobline.devices.v1 import devices_pb2 as _devices_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateLimitKey(_message.Message):
    __slots__ = ("name", "max", "window_secs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    max: int
    window_secs: int
    def __init__(self, name: _Optional[str] = ..., max: _Optional[int] = ..., window_secs: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "project_id", "group_id", "name", "slug", "description", "cron", "payload_schema", "tags", "endpoint_url", "fallback_endpoint_url", "max_attempts", "timeout_secs", "max_concurrency", "execution_window_cron", "timezone", "rate_limit_max", "rate_limit_window_secs", "max_concurrency_per_key", "rate_limit_keys", "default_run_metadata", "dedup_window_secs", "enabled", "webhook_url", "webhook_secret", "run_ttl_secs", "retry_strategy", "retry_delays_secs", "environment_id", "version", "version_id", "version_policy", "backwards_compatible", "created_by", "updated_by", "created_at", "updated_at", "command", "default_inputs", "targets", "number", "job_template", "handler", "mission")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DefaultRunMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DefaultInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_WINDOW_CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_MAX_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_WINDOW_SECS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_PER_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_KEYS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RUN_METADATA_FIELD_NUMBER: _ClassVar[int]
    DEDUP_WINDOW_SECS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    RUN_TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    RETRY_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAYS_SECS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_POLICY_FIELD_NUMBER: _ClassVar[int]
    BACKWARDS_COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    JOB_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    MISSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    group_id: str
    name: str
    slug: str
    description: str
    cron: str
    payload_schema: _struct_pb2.Struct
    tags: _containers.ScalarMap[str, str]
    endpoint_url: str
    fallback_endpoint_url: str
    max_attempts: int
    timeout_secs: int
    max_concurrency: int
    execution_window_cron: str
    timezone: str
    rate_limit_max: int
    rate_limit_window_secs: int
    max_concurrency_per_key: int
    rate_limit_keys: _containers.RepeatedCompositeFieldContainer[RateLimitKey]
    default_run_metadata: _containers.ScalarMap[str, str]
    dedup_window_secs: int
    enabled: bool
    webhook_url: str
    webhook_secret: str
    run_ttl_secs: int
    retry_strategy: str
    retry_delays_secs: _containers.RepeatedScalarFieldContainer[int]
    environment_id: str
    version: int
    version_id: str
    version_policy: str
    backwards_compatible: bool
    created_by: str
    updated_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    command: str
    default_inputs: _containers.ScalarMap[str, str]
    targets: _devices_pb2.DeviceTargets
    number: int
    job_template: JobTemplateSpec
    handler: str
    mission: MissionSpec
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., group_id: _Optional[str] = ..., name: _Optional[str] = ..., slug: _Optional[str] = ..., description: _Optional[str] = ..., cron: _Optional[str] = ..., payload_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., endpoint_url: _Optional[str] = ..., fallback_endpoint_url: _Optional[str] = ..., max_attempts: _Optional[int] = ..., timeout_secs: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., execution_window_cron: _Optional[str] = ..., timezone: _Optional[str] = ..., rate_limit_max: _Optional[int] = ..., rate_limit_window_secs: _Optional[int] = ..., max_concurrency_per_key: _Optional[int] = ..., rate_limit_keys: _Optional[_Iterable[_Union[RateLimitKey, _Mapping]]] = ..., default_run_metadata: _Optional[_Mapping[str, str]] = ..., dedup_window_secs: _Optional[int] = ..., enabled: _Optional[bool] = ..., webhook_url: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., run_ttl_secs: _Optional[int] = ..., retry_strategy: _Optional[str] = ..., retry_delays_secs: _Optional[_Iterable[int]] = ..., environment_id: _Optional[str] = ..., version: _Optional[int] = ..., version_id: _Optional[str] = ..., version_policy: _Optional[str] = ..., backwards_compatible: _Optional[bool] = ..., created_by: _Optional[str] = ..., updated_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., command: _Optional[str] = ..., default_inputs: _Optional[_Mapping[str, str]] = ..., targets: _Optional[_Union[_devices_pb2.DeviceTargets, _Mapping]] = ..., number: _Optional[int] = ..., job_template: _Optional[_Union[JobTemplateSpec, _Mapping]] = ..., handler: _Optional[str] = ..., mission: _Optional[_Union[MissionSpec, _Mapping]] = ...) -> None: ...

class MissionSpec(_message.Message):
    __slots__ = ("mission_id", "device_group_id", "device_id", "priority", "metadata")
    MISSION_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    mission_id: str
    device_group_id: str
    device_id: str
    priority: int
    metadata: _struct_pb2.Struct
    def __init__(self, mission_id: _Optional[str] = ..., device_group_id: _Optional[str] = ..., device_id: _Optional[str] = ..., priority: _Optional[int] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class JobTemplateInput(_message.Message):
    __slots__ = ("name", "required", "description", "default_value", "input_type", "hidden_value", "options", "advanced", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_VALUE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ADVANCED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    required: bool
    description: str
    default_value: str
    input_type: str
    hidden_value: bool
    options: _containers.RepeatedScalarFieldContainer[str]
    advanced: bool
    id: int
    def __init__(self, name: _Optional[str] = ..., required: _Optional[bool] = ..., description: _Optional[str] = ..., default_value: _Optional[str] = ..., input_type: _Optional[str] = ..., hidden_value: _Optional[bool] = ..., options: _Optional[_Iterable[str]] = ..., advanced: _Optional[bool] = ..., id: _Optional[int] = ...) -> None: ...

class JobTemplateEffectiveUser(_message.Message):
    __slots__ = ("value", "current_user", "overridable")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_USER_FIELD_NUMBER: _ClassVar[int]
    OVERRIDABLE_FIELD_NUMBER: _ClassVar[int]
    value: str
    current_user: bool
    overridable: bool
    def __init__(self, value: _Optional[str] = ..., current_user: _Optional[bool] = ..., overridable: _Optional[bool] = ...) -> None: ...

class JobTemplateSpec(_message.Message):
    __slots__ = ("job_category", "provider_type", "description_format", "snippet", "locked", "inputs", "effective_user", "execution_timeout_interval", "features", "cloned_from_number")
    JOB_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_USER_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CLONED_FROM_NUMBER_FIELD_NUMBER: _ClassVar[int]
    job_category: str
    provider_type: str
    description_format: str
    snippet: bool
    locked: bool
    inputs: _containers.RepeatedCompositeFieldContainer[JobTemplateInput]
    effective_user: JobTemplateEffectiveUser
    execution_timeout_interval: int
    features: _containers.RepeatedScalarFieldContainer[str]
    cloned_from_number: int
    def __init__(self, job_category: _Optional[str] = ..., provider_type: _Optional[str] = ..., description_format: _Optional[str] = ..., snippet: _Optional[bool] = ..., locked: _Optional[bool] = ..., inputs: _Optional[_Iterable[_Union[JobTemplateInput, _Mapping]]] = ..., effective_user: _Optional[_Union[JobTemplateEffectiveUser, _Mapping]] = ..., execution_timeout_interval: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., cloned_from_number: _Optional[int] = ...) -> None: ...

class JobVersion(_message.Message):
    __slots__ = ("id", "job_id", "version", "name", "slug", "description", "cron", "payload_schema", "tags", "endpoint_url", "fallback_endpoint_url", "max_attempts", "timeout_secs", "webhook_url", "webhook_secret", "run_ttl_secs", "created_at", "command", "snapshot")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    RUN_TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    version: int
    name: str
    slug: str
    description: str
    cron: str
    payload_schema: _struct_pb2.Struct
    tags: _containers.ScalarMap[str, str]
    endpoint_url: str
    fallback_endpoint_url: str
    max_attempts: int
    timeout_secs: int
    webhook_url: str
    webhook_secret: str
    run_ttl_secs: int
    created_at: _timestamp_pb2.Timestamp
    command: str
    snapshot: Job
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., slug: _Optional[str] = ..., description: _Optional[str] = ..., cron: _Optional[str] = ..., payload_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., endpoint_url: _Optional[str] = ..., fallback_endpoint_url: _Optional[str] = ..., max_attempts: _Optional[int] = ..., timeout_secs: _Optional[int] = ..., webhook_url: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., run_ttl_secs: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., command: _Optional[str] = ..., snapshot: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "number")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    number: int
    def __init__(self, job_id: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("project_id", "tag_key", "tag_value", "page_size", "page_token", "name", "job_templates_only", "job_template_feature", "job_template_search", "missions_only")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_KEY_FIELD_NUMBER: _ClassVar[int]
    TAG_VALUE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_TEMPLATES_ONLY_FIELD_NUMBER: _ClassVar[int]
    JOB_TEMPLATE_FEATURE_FIELD_NUMBER: _ClassVar[int]
    JOB_TEMPLATE_SEARCH_FIELD_NUMBER: _ClassVar[int]
    MISSIONS_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    tag_key: str
    tag_value: str
    page_size: int
    page_token: str
    name: str
    job_templates_only: bool
    job_template_feature: str
    job_template_search: str
    missions_only: bool
    def __init__(self, project_id: _Optional[str] = ..., tag_key: _Optional[str] = ..., tag_value: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name: _Optional[str] = ..., job_templates_only: _Optional[bool] = ..., job_template_feature: _Optional[str] = ..., job_template_search: _Optional[str] = ..., missions_only: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateJobRequest(_message.Message):
    __slots__ = ("job_id", "job", "update_mask")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job: Job
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, job_id: _Optional[str] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobVersionsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[JobVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[JobVersion, _Mapping]]] = ...) -> None: ...

class GetJobVersionRequest(_message.Message):
    __slots__ = ("job_id", "version_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    version_id: str
    def __init__(self, job_id: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class JobDependency(_message.Message):
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

class ListJobDependenciesRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobDependenciesResponse(_message.Message):
    __slots__ = ("dependencies",)
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    dependencies: _containers.RepeatedCompositeFieldContainer[JobDependency]
    def __init__(self, dependencies: _Optional[_Iterable[_Union[JobDependency, _Mapping]]] = ...) -> None: ...

class BatchGetJobSnapshotsRequest(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetJobSnapshotsResponse(_message.Message):
    __slots__ = ("jobs", "dependencies")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    dependencies: _containers.RepeatedCompositeFieldContainer[JobDependency]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., dependencies: _Optional[_Iterable[_Union[JobDependency, _Mapping]]] = ...) -> None: ...

class CreateJobDependencyRequest(_message.Message):
    __slots__ = ("job_id", "depends_on_job_id", "condition")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    depends_on_job_id: str
    condition: str
    def __init__(self, job_id: _Optional[str] = ..., depends_on_job_id: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class DeleteJobDependencyRequest(_message.Message):
    __slots__ = ("job_id", "dep_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DEP_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dep_id: str
    def __init__(self, job_id: _Optional[str] = ..., dep_id: _Optional[str] = ...) -> None: ...

class BatchCreateJobsRequest(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class BatchCreateJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class BatchSetJobsEnabledRequest(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchSetJobsEnabledResponse(_message.Message):
    __slots__ = ("updated", "job_ids")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    updated: int
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, updated: _Optional[int] = ..., job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CloneJobRequest(_message.Message):
    __slots__ = ("job_id", "name", "slug")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    slug: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., slug: _Optional[str] = ...) -> None: ...

class JobSchedule(_message.Message):
    __slots__ = ("id", "number", "job_id", "cron", "max_iteration", "end_time", "iteration", "state", "purpose", "next_fire_at", "last_fired_at", "trigger_request", "created_at", "not_before")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATION_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    job_id: str
    cron: str
    max_iteration: int
    end_time: _timestamp_pb2.Timestamp
    iteration: int
    state: str
    purpose: str
    next_fire_at: _timestamp_pb2.Timestamp
    last_fired_at: _timestamp_pb2.Timestamp
    trigger_request: bytes
    created_at: _timestamp_pb2.Timestamp
    not_before: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., job_id: _Optional[str] = ..., cron: _Optional[str] = ..., max_iteration: _Optional[int] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., iteration: _Optional[int] = ..., state: _Optional[str] = ..., purpose: _Optional[str] = ..., next_fire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger_request: _Optional[bytes] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateJobScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: JobSchedule
    def __init__(self, schedule: _Optional[_Union[JobSchedule, _Mapping]] = ...) -> None: ...

class GetJobScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...
