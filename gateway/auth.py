"""Who is calling: an API key, checked by the auth service, cached for a few seconds.

Every surface uses the same steps: `credential(headers)` finds the key, `Authenticator`
turns it into a `Principal` (raising `Unauthenticated`), `require_scope` checks the scope
(raising `PermissionDenied`), and `to_metadata(principal)` carries it to the services. Each
surface renders those errors in its own shape.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import grpc

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.auth.v1.auth_pb2 import Principal
from services.common.channels import Channels
from services.common.errors import Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE, require_scope

MAX_KEY_LENGTH = 4096
# Answers of the auth service that mean "this key is no good" (cached like a success).
REFUSALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                      grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})


def credential(headers: Mapping[str, str]) -> str | None:
    """The API key of `Authorization: Bearer <key>`, else of `X-API-Key: <key>`."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def scope_for(http_method: str, path: str) -> str:
    """Reading needs READ; triggering TRIGGER; any other change WRITE (ADMIN passes all)."""
    if http_method in ("GET", "HEAD"):
        return READ
    if path.endswith(("/trigger", "/trigger/bulk")):
        return TRIGGER
    return WRITE


class Authenticator:
    """Calls AuthService.Authenticate, remembering answers (refusals too) for `ttl` seconds.

    The cache is keyed by a SHA-256 of the key, never the key, and holds at most `max_entries`
    answers, dropping the least recently used."""

    def __init__(
        self,
        channels: Channels,
        addr: str,
        ttl: float,
        *,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channels = channels
        self._addr = addr
        self._ttl = ttl
        self._max_entries = max_entries
        self._timeout = timeout
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Principal | str]] = OrderedDict()

    async def authorize(self, headers: Mapping[str, str], scope: str) -> Principal:
        """The caller's principal, if it holds `scope`; raises Unauthenticated / PermissionDenied."""
        principal = await self.authenticate(credential(headers))
        require_scope(principal, scope)
        return principal

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthenticated("missing API key")
        if len(key) > MAX_KEY_LENGTH:
            raise Unauthenticated("invalid API key")
        digest = hashlib.sha256(key.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(digest)
            answer = cached[1]
        else:
            answer = await self._ask(key)
            self._remember(digest, now + self._ttl, answer)
        if isinstance(answer, str):
            raise Unauthenticated(answer)
        return answer

    async def _ask(self, key: str) -> Principal | str:
        """The principal, or why the key is refused."""
        stub = auth_pb2_grpc.AuthServiceStub(self._channels.get(self._addr))
        try:
            reply = await stub.Authenticate(auth_pb2.AuthenticateRequest(api_key=key), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in REFUSALS:
                return error.details() or "invalid API key"
            raise
        if not reply.principal.tenant_id:
            return "invalid API key"
        return reply.principal

    def _remember(self, digest: bytes, expires: float, answer: Principal | str) -> None:
        if self._ttl <= 0:
            return
        self._cache[digest] = (expires, answer)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
