"""Device pools: where a run that may execute on "any one available device" waits.

A job whose targets say `any_available` (a group, a query or a saved search; e.g. a drone mission
sent to a device group) does not pick its device when it is triggered: its run is queued on the
pool of those targets, and the first device of the pool with free capacity takes it, on whichever
runs replica holds that device's stream. The run's `target_key` is the pool's key while it waits
(`@<tenant>/<digest of the targets>`, unlike every `<tenant>/<device>` key), and its
`pool_key` remembers the pool: the claim sets `target_key` and `device_id` to the device that took
it, and every way back to the queue (a requeue, a retry, a replay) returns it to the pool, so a
device that goes offline or stays busy never holds it back.

Which devices are in a pool is asked of the devices service (ResolveTargets with pool_members: every
device of the group matching the query, online or not) and kept for MEMBERS_SECS: a device that joins or leaves a group is seen within that
bound."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.devices.v1.devices_pb2 import DeviceTargets
from services.common.principal import READ

log = logging.getLogger(__name__)

PREFIX = "@"  # no tenant id starts with it: a pool key is never a device's
MEMBERS_SECS = 2.0  # how long a pool's membership is reused


def pool_key(tenant_id: str, targets: DeviceTargets) -> str:
    """The pool of these targets' group / query / saved search (the named devices are not part of it)."""
    digest = hashlib.sha256(pool_targets(targets).SerializeToString(deterministic=True)).hexdigest()[:32]
    return f"{PREFIX}{tenant_id}/{digest}"


def is_pool(key: str) -> bool:
    return key.startswith(PREFIX)


def is_pooled(targets: DeviceTargets) -> bool:
    """Whether a run of these targets waits in a pool (any one available device of a group / query)."""
    return targets.any_available and bool(targets.group or targets.query or targets.saved_search_id)


def pool_targets(targets: DeviceTargets) -> DeviceTargets:
    """The pool's part of the targets: any available device of the group that matches the query (or the
    saved search) but the named devices, which have runs of their own (ResolveTargets with pool_members
    answers its devices)."""
    return DeviceTargets(device_ids=targets.device_ids, device_numbers=targets.device_numbers,
                         group=targets.group, query=targets.query, query_dialect=targets.query_dialect,
                         saved_search_id=targets.saved_search_id, any_available=True)


def tenant_of(key: str) -> str:
    return key[len(PREFIX):].split("/", 1)[0]


Resolve = Callable[[Principal, DeviceTargets], Awaitable[list[str]]]


class PoolMembers:
    """The device ids of each pool, from `resolve`, reused for MEMBERS_SECS. (Its one caller, the hub's
    dispatch, asks the pools of a round together, each once: no two asks of one pool overlap.)"""

    def __init__(self, resolve: Resolve, secs: float = MEMBERS_SECS) -> None:
        self._resolve = resolve
        self._secs = secs
        self._known: dict[str, tuple[frozenset[str], float]] = {}

    def cached(self, key: str) -> frozenset[str] | None:
        known = self._known.get(key)
        return known[0] if known is not None and known[1] > asyncio.get_running_loop().time() else None

    async def of(self, key: str, targets: DeviceTargets) -> frozenset[str]:
        members = self.cached(key)
        if members is not None:
            return members
        reader = Principal(tenant_id=tenant_of(key), subject_id="runs", subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT,
                           subject_name="runs", scopes=[READ])
        try:
            members = frozenset(await self._resolve(reader, pool_targets(targets)))
        except Exception as error:  # a deleted group, the devices service away: no one, for now
            log.warning("the devices of pool %s could not be resolved: %s", key, error)
            members = frozenset()
        now = asyncio.get_running_loop().time()
        if len(self._known) >= 10_000:
            self._known = {k: v for k, v in self._known.items() if v[1] > now}
        self._known[key] = (members, now + self._secs)
        return members
