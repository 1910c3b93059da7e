"""Secrets: those handed to users and agents (generated once, stored only as a hash), and those a service
must read back (JWT signing keys, webhook secrets), stored encrypted.

Encryption at rest: AES-256-GCM (the `cryptography` package), an authenticated cipher, with a key
derived (HKDF-SHA256) from the installation's secret key. A sealed value reads
`jlenc:v1:<key id>:<base64url(nonce | ciphertext | tag)>` and is bound to what it is for (the
`purpose`, as associated data): a ciphertext copied into another column does not open. A value
without the prefix is a plaintext written by an older release: `open()` answers it as it is, and
each service seals such values at start (see the stores' `seal_*` methods).

Where the secret key comes from, first match wins:
1. `configure_secret_key(key)` (tests, embedding);
2. JOBLINE_SECRET_KEY (set it, the same, on every process of a deployment with replicas);
3. the file `<JOBLINE_DATA_DIR>/secret-key`, created (mode 0600) by the first process that needs it.
JOBLINE_SECRET_KEY_PREVIOUS (comma-separated) names retired keys that still open what they sealed:
rotate by moving the key there and setting a new JOBLINE_SECRET_KEY; values are sealed again with
the new key when written."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_KEY_ENV = "JOBLINE_SECRET_KEY"
PREVIOUS_KEYS_ENV = "JOBLINE_SECRET_KEY_PREVIOUS"
SECRET_KEY_FILE = "secret-key"
SEALED_PREFIX = "jlenc:v1:"
MIN_KEY_LEN = 16
NONCE_BYTES = 12


def new_secret(prefix: str) -> str:
    """A prefixed random secret with 240 bits of entropy (40 url-safe characters)."""
    return prefix + secrets.token_urlsafe(30)


def new_secrets(prefix: str, count: int) -> list[str]:
    """`count` secrets like new_secret's, from one draw of the system's randomness."""
    # 30 random bytes are 40 url-safe characters without padding, so the blocks encode independently.
    text = base64.urlsafe_b64encode(os.urandom(30 * count)).decode()
    return [prefix + text[i:i + 40] for i in range(0, len(text), 40)]


def secret_hash(secret: str) -> str:
    """What a store keeps of a secret. SHA-256 suffices: the secrets are long and random."""
    return hashlib.sha256(secret.encode()).hexdigest()


def read_or_create(path: Path, make=lambda: secrets.token_urlsafe(32), min_len: int = MIN_KEY_LEN) -> str:
    """The secret in `path`, creating it (0600, atomically: concurrent first starts agree) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(make())
            try:
                os.link(scratch, path)  # fails if another process won the race: theirs is kept
            except FileExistsError:
                pass
        finally:
            scratch.unlink(missing_ok=True)
    value = path.read_text().strip()
    if len(value) < min_len:
        raise RuntimeError(f"{path} holds no usable secret")
    return value


class SecretKeyError(Exception):
    """A sealed value this process cannot open: another installation's key, or tampered with."""


class SecretBox:
    """Seals and opens secrets with the installation's key (and retired keys, for opening only)."""

    def __init__(self, key: str, previous: Sequence[str] = ()) -> None:
        if len(key) < MIN_KEY_LEN:
            raise ValueError(f"a secret key needs at least {MIN_KEY_LEN} characters")
        derived = [_derive(k) for k in (key, *previous) if k]
        self._current = derived[0]
        self._keys = {kid: AESGCM(material) for kid, material in derived}

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(SEALED_PREFIX)

    def seal(self, plaintext: str, purpose: str) -> str:
        """`plaintext` encrypted for `purpose`; "" stays "" (no secret), a sealed value stays as it is."""
        if not plaintext or self.is_sealed(plaintext):
            return plaintext
        kid, _ = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[kid].encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{SEALED_PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, value: str, purpose: str) -> str:
        """The plaintext of a sealed value (a value written in clear by an older release: as it is)."""
        if not self.is_sealed(value):
            return value
        kid, _, body = value[len(SEALED_PREFIX):].partition(":")
        cipher = self._keys.get(kid)
        if cipher is None:
            raise SecretKeyError(f"a secret was sealed with key {kid}, which this process does not have "
                                 f"(set {SECRET_KEY_ENV}, or {PREVIOUS_KEYS_ENV} for a retired key)")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretKeyError(f"a secret sealed with key {kid} does not open: it was altered, "
                                 "or sealed for another purpose") from None

    def needs_sealing(self, value: str) -> bool:
        """Whether a stored value should be written again: in clear, or sealed with a retired key."""
        if not value:
            return False
        return not self.is_sealed(value) or not value[len(SEALED_PREFIX):].startswith(self._current[0] + ":")

    def reseal(self, value: str, purpose: str) -> str:
        return self.seal(self.open(value, purpose), purpose)


def _derive(key: str) -> tuple[str, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jobline secret box v1").derive(
        key.encode())
    return hashlib.sha256(material).hexdigest()[:8], material


_configured: str | None = None
_box: SecretBox | None = None


def configure_secret_key(key: str | None) -> None:
    """Sets (or, with None, clears) this process's secret key, overriding the environment and the file."""
    global _configured, _box
    if key is not None and len(key) < MIN_KEY_LEN:
        raise ValueError(f"a secret key needs at least {MIN_KEY_LEN} characters")
    _configured, _box = key, None


def secret_box() -> SecretBox:
    """This process's SecretBox (see the module doc for where its key comes from)."""
    global _box
    if _box is None:
        key = _configured or os.environ.get(SECRET_KEY_ENV, "").strip()
        if not key:
            from .config import data_dir  # lazily: data_dir() creates the directory

            key = read_or_create(data_dir() / SECRET_KEY_FILE)
        previous = [k.strip() for k in os.environ.get(PREVIOUS_KEYS_ENV, "").split(",") if k.strip()]
        _box = SecretBox(key, previous)
    return _box


async def scrubbing(session, is_postgres: bool) -> None:
    """Call first in a session that overwrites secrets stored in clear: on SQLite the overwritten bytes are
    zeroed instead of left in freed space (PostgreSQL's dead row versions go with VACUUM)."""
    if not is_postgres:
        from sqlalchemy import text

        await session.exec(text("PRAGMA secure_delete = ON"))


async def scrub_log(engine, is_postgres: bool) -> None:
    """After overwriting secrets stored in clear: on SQLite, copy the WAL into the database file and empty it,
    so the old page images (with the plaintext) are gone from the WAL too."""
    if not is_postgres:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
