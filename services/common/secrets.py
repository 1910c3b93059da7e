"""Secrets handed to users and agents: generated once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets


def new_secret(prefix: str) -> str:
    """A prefixed random secret with 240 bits of entropy (40 url-safe characters)."""
    return prefix + secrets.token_urlsafe(30)


def secret_hash(secret: str) -> str:
    """What a store keeps of a secret. SHA-256 suffices: the secrets are long and random."""
    return hashlib.sha256(secret.encode()).hexdigest()
