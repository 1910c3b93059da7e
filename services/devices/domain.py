"""Device rules: ids, validation, tenancy, agent credentials, target resolution and presence."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import uuid
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1.devices_pb2 import (AgentCredential, Device, DeviceGroup, DeviceSearch, DeviceTargets,
                                            EnrollDeviceRequest,
                                            EnrollmentToken, ReportPresenceRequest, ReportPresenceResponse,
                                            ResolveTargetsResponse)
from services.common.clock import Clock
from services.common.secrets import new_secret, secret_hash
from services.common.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                    Unauthenticated)

from . import query as search_language
from .store import DeviceGroupRow, DeviceRow, DeviceSearchRow, DeviceStore, EnrollmentTokenRow, Presence

log = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CREDENTIAL_PREFIX = "jld_"
ENROLLMENT_TOKEN_PREFIX = "jle_"
MAX_FACTS, MAX_FACT_KEY, MAX_FACT_VALUE = 64, 128, 1024
MAX_DESCRIPTION = 2048
EDITABLE = ("name", "model", "labels", "groups")
SEARCH_EDITABLE = ("name", "description", "query")
TEXT_LIMITS = {"name": 256, "model": 256}
MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE = 64, 128, 256
MAX_GROUPS, MAX_GROUP_LEN = 64, 128
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000
MAX_TARGET_IDS = 10_000
MAX_PICK_COUNT = 10_000
# Presence: a replica's lease when its report names none; how often leases are swept; after how long an
# online device no replica owns goes offline (checked every UNOWNED_SWEEP_EVERY sweeps: a full scan).
DEFAULT_PRESENCE_LEASE_SECS = 10
PRESENCE_SWEEP_SECS = 1.0
UNOWNED_PRESENCE_SECS = 120
UNOWNED_SWEEP_EVERY = 60


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
    device = Device(
        id=row.id, name=row.name, model=row.model, labels=row.labels or {}, groups=row.groups or [],
        online=row.online, last_seen_at=row.last_seen_at, agent_version=row.agent_version,
        created_at=row.created_at, updated_at=row.updated_at, facts=row.facts or {},
        credential_revoked_at=row.credential_revoked_at, enrollment_token_id=row.enrollment_token_id,
        number=row.number or 0,
    )
    if credential:  # optional fields: absent from the JSON unless set
        device.credential = credential
    if with_tenant:
        device.tenant_id = row.tenant_id
    return device


def to_group(row: DeviceGroupRow) -> DeviceGroup:
    return DeviceGroup(id=row.id, name=row.name, description=row.description, created_at=row.created_at,
                       updated_at=row.updated_at)


def to_search(row: DeviceSearchRow) -> DeviceSearch:
    return DeviceSearch(id=row.id, name=row.name, description=row.description, query=row.query,
                        created_at=row.created_at, updated_at=row.updated_at)


def search_values(search: DeviceSearch, fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The named editable fields of a saved search, validated (the query must parse), as column values."""
    values: dict[str, Any] = {}
    for field in fields:
        if field == "name":
            if len(search.name) > TEXT_LIMITS["name"]:
                raise InvalidArgument(f"name must be at most {TEXT_LIMITS['name']} characters")
            values["name"] = search.name
        elif field == "description":
            if len(search.description) > MAX_DESCRIPTION:
                raise InvalidArgument(f"description must be at most {MAX_DESCRIPTION} characters")
            values["description"] = search.description
        elif field == "query":
            if not search.query.strip():
                raise InvalidArgument("query is required")
            search_language.parse(search.query)  # its syntax errors name the position
            values["query"] = search.query
        else:
            raise InvalidArgument(f"{field!r} cannot be changed: update_mask paths are " + ", ".join(SEARCH_EDITABLE))
    return values


def to_token(row: EnrollmentTokenRow, token: str = "") -> EnrollmentToken:
    message = EnrollmentToken(id=row.id, description=row.description, group=row.group, max_uses=row.max_uses,
                              uses=row.uses, revoked=row.revoked, created_at=row.created_at)
    if row.expires_at is not None:
        message.expires_at.FromDatetime(row.expires_at)
    if token:
        message.token = token
    return message


def validate_group_id(group: str, what: str = "group") -> None:
    if not group.strip() or len(group) > MAX_GROUP_LEN or "/" in group:
        raise InvalidArgument(f"{what} must be 1-{MAX_GROUP_LEN} characters, not blank, without '/'")


