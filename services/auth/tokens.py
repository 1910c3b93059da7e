"""JWTs (HS256) signed with rotating keys kept in the auth database, identified by `kid`.

The newest unretired key signs. A key retires after SIGNING_KEY_LIFETIME (or when an operator
rotates), and keeps verifying until every token it signed has expired (retirement + TOKEN_TTL).
Replicas share the keys through the database: a `kid` this replica does not know is looked up.
The keys are stored encrypted with the installation's secret key (services.common.secrets).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt

from services.common.clock import Clock
from services.common.errors import Unauthenticated
from services.common.secrets import SecretBox, secret_box

from .store import AuthStore, SigningKeyRow

ALGORITHM = "HS256"
ISSUER = "jobline-auth"
AUDIENCE = "jobline"
TOKEN_TTL = timedelta(hours=1)
SIGNING_KEY_LIFETIME = timedelta(days=1)
MAX_TOKEN_LENGTH = 8192
SIGNING_KEY_PURPOSE = "auth.signing_key"


def looks_like_jwt(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 3 and text.startswith("eyJ") and all(parts)


class SigningKeys:
    """Signing keys are stored sealed (services.common.secrets); their plaintext lives only in memory."""

    def __init__(self, store: AuthStore, clock: Clock, box: SecretBox | None = None) -> None:
        self.store = store
        self.clock = clock
        self.box = box or secret_box()
        self._keys: dict[str, SigningKeyRow] = {}
        self._plain: dict[str, bytes] = {}

    async def seal_stored(self) -> int:
        """Seals the signing keys an older release stored in clear (or with a retired secret key); answers how many."""
        return await self.store.rewrite_signing_secrets(
            lambda secret: self.box.reseal(secret, SIGNING_KEY_PURPOSE) if self.box.needs_sealing(secret) else None)

    def _secret(self, row: SigningKeyRow) -> bytes:
        plain = self._plain.get(row.kid)
        if plain is None:
            plain = self._plain[row.kid] = base64.urlsafe_b64decode(
                self.box.open(row.secret, SIGNING_KEY_PURPOSE).encode())
        return plain

    async def _refresh(self) -> list[SigningKeyRow]:
        rows = await self.store.signing_keys(self.clock.now())
        self._keys = {row.kid: row for row in rows}
        return rows

    async def current(self) -> SigningKeyRow:
        now = self.clock.now()
        for row in sorted(self._keys.values(), key=lambda r: r.created_at, reverse=True):
            if row.retires_at > now:
                return row
        for row in await self._refresh():
            if row.retires_at > now:
                return row
        return await self.rotate()

    async def rotate(self) -> SigningKeyRow:
        """Retires the signing keys (they keep verifying their tokens) and starts a new one."""
        now = self.clock.now()
        await self.store.retire_signing_keys(now, now + TOKEN_TTL)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        row = SigningKeyRow(kid=uuid.uuid4().hex, algorithm=ALGORITHM,
                            secret=self.box.seal(secret, SIGNING_KEY_PURPOSE),
                            created_at=now, retires_at=now + SIGNING_KEY_LIFETIME,
                            verify_until=now + SIGNING_KEY_LIFETIME + TOKEN_TTL)
        await self.store.add(row)
        await self._refresh()
        return row

    async def _verifying(self, kid: str) -> SigningKeyRow | None:
        row = self._keys.get(kid)
        if row is None:
            await self._refresh()
            row = self._keys.get(kid)
        if row is None or row.verify_until <= self.clock.now():
            return None
        return row

    async def sign(self, claims: dict[str, Any], ttl: timedelta = TOKEN_TTL) -> tuple[str, datetime]:
        key = await self.current()
        now = self.clock.now()
        expires = now + ttl
        body = {**claims, "iss": ISSUER, "aud": AUDIENCE, "iat": int(now.timestamp()),
                "nbf": int(now.timestamp()), "exp": int(expires.timestamp()), "jti": uuid.uuid4().hex}
        token = jwt.encode(body, self._secret(key), algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, expires

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this service signed and that has not expired; else Unauthenticated."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("invalid token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise Unauthenticated("invalid token")
        key = await self._verifying(header["kid"])
        if key is None:
            raise Unauthenticated("invalid token")
        try:
            # The clock is injectable: expiry is checked against it, not against time.time().
            claims = jwt.decode(token, self._secret(key), algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                         "require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self.clock.now().timestamp():
            raise Unauthenticated("token expired")
        return claims

