"""Who is calling: an API key, a JWT or a login + personal access token, checked by the auth service,
cached for a few seconds.

Every surface uses the same steps: `credential_request(headers)` finds the credential (X-API-Key,
`Authorization: Bearer <JWT or API key>`, `Authorization: Basic login:token`), `Authenticator` turns
it into a `Principal` (raising `Unauthenticated`, or `RateLimited` for a source that failed too
often), `require_scope` checks the scope (raising `PermissionDenied`), and `to_metadata(principal)`
carries it to the services. Each surface renders those errors in its own shape.

Revocation is effective everywhere within the cache bound, JOBLINE_AUTH_CACHE_SECS (default 5 s),
and at once on the gateway that served the revocation (`Authenticator.forget`). Within that bound every
request of a credential is answered from the cache: one call to the auth service per credential and
gateway every JOBLINE_AUTH_CACHE_SECS, however many requests arrive together when the entry is cold.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import grpc

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.auth.v1.auth_pb2 import Principal
from services.common.channels import Channels
from services.common.errors import ResourceExhausted, Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE, require_scope

MAX_KEY_LENGTH = 4096
# The client address of the request being served (set by the app's ClientAddressMiddleware).
client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="")
# Answers of the auth service that mean "this key is no good" (cached like a success).
REFUSALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                      grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})


def credential(headers: Mapping[str, str]) -> str | None:
    """The API key of `Authorization: Bearer <key>`, else of `X-API-Key: <key>`."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def credential_request(headers: Mapping[str, str]) -> auth_pb2.AuthenticateRequest | None:
    """The credential a request presents, as the auth service's request; None when there is none.

    `Authorization: Bearer <JWT or API key>`, `Authorization: Basic base64(login:token)`, `X-API-Key`."""
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        if value.startswith("eyJ") and value.count(".") == 2:  # a JWT (its header is base64 '{"')
            return auth_pb2.AuthenticateRequest(bearer_token=value)
        return auth_pb2.AuthenticateRequest(api_key=value)
    if scheme.lower() == "basic" and value:
        try:
            login, colon, token = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            login, colon, token = "", "", ""
        if colon and login and token:
            return auth_pb2.AuthenticateRequest(basic=auth_pb2.BasicCredential(login=login, token=token))
    key = headers.get("x-api-key", "").strip()
    return auth_pb2.AuthenticateRequest(api_key=key) if key else None


def scope_for(http_method: str, path: str) -> str:
    """Reading needs READ; triggering TRIGGER; any other change WRITE (ADMIN passes all)."""
    if http_method in ("GET", "HEAD"):
        return READ
    if path.endswith(("/trigger", "/trigger/bulk")):
        return TRIGGER
    return WRITE


