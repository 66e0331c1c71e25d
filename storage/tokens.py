"""Access tokens: random opaque strings; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import time

from storage.models import AccessToken


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def issue(client_id: str, scope: str, lifetime: int) -> tuple[str, int]:
    """Create and store a new access token; returns (token, expires_in)."""
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    AccessToken.insert(token_hash=token_hash(token), client_id=client_id, scope=scope,
                       issued_at=now, expires_at=now + lifetime).execute()
    return token, lifetime


def find(token: str) -> AccessToken | None:
    return AccessToken.get_or_none(AccessToken.token_hash == token_hash(token))
