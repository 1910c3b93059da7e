import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobline.api.v1 import annotations_pb2 as _annotations_pb2_1
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Device(_message.Message):
    __slots__ = ("id", "name", "model", "labels", "groups", "online", "last_seen_at", "agent_version", "created_at", "updated_at", "credential", "tenant_id", "facts", "credential_revoked_at", "enrollment_token_id", "number")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    model: str
    labels: _containers.ScalarMap[str, str]
    groups: _containers.RepeatedScalarFieldContainer[str]
    online: bool
    last_seen_at: _timestamp_pb2.Timestamp
    agent_version: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    credential: str
    tenant_id: str
    facts: _containers.ScalarMap[str, str]
    credential_revoked_at: _timestamp_pb2.Timestamp
    enrollment_token_id: str
    number: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., groups: _Optional[_Iterable[str]] = ..., online: _Optional[bool] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_version: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., credential: _Optional[str] = ..., tenant_id: _Optional[str] = ..., facts: _Optional[_Mapping[str, str]] = ..., credential_revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enrollment_token_id: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class RevokeCredentialRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class RotateCredentialRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class DeviceGroup(_message.Message):
    __slots__ = ("id", "name", "description", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDeviceGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: DeviceGroup
    def __init__(self, group: _Optional[_Union[DeviceGroup, _Mapping]] = ...) -> None: ...

class GetDeviceGroupRequest(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: _Optional[str] = ...) -> None: ...

class ListDeviceGroupsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeviceGroupsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DeviceGroup]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[DeviceGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDeviceGroupRequest(_message.Message):
    __slots__ = ("group_id", "group", "update_mask")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    group: DeviceGroup
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, group_id: _Optional[str] = ..., group: _Optional[_Union[DeviceGroup, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteDeviceGroupRequest(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: _Optional[str] = ...) -> None: ...

class DeviceSearch(_message.Message):
    __slots__ = ("id", "name", "description", "query", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    query: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., query: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDeviceSearchRequest(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: DeviceSearch
    def __init__(self, search: _Optional[_Union[DeviceSearch, _Mapping]] = ...) -> None: ...

class GetDeviceSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class ListDeviceSearchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeviceSearchesResponse(_message.Message):
    __slots__ = ("searches", "next_page_token")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    searches: _containers.RepeatedCompositeFieldContainer[DeviceSearch]
    next_page_token: str
    def __init__(self, searches: _Optional[_Iterable[_Union[DeviceSearch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDeviceSearchRequest(_message.Message):
    __slots__ = ("search_id", "search", "update_mask")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    search: DeviceSearch
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, search_id: _Optional[str] = ..., search: _Optional[_Union[DeviceSearch, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteDeviceSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class EnrollmentToken(_message.Message):
    __slots__ = ("id", "token", "description", "group", "expires_at", "max_uses", "uses", "revoked", "created_at", "ttl_secs")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    description: str
    group: str
    expires_at: _timestamp_pb2.Timestamp
    max_uses: int
    uses: int
    revoked: bool
    created_at: _timestamp_pb2.Timestamp
    ttl_secs: int
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., description: _Optional[str] = ..., group: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_uses: _Optional[int] = ..., uses: _Optional[int] = ..., revoked: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class CreateEnrollmentTokenRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: EnrollmentToken
    def __init__(self, token: _Optional[_Union[EnrollmentToken, _Mapping]] = ...) -> None: ...

class ListEnrollmentTokensRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEnrollmentTokensResponse(_message.Message):
    __slots__ = ("tokens", "next_page_token")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[EnrollmentToken]
    next_page_token: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[EnrollmentToken, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeEnrollmentTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class EnrollDeviceRequest(_message.Message):
    __slots__ = ("token", "device_id", "name", "facts", "agent_version")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: str
    device_id: str
    name: str
    facts: _containers.ScalarMap[str, str]
    agent_version: str
    def __init__(self, token: _Optional[str] = ..., device_id: _Optional[str] = ..., name: _Optional[str] = ..., facts: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class AgentCredential(_message.Message):
    __slots__ = ("tenant_id", "device_id", "credential_sha256")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_SHA256_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    device_id: str
    credential_sha256: str
    def __init__(self, tenant_id: _Optional[str] = ..., device_id: _Optional[str] = ..., credential_sha256: _Optional[str] = ...) -> None: ...

class ValidateAgentsRequest(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentCredential]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentCredential, _Mapping]]] = ...) -> None: ...

class ValidateAgentsResponse(_message.Message):
    __slots__ = ("invalid", "revision")
    INVALID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    invalid: _containers.RepeatedCompositeFieldContainer[AgentCredential]
    revision: int
    def __init__(self, invalid: _Optional[_Iterable[_Union[AgentCredential, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class CreateDeviceRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id", "number")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    number: int
    def __init__(self, device_id: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "group", "query", "online", "query_dialect", "offset", "include_counts", "search_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    QUERY_DIALECT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    group: str
    query: str
    online: bool
    query_dialect: str
    offset: int
    include_counts: bool
    search_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., group: _Optional[str] = ..., query: _Optional[str] = ..., online: _Optional[bool] = ..., query_dialect: _Optional[str] = ..., offset: _Optional[int] = ..., include_counts: _Optional[bool] = ..., search_id: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token", "total_count", "matched_count")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    next_page_token: str
    total_count: int
    matched_count: int
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ..., matched_count: _Optional[int] = ...) -> None: ...

class UpdateDeviceRequest(_message.Message):
    __slots__ = ("device_id", "device", "update_mask")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device: Device
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, device_id: _Optional[str] = ..., device: _Optional[_Union[Device, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class DeviceTargets(_message.Message):
    __slots__ = ("device_ids", "group", "query", "any_available", "query_dialect", "device_numbers", "device_ids_within_group", "saved_search_id")
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ANY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    QUERY_DIALECT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_WITHIN_GROUP_FIELD_NUMBER: _ClassVar[int]
    SAVED_SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    group: str
    query: str
    any_available: bool
    query_dialect: str
    device_numbers: _containers.RepeatedScalarFieldContainer[int]
    device_ids_within_group: bool
    saved_search_id: str
    def __init__(self, device_ids: _Optional[_Iterable[str]] = ..., group: _Optional[str] = ..., query: _Optional[str] = ..., any_available: _Optional[bool] = ..., query_dialect: _Optional[str] = ..., device_numbers: _Optional[_Iterable[int]] = ..., device_ids_within_group: _Optional[bool] = ..., saved_search_id: _Optional[str] = ...) -> None: ...

class ResolveTargetsRequest(_message.Message):
    __slots__ = ("targets", "pick_count", "pool_members", "max_pool_members")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PICK_COUNT_FIELD_NUMBER: _ClassVar[int]
    POOL_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MAX_POOL_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    targets: DeviceTargets
    pick_count: int
    pool_members: bool
    max_pool_members: int
    def __init__(self, targets: _Optional[_Union[DeviceTargets, _Mapping]] = ..., pick_count: _Optional[int] = ..., pool_members: _Optional[bool] = ..., max_pool_members: _Optional[int] = ...) -> None: ...

class ResolveTargetsResponse(_message.Message):
    __slots__ = ("devices", "missing_device_ids", "missing_device_numbers")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MISSING_DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    MISSING_DEVICE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    missing_device_ids: _containers.RepeatedScalarFieldContainer[str]
    missing_device_numbers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., missing_device_ids: _Optional[_Iterable[str]] = ..., missing_device_numbers: _Optional[_Iterable[int]] = ...) -> None: ...

class AuthenticateAgentRequest(_message.Message):
    __slots__ = ("device_id", "credential")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    credential: str
    def __init__(self, device_id: _Optional[str] = ..., credential: _Optional[str] = ...) -> None: ...

class PresenceChange(_message.Message):
    __slots__ = ("tenant_id", "device_id", "online", "agent_version", "seen_at", "facts", "stream_opened")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    STREAM_OPENED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    device_id: str
    online: bool
    agent_version: str
    seen_at: _timestamp_pb2.Timestamp
    facts: _containers.ScalarMap[str, str]
    stream_opened: bool
    def __init__(self, tenant_id: _Optional[str] = ..., device_id: _Optional[str] = ..., online: _Optional[bool] = ..., agent_version: _Optional[str] = ..., seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., facts: _Optional[_Mapping[str, str]] = ..., stream_opened: _Optional[bool] = ...) -> None: ...

class ReportPresenceRequest(_message.Message):
    __slots__ = ("changes", "replica_id", "lease_secs", "release")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PresenceChange]
    replica_id: str
    lease_secs: int
    release: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[PresenceChange, _Mapping]]] = ..., replica_id: _Optional[str] = ..., lease_secs: _Optional[int] = ..., release: _Optional[bool] = ...) -> None: ...

class ReportPresenceResponse(_message.Message):
    __slots__ = ("resync",)
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    resync: bool
    def __init__(self, resync: _Optional[bool] = ...) -> None: ...
