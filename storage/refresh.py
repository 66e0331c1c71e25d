"""Refresh tokens (RFC 6749 §6, OAuth 2.0 Security BCP §4.14): random, stored hashed, rotated on use.

Every refresh token belongs to a family: the grant_id of the authorization code it descends from,
shared by every access and refresh token issued from that code. A use rotates the token: one
conditional UPDATE moves it from `active` to `rotated`, so of two concurrent uses on any number of
workers or nodes exactly one wins. Presenting a rotated token again (a replay, or the loser of
such a race) revokes the whole family.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import peewee

from storage.codes import revoke_grant
from storage.hashing import sha256_hex as token_hash
from storage.models import RefreshToken
from storage.purge import purge_all, purge_expired

ACTIVE, ROTATED, REVOKED = "active", "rotated", "revoked"


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token was issued for."""

    token_hash: str
    grant_id: str
    client_id: str
    user_sub: str
    scopes: tuple[str, ...]
    auth_time: int
    issued_at: int
    expires_at: int
    state: str
    jkt: str | None = None            # RFC 9449 §5: usable with a proof of this key only
    resources: tuple[str, ...] = ()   # RFC 8707: what the grant may address

    def active(self, now: int | None = None) -> bool:
        return self.state == ACTIVE and self.expires_at > (int(time.time()) if now is None else now)


def issue(*, grant_id: str, client_id: str, user_sub: str, scopes: tuple[str, ...], auth_time: int,
          lifetime: int, jkt: str | None = None, resources: tuple[str, ...] = ()) -> str:
    """Store a new active refresh token in the family `grant_id`; returns it (256 random bits)."""
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    RefreshToken.insert(token_hash=token_hash(token), grant_id=grant_id, client_id=client_id, user_sub=user_sub,
                        scope=" ".join(scopes), auth_time=auth_time, issued_at=now, expires_at=now + lifetime,
                        state=ACTIVE, jkt=jkt, resources=" ".join(resources) or None).execute()
    return token


def find(token: str) -> RefreshGrant | None:
    """The token's record whatever its state, or None when it is unknown."""
    if not token or len(token) > 512:
        return None
    row = RefreshToken.get_or_none(RefreshToken.token_hash == token_hash(token))
    if row is None:
        return None
    return RefreshGrant(row.token_hash, row.grant_id, row.client_id, row.user_sub, tuple(row.scope.split()),
                        row.auth_time, row.issued_at, row.expires_at, row.state, row.jkt,
                        tuple((row.resources or "").split()))


def rotate(hashed: str) -> bool:
    """Mark the token used: True for the one caller that moved it from active to rotated."""
    return (RefreshToken.update(state=ROTATED)
            .where((RefreshToken.token_hash == hashed) & (RefreshToken.state == ACTIVE))
            .execute()) == 1


def revoke_family(grant_id: str) -> None:
    """Revoke every refresh and access token of the family (RFC 7009 §2.1, Security BCP §4.14.2)."""
    revoke_grant(grant_id)


def revoke(token: str, client_id: str) -> bool:
    """RFC 7009 §2.1: the client's own refresh token, and with it every token of its grant."""
    found = find(token)
    if found is None or found.client_id != client_id:
        return False
    revoke_family(found.grant_id)
    return True


def purge(db: peewee.Database, now: int | None = None, limit: int = 500) -> int:
    """One batch of expired refresh tokens (rotated ones are kept until then, to detect replays)."""
    return purge_expired(db, RefreshToken, RefreshToken.expires_at, int(time.time()) if now is None else now, limit)


def purge_every(db: peewee.Database, now: int | None = None) -> int:
    """Every expired refresh token, in small batches."""
    return purge_all(db, RefreshToken, RefreshToken.expires_at, int(time.time()) if now is None else now)
