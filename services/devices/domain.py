"""Device rules: ids, validation, tenancy, agent credentials, target resolution and presence."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC
from typing import Any

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1.devices_pb2 import Device, DeviceTargets, PresenceChange, ResolveTargetsResponse
from services.common.clock import Clock
from services.common.secrets import new_secret, secret_hash
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated

from .store import DeviceRow, DeviceStore, Presence

DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CREDENTIAL_PREFIX = "jld_"
EDITABLE = ("name", "model", "labels", "groups")
TEXT_LIMITS = {"name": 256, "model": 256}
MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE = 64, 128, 256
MAX_GROUPS, MAX_GROUP_LEN = 64, 128
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000
MAX_TARGET_IDS = 10_000


def new_credential() -> str:
    return new_secret(CREDENTIAL_PREFIX)



def validate_id(device_id: str) -> None:
    if not device_id:
        raise InvalidArgument("device id is required")
    if not DEVICE_ID.match(device_id):
        raise InvalidArgument("device id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")


def editable_values(device: Device, fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The named editable fields of device, validated, as column values."""
    values: dict[str, Any] = {}
    for field in fields:
        if field in TEXT_LIMITS:
            value = getattr(device, field)
            if len(value) > TEXT_LIMITS[field]:
                raise InvalidArgument(f"{field} must be at most {TEXT_LIMITS[field]} characters")
            values[field] = value
        elif field == "labels":
            labels = dict(device.labels)
            if len(labels) > MAX_LABELS:
                raise InvalidArgument(f"at most {MAX_LABELS} labels")
            for key, value in labels.items():
                if not key or len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
                    raise InvalidArgument(f"label keys must be 1-{MAX_LABEL_KEY} characters, "
                                          f"values at most {MAX_LABEL_VALUE}")
            values["labels"] = labels
        elif field == "groups":
            groups = list(dict.fromkeys(device.groups))
            if len(groups) > MAX_GROUPS:
                raise InvalidArgument(f"at most {MAX_GROUPS} groups")
            if any(not group.strip() or len(group) > MAX_GROUP_LEN for group in groups):
                raise InvalidArgument(f"group names must be 1-{MAX_GROUP_LEN} characters")
            values["groups"] = groups
        else:
            raise InvalidArgument(f"{field!r} cannot be changed: update_mask paths are " + ", ".join(EDITABLE))
    return values


def to_device(row: DeviceRow, *, with_tenant: bool = False, credential: str = "") -> Device:
    """The device as answered to callers: never the credential hash; the tenant only to internal callers."""
    return Device(
        id=row.id, name=row.name, model=row.model, labels=row.labels or {}, groups=row.groups or [],
        online=row.online, last_seen_at=row.last_seen_at, agent_version=row.agent_version,
        created_at=row.created_at, updated_at=row.updated_at, credential=credential,
        tenant_id=row.tenant_id if with_tenant else "",
    )


def encode_page_token(after_id: str, group: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_id, "group": group}).encode()).decode()


def decode_page_token(token: str, group: str) -> str:
    """The id a page starts after; refuses a token that is malformed or was made for another filter."""
    if not token:
        return ""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, token_group = decoded["after"], decoded["group"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidArgument("invalid page_token") from None
    if not isinstance(after, str) or token_group != group:
        raise InvalidArgument("invalid page_token: it belongs to another query")
    return after


class Devices:
    def __init__(self, store: DeviceStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(self, principal: Principal, device: Device) -> Device:
        validate_id(device.id)
        values = editable_values(device, EDITABLE)
        credential = new_credential()
        now = self.clock.now()
        row = DeviceRow(
            tenant_id=principal.tenant_id, id=device.id, credential_hash=secret_hash(credential),
            created_at=now, updated_at=now, **{**values, "name": values["name"] or device.id},
        )
        if not await self.store.insert(row):
            raise AlreadyExists(f"device {device.id} already exists")
        return to_device(row, credential=credential)

    async def _row(self, principal: Principal, device_id: str) -> DeviceRow:
        row = await self.store.get(principal.tenant_id, device_id) if device_id else None
        if row is None:
            raise NotFound(f"device {device_id} not found")
        return row

    async def get(self, principal: Principal, device_id: str) -> Device:
        return to_device(await self._row(principal, device_id))

    async def list(self, principal: Principal, page_size: int = 0, page_token: str = "",
                   group: str = "") -> tuple[list[Device], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token, group)
        rows = await self.store.list(principal.tenant_id, group=group, after_id=after, limit=limit + 1)
        next_token = encode_page_token(rows[limit - 1].id, group) if len(rows) > limit else ""
        return [to_device(row) for row in rows[:limit]], next_token

    async def update(self, principal: Principal, device_id: str, patch: Device, paths: list[str]) -> Device:
        if patch.id and patch.id != device_id:
            raise InvalidArgument("a device's id cannot be changed")
        values = editable_values(patch, paths or EDITABLE)
        if "name" in values and not values["name"]:
            values["name"] = device_id
        row = await self.store.save(principal.tenant_id, device_id, {**values, "updated_at": self.clock.now()})
        if row is None:
            raise NotFound(f"device {device_id} not found")
        return to_device(row)

    async def delete(self, principal: Principal, device_id: str) -> None:
        if not device_id or not await self.store.delete(principal.tenant_id, device_id):
            raise NotFound(f"device {device_id} not found")

    async def resolve(self, principal: Principal, targets: DeviceTargets) -> ResolveTargetsResponse:
        """Explicit ids (in their order, missing ones reported) then the group's other devices, by id."""
        ids = list(dict.fromkeys(targets.device_ids))
        if len(ids) > MAX_TARGET_IDS:
            raise InvalidArgument(f"at most {MAX_TARGET_IDS} device ids")
        rows = await self.store.matching(principal.tenant_id, ids, targets.group) if ids or targets.group else []
        by_id = {row.id: row for row in rows}
        named = set(ids)
        ordered = [by_id[i] for i in ids if i in by_id] + [row for row in rows if row.id not in named]
        return ResolveTargetsResponse(
            devices=[to_device(row, with_tenant=True) for row in ordered],
            missing_device_ids=[i for i in ids if i not in by_id],
        )

    async def authenticate_agent(self, device_id: str, credential: str) -> Device:
        row = await self.store.by_credential(device_id, secret_hash(credential)) if device_id and credential else None
        if row is None:
            raise Unauthenticated("unknown device or wrong credential")
        return to_device(row, with_tenant=True)

    async def report_presence(self, changes: list[PresenceChange]) -> None:
        presence = []
        for change in changes:
            if not change.tenant_id or not change.device_id:
                raise InvalidArgument("every presence change needs tenant_id and device_id")
            seen_at = change.seen_at.ToDatetime(tzinfo=UTC) if change.HasField("seen_at") else self.clock.now()
            presence.append(Presence(change.tenant_id, change.device_id, change.online, change.agent_version, seen_at))
        await self.store.record_presence(presence)