def validate_facts(facts: dict[str, str]) -> dict[str, str]:
    if len(facts) > MAX_FACTS:
        raise InvalidArgument(f"at most {MAX_FACTS} facts")
    for key, value in facts.items():
        if not key or len(key) > MAX_FACT_KEY or len(value) > MAX_FACT_VALUE:
            raise InvalidArgument(f"fact keys must be 1-{MAX_FACT_KEY} characters, values at most {MAX_FACT_VALUE}")
    return dict(facts)


def encode_page_token(after_id: str, group: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_id, "group": group}).encode()).decode()


def filter_fingerprint(group: str, query: str = "", online: bool | None = None) -> str:
    """What a page token remembers of a list's filters (the group verbatim, for older tokens)."""
    if not query and online is None:
        return group
    digest = hashlib.sha256(json.dumps([group, query, online]).encode()).hexdigest()[:16]
    return f"{group}#{digest}"


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

    async def get(self, principal: Principal, device_id: str, number: int = 0) -> Device:
        if number:
            row = await self.store.get_by_number(principal.tenant_id, number)
            if row is None:
                raise NotFound(f"device number {number} not found")
            return to_device(row)
        return to_device(await self._row(principal, device_id))

    def _condition(self, query: str, dialect: str = "") -> ColumnElement[bool] | None:
        if not query:
            return None
        return search_language.compile_query(search_language.parse(query, dialect), DeviceRow,
                                             self.store.db.is_postgres)

    async def _saved_query(self, principal: Principal, search_id: str) -> str:
        """The query of the tenant's saved search, as it reads now."""
        row = await self.store.get_search(principal.tenant_id, search_id) if search_id else None
        if row is None:
            raise NotFound(f"saved search {search_id} not found")
        return row.query

    async def list(self, principal: Principal, page_size: int = 0, page_token: str = "",
                   group: str = "", query: str = "", online: bool | None = None, dialect: str = "",
                   offset: int = 0, include_counts: bool = False,
                   search_id: str = "") -> tuple[list[Device], str, tuple[int, int]]:
        """A page of devices, the next page's token, and (with include_counts) how many the tenant has
        and how many match the filters."""
        if page_size < 0 or offset < 0:
            raise InvalidArgument("page_size and offset must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = filter_fingerprint(group, (query if not dialect else f"{dialect}:{query}")
                                         + (f"\n#search:{search_id}" if search_id else ""), online)
        after = decode_page_token(page_token, fingerprint) if not offset else ""
        condition = self._condition(query, dialect)
        if search_id:
            saved = self._condition(await self._saved_query(principal, search_id))
            condition = saved if condition is None else and_(condition, saved)
        rows = await self.store.list(principal.tenant_id, group=group, after_id=after, limit=limit + 1,
                                     condition=condition, online=online, offset=offset)
        next_token = encode_page_token(rows[limit - 1].id, fingerprint) if len(rows) > limit else ""
        counts = (0, 0)
        if include_counts:
            counts = (await self.store.count(principal.tenant_id),
                      await self.store.count(principal.tenant_id, group=group, condition=condition, online=online))
        return [to_device(row) for row in rows[:limit]], next_token, counts

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

    async def resolve(self, principal: Principal, targets: DeviceTargets, pick_count: int = 1, *,
                      pool_members: bool = False, max_pool_members: int = 0) -> ResolveTargetsResponse:
        """Explicit ids (in their order, missing ones reported) then the other devices of the group or
        the query, by id; with any_available, one online device of the group / query instead of all
        (up to `pick_count` distinct ones, least recently picked first), or with `pool_members` every
        device it picks from but the named ones, online or not, none picked (up to `max_pool_members`,
        0: all)."""
        if not 1 <= pick_count <= MAX_PICK_COUNT:
            raise InvalidArgument(f"pick_count must be between 1 and {MAX_PICK_COUNT}")
        ids = list(dict.fromkeys(targets.device_ids))
        numbers = list(dict.fromkeys(targets.device_numbers))
        if len(ids) + len(numbers) > MAX_TARGET_IDS:
            raise InvalidArgument(f"at most {MAX_TARGET_IDS} device ids")
        condition = self._condition(targets.query, targets.query_dialect)
        if numbers:  # by number: like ids, in their order, missing ones reported
            found = {row.number: row for row in await self.store.matching(principal.tenant_id, [], "",
                                                                          device_numbers=numbers)}
            ids += [found[n].id for n in numbers if n in found and found[n].id not in ids]
            missing_numbers = [n for n in numbers if n not in found]
        else:
            missing_numbers = []
        if targets.saved_search_id:  # resolved now: the search as it reads at trigger time
            saved = self._condition(await self._saved_query(principal, targets.saved_search_id))
            condition = saved if condition is None else or_(condition, saved)
        if targets.device_ids_within_group:
            if not ids or not targets.group or targets.any_available or condition is not None:
                raise InvalidArgument("device_ids_within_group needs device_ids and a group, and no query "
                                      "or any_available")
            rows = await self.store.matching(principal.tenant_id, ids, "")
            outside = [row.id for row in rows if targets.group not in (row.groups or [])]
            if outside:
                raise FailedPrecondition(f"device {outside[0]} is not in device group {targets.group}")
        elif targets.any_available:
            if not targets.group and condition is None:
                raise InvalidArgument("any_available needs a group, a query or a saved search to pick from")
            rows = await self.store.matching(principal.tenant_id, ids, "") if ids else []
            if pool_members:  # the pool but the named devices (missing named ones are still reported)
                missing = [i for i in ids if i not in {row.id for row in rows}]
                pool = await self.store.candidates(principal.tenant_id, targets.group, condition,
                                                   exclude=[row.id for row in rows], limit=max(0, max_pool_members))
                return ResolveTargetsResponse(devices=[to_device(row, with_tenant=True) for row in pool],
                                              missing_device_ids=missing, missing_device_numbers=missing_numbers)
            picked = await self.store.pick_available(principal.tenant_id, targets.group, condition,
                                                     self.clock.now(), pick_count)
            if not picked:
                raise FailedPrecondition("no device of the targets is online")
            named = {row.id for row in rows}
            rows.extend(row for row in picked if row.id not in named)
        elif ids or targets.group or condition is not None:
            rows = await self.store.matching(principal.tenant_id, ids, targets.group, condition)
        else:
            rows = []
        by_id = {row.id: row for row in rows}
        named = set(ids)
        ordered = [by_id[i] for i in ids if i in by_id] + [row for row in rows if row.id not in named]
        return ResolveTargetsResponse(
            devices=[to_device(row, with_tenant=True) for row in ordered],
            missing_device_ids=[i for i in ids if i not in by_id],
            missing_device_numbers=missing_numbers,
        )

    # -- credentials -----------------------------------------------------------------------

    async def revoke_credential(self, principal: Principal, device_id: str) -> Device:
        await self._row(principal, device_id)
        now = self.clock.now()
        # Not the hash of any credential: nothing authenticates against it, and it stays unique.
        revoked = "revoked:" + secrets.token_hex(24)
        row = await self.store.save(principal.tenant_id, device_id, {
            "credential_hash": revoked, "credential_revoked_at": now, "updated_at": now}, credential=True)
        if row is None:
            raise NotFound(f"device {device_id} not found")
        return to_device(row)

    async def rotate_credential(self, principal: Principal, device_id: str) -> Device:
        await self._row(principal, device_id)
        credential = new_credential()
        row = await self.store.save(principal.tenant_id, device_id, {
            "credential_hash": secret_hash(credential), "credential_revoked_at": None,
            "updated_at": self.clock.now()}, credential=True)
        if row is None:
            raise NotFound(f"device {device_id} not found")
        return to_device(row, credential=credential)

    async def validate_agents(self, agents: list[AgentCredential]) -> tuple[list[AgentCredential], int]:
        """The agents whose credential is no longer their device's (revoked, rotated, device deleted), and
        the credential revision they were checked at (read before them)."""
        revision, current = await self.store.credential_hashes([(a.tenant_id, a.device_id) for a in agents])
        return [a for a in agents if current.get((a.tenant_id, a.device_id)) != a.credential_sha256], revision

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, principal: Principal, group: DeviceGroup) -> DeviceGroup:
        validate_group_id(group.id, "the group id")
        self._check_group_text(group)
        now = self.clock.now()
        row = DeviceGroupRow(tenant_id=principal.tenant_id, id=group.id, name=group.name or group.id,
                             description=group.description, created_at=now, updated_at=now)
        if not await self.store.insert_group(row):
            raise AlreadyExists(f"device group {group.id} already exists")
        return to_group(row)

    @staticmethod
    def _check_group_text(group: DeviceGroup) -> None:
        if len(group.name) > TEXT_LIMITS["name"]:
            raise InvalidArgument(f"name must be at most {TEXT_LIMITS['name']} characters")
        if len(group.description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"description must be at most {MAX_DESCRIPTION} characters")

    async def get_group(self, principal: Principal, group_id: str) -> DeviceGroup:
        row = await self.store.get_group(principal.tenant_id, group_id) if group_id else None
        if row is None:
            raise NotFound(f"device group {group_id} not found")
        return to_group(row)

    async def list_groups(self, principal: Principal, page_size: int, page_token: str) -> tuple[list[DeviceGroup], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token, "#groups")
        rows = await self.store.list_groups(principal.tenant_id, after, limit + 1)
        next_token = encode_page_token(rows[limit - 1].id, "#groups") if len(rows) > limit else ""
        return [to_group(row) for row in rows[:limit]], next_token

    async def update_group(self, principal: Principal, group_id: str, patch: DeviceGroup,
                           paths: list[str]) -> DeviceGroup:
        if patch.id and patch.id != group_id:
            raise InvalidArgument("a group's id cannot be changed")
        paths = paths or ["name", "description"]
        if any(path not in ("name", "description") for path in paths):
            raise InvalidArgument("update_mask paths are name, description")
        self._check_group_text(patch)
        values: dict[str, Any] = {path: getattr(patch, path) for path in paths}
        if "name" in values and not values["name"]:
            values["name"] = group_id
        row = await self.store.save_group(principal.tenant_id, group_id, {**values, "updated_at": self.clock.now()})
        if row is None:
            raise NotFound(f"device group {group_id} not found")
        return to_group(row)

    async def delete_group(self, principal: Principal, group_id: str) -> None:
        if not group_id or not await self.store.delete_group(principal.tenant_id, group_id):
            raise NotFound(f"device group {group_id} not found")

    # -- saved searches --------------------------------------------------------------------

    async def create_search(self, principal: Principal, search: DeviceSearch) -> DeviceSearch:
        validate_group_id(search.id, "the saved search id")
        values = search_values(search, SEARCH_EDITABLE)
        now = self.clock.now()
        row = DeviceSearchRow(tenant_id=principal.tenant_id, id=search.id, created_at=now, updated_at=now,
                              **{**values, "name": values["name"] or search.id})
        if not await self.store.insert_search(row):
            raise AlreadyExists(f"saved search {search.id} already exists")
        return to_search(row)

    async def get_search(self, principal: Principal, search_id: str) -> DeviceSearch:
        row = await self.store.get_search(principal.tenant_id, search_id) if search_id else None
        if row is None:
            raise NotFound(f"saved search {search_id} not found")
        return to_search(row)

    async def list_searches(self, principal: Principal, page_size: int,
                            page_token: str) -> tuple[list[DeviceSearch], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token, "#searches")
        rows = await self.store.list_searches(principal.tenant_id, after, limit + 1)
        next_token = encode_page_token(rows[limit - 1].id, "#searches") if len(rows) > limit else ""
        return [to_search(row) for row in rows[:limit]], next_token

    async def update_search(self, principal: Principal, search_id: str, patch: DeviceSearch,
                            paths: list[str]) -> DeviceSearch:
        if patch.id and patch.id != search_id:
            raise InvalidArgument("a saved search's id cannot be changed")
        values = search_values(patch, paths or SEARCH_EDITABLE)
        if "name" in values and not values["name"]:
            values["name"] = search_id
        row = await self.store.save_search(principal.tenant_id, search_id, {**values, "updated_at": self.clock.now()}) \
            if search_id else None
        if row is None:
            raise NotFound(f"saved search {search_id} not found")
        return to_search(row)

    async def delete_search(self, principal: Principal, search_id: str) -> None:
        """Jobs that target the search fail to trigger (saved search not found) until it exists again."""
        if not search_id or not await self.store.delete_search(principal.tenant_id, search_id):
            raise NotFound(f"saved search {search_id} not found")

    # -- enrolment -------------------------------------------------------------------------

    async def create_token(self, principal: Principal, token: EnrollmentToken) -> EnrollmentToken:
        if token.group:
            validate_group_id(token.group)
        if token.max_uses < 0:
            raise InvalidArgument("max_uses must not be negative")
        if token.ttl_secs < 0:
            raise InvalidArgument("ttl_secs must not be negative")
        if len(token.description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"description must be at most {MAX_DESCRIPTION} characters")
        now = self.clock.now()
        expires_at = None
        if token.HasField("expires_at"):
            if token.ttl_secs:
                raise InvalidArgument("give expires_at or ttl_secs, not both")
            expires_at = token.expires_at.ToDatetime(tzinfo=UTC)
            if expires_at <= now:
                raise InvalidArgument("expires_at must be in the future")
        elif token.ttl_secs:
            expires_at = now + timedelta(seconds=token.ttl_secs)
        secret = new_secret(ENROLLMENT_TOKEN_PREFIX)
        row = EnrollmentTokenRow(id=str(uuid.uuid4()), tenant_id=principal.tenant_id, token_hash=secret_hash(secret),
                                 description=token.description, group=token.group, expires_at=expires_at,
                                 max_uses=token.max_uses, created_at=now)
        await self.store.insert_token(row)
        return to_token(row, secret)

    async def list_tokens(self, principal: Principal, page_size: int,
                          page_token: str) -> tuple[list[EnrollmentToken], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token, "#tokens")
        rows = await self.store.list_tokens(principal.tenant_id, after, limit + 1)
        next_token = encode_page_token(rows[limit - 1].id, "#tokens") if len(rows) > limit else ""
        return [to_token(row) for row in rows[:limit]], next_token

    async def revoke_token(self, principal: Principal, token_id: str) -> EnrollmentToken:
        row = await self.store.revoke_token(principal.tenant_id, token_id) if token_id else None
        if row is None:
            raise NotFound(f"enrolment token {token_id} not found")
        return to_token(row)

    async def enroll(self, request: EnrollDeviceRequest) -> Device:
        """Registers a new device with an enrolment token; answers it with its credential and tenant."""
        if not request.token:
            raise Unauthenticated("an enrolment token is required")
        validate_id(request.device_id)
        if len(request.name) > TEXT_LIMITS["name"]:
            raise InvalidArgument(f"name must be at most {TEXT_LIMITS['name']} characters")
        facts = validate_facts(dict(request.facts))
        credential = new_credential()
        now = self.clock.now()

        def make_device(token: EnrollmentTokenRow) -> DeviceRow:
            return DeviceRow(tenant_id=token.tenant_id, id=request.device_id, name=request.name or request.device_id,
                             groups=[token.group] if token.group else [], labels={}, facts=facts,
                             agent_version=request.agent_version[:128], credential_hash=secret_hash(credential),
                             enrollment_token_id=token.id, created_at=now, updated_at=now)

        outcome, row = await self.store.enroll(secret_hash(request.token), now, make_device)
        if outcome == "invalid":
            raise Unauthenticated("the enrolment token is unknown, expired, used up or revoked")
        if outcome == "exists" or row is None:
            raise AlreadyExists(f"device {request.device_id} already exists")
        return to_device(row, with_tenant=True, credential=credential)

    async def authenticate_agent(self, device_id: str, credential: str) -> Device:
        row = await self.store.by_credential(device_id, secret_hash(credential)) if device_id and credential else None
        if row is None:
            raise Unauthenticated("unknown device or wrong credential")
        return to_device(row, with_tenant=True)

    async def report_presence(self, request: ReportPresenceRequest) -> ReportPresenceResponse:
        """A runs replica's presence changes, and the renewal of its lease (see DeviceStore.record_presence)."""
        presence = []
        for change in request.changes:
            if not change.tenant_id or not change.device_id:
                raise InvalidArgument("every presence change needs tenant_id and device_id")
            seen_at = change.seen_at.ToDatetime(tzinfo=UTC) if change.HasField("seen_at") else self.clock.now()
            facts = validate_facts(dict(change.facts)) if change.facts else None
            presence.append(Presence(change.tenant_id, change.device_id, change.online, change.agent_version, seen_at,
                                     facts, change.stream_opened))
        if len(request.replica_id) > 64:
            raise InvalidArgument("replica_id must be at most 64 characters")
        if request.lease_secs < 0:
            raise InvalidArgument("lease_secs must not be negative")
        now = self.clock.now()
        lease_until = now + timedelta(seconds=request.lease_secs or DEFAULT_PRESENCE_LEASE_SECS)
        resync = await self.store.record_presence(presence, replica_id=request.replica_id, lease_until=lease_until,
                                                  now=now, release=request.release)
        return ReportPresenceResponse(resync=resync)

    async def sweep_presence(self, unowned: bool = False) -> int:
        """Devices of crashed replicas (lease run out) go offline; with `unowned`, also online devices no
        replica owns that were not seen for UNOWNED_PRESENCE_SECS (left by older releases)."""
        now = self.clock.now()
        return await self.store.sweep_presence(
            now, now - timedelta(seconds=UNOWNED_PRESENCE_SECS) if unowned else None)

    async def run_presence_sweeper(self, interval: float = PRESENCE_SWEEP_SECS) -> None:
        """Forever: sweep every `interval` seconds (the unowned devices every UNOWNED_SWEEP_EVERY sweeps)."""
        count = 0
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.sweep_presence(unowned=count % UNOWNED_SWEEP_EVERY == 0)
                if swept:
                    log.info("%d devices went offline: the runs replica holding their streams stopped reporting",
                             swept)
            except Exception:
                log.warning("presence sweep failed", exc_info=True)
            count += 1