class RateLimited(ResourceExhausted):
    """Too many failed authentications from one source (HTTP 429, with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FailureLimiter:
    """Failed authentications per source address: slowed, then refused, without touching other sources.

    Each failure adds 1 to the source's score, which halves every `half_life` seconds. From `slow_after`
    on, each further failure is answered after a delay that doubles (at most `max_delay`); from
    `refuse_after` on, the source's requests are refused (429) until the score decays below it. At most
    `max_sources` sources are remembered (least recently failed dropped first)."""

    def __init__(self, *, slow_after: float = 5, refuse_after: float = 20, half_life: float = 60.0,
                 max_delay: float = 2.0, max_sources: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slow_after = slow_after
        self.refuse_after = refuse_after
        self.half_life = half_life
        self.max_delay = max_delay
        self.max_sources = max_sources
        self._clock = clock
        self._scores: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (score, at)

    def score(self, source: str) -> float:
        found = self._scores.get(source)
        if found is None:
            return 0.0
        score, at = found
        return score * 0.5 ** ((self._clock() - at) / self.half_life)

    def check(self, source: str) -> None:
        """Raises RateLimited while `source` is over the refusal threshold."""
        score = self.score(source)
        if source and score >= self.refuse_after:
            wait = self.half_life * math.log2(score / self.refuse_after) if score > self.refuse_after else 1.0
            raise RateLimited("too many failed authentication attempts; retry later", max(1, math.ceil(wait)))

    def failed(self, source: str) -> float:
        """Records a failure; answers how long to hold the answer back."""
        if not source:
            return 0.0
        score = self.score(source) + 1
        self._scores[source] = (score, self._clock())
        self._scores.move_to_end(source)
        while len(self._scores) > self.max_sources:
            self._scores.popitem(last=False)
        if score <= self.slow_after:
            return 0.0
        return min(self.max_delay, 0.05 * 2 ** (score - self.slow_after))


class Authenticator:
    """Calls AuthService.Authenticate, remembering answers (refusals too) for `ttl` seconds.

    The cache is keyed by a SHA-256 of the credential, never the credential, and holds at most
    `max_entries` answers, dropping the least recently used. Concurrent misses of one credential share
    one question to the auth service. Failed attempts are counted per client address by `limiter`."""

    def __init__(
        self,
        channels: Channels,
        addr: str,
        ttl: float,
        *,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self._channels = channels
        self._addr = addr
        self._ttl = ttl
        self._max_entries = max_entries
        self._timeout = timeout
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Principal | str]] = OrderedDict()
        self._asking: dict[bytes, asyncio.Task[Principal | str]] = {}
        self.limiter = limiter or FailureLimiter()

    async def authorize(self, headers: Mapping[str, str], scope: str) -> Principal:
        """The caller's principal, if it holds `scope`; raises Unauthenticated / PermissionDenied / RateLimited."""
        principal = await self.authenticate_request(credential_request(headers))
        require_scope(principal, scope)
        return principal

    async def authenticate(self, key: str | None) -> Principal:
        """The principal of an API key (as presented in X-API-Key)."""
        return await self.authenticate_request(auth_pb2.AuthenticateRequest(api_key=key) if key else None)

    async def authenticate_request(self, request: auth_pb2.AuthenticateRequest | None) -> Principal:
        source = client_address.get()
        self.limiter.check(source)
        if request is None:
            raise Unauthenticated("missing API key")
        if request.ByteSize() > MAX_KEY_LENGTH:
            return await self._refuse(source, "invalid API key")
        digest = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(digest)
            answer = cached[1]
        else:
            answer = await self._answer(digest, request, now + self._ttl)
        if isinstance(answer, str):
            return await self._refuse(source, answer)
        return answer

    async def _refuse(self, source: str, reason: str) -> Principal:
        delay = self.limiter.failed(source)
        if delay > 0:
            await asyncio.sleep(delay)
        raise Unauthenticated(reason)

    def forget(self, credential_id: str) -> int:
        """Drops the cached answers for a credential (revoked or rotated here); answers how many."""
        stale = [digest for digest, (_, answer) in self._cache.items()
                 if isinstance(answer, Principal) and answer.credential_id == credential_id]
        for digest in stale:
            del self._cache[digest]
        return len(stale)

    async def _answer(self, digest: bytes, request: auth_pb2.AuthenticateRequest, expires: float) -> Principal | str:
        """The auth service's answer, asked once for every concurrent request of the same credential (the
        question goes on, and its answer is cached, even if the request that asked it goes away)."""
        asking = self._asking.get(digest)
        if asking is None:
            asking = self._asking[digest] = asyncio.ensure_future(self._ask_and_remember(digest, request, expires))
            asking.add_done_callback(lambda done: self._asked(digest, done))
        return await asyncio.shield(asking)

    async def _ask_and_remember(self, digest: bytes, request: auth_pb2.AuthenticateRequest,
                                expires: float) -> Principal | str:
        answer = await self._ask(request)
        self._remember(digest, expires, answer)
        return answer

    def _asked(self, digest: bytes, done: asyncio.Task[Principal | str]) -> None:
        self._asking.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: raised to the requests still waiting, if any

    async def _ask(self, request: auth_pb2.AuthenticateRequest) -> Principal | str:
        """The principal, or why the credential is refused."""
        stub = self._channels.get(self._addr).cached(auth_pb2_grpc.AuthServiceStub, auth_pb2_grpc.AuthServiceStub)
        try:
            reply = await stub.Authenticate(request, timeout=self._timeout)
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
