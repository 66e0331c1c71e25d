"""Access tokens: random opaque strings; only their SHA-256 is stored, so a leaked database
reveals no usable token."""

from __future__ import annotations

import secrets
import time

import peewee

from storage import codes, refresh
from storage.hashing import sha256_hex as token_hash
from storage.models import AccessToken, AuthorizationCode, UserSession
from storage.sql import Statement
from storage.purge import PeriodicPurge, purge_all, purge_expired


_INSERT = Statement.insert(lambda: AccessToken, "token_hash", "client_id", "scope", "issued_at", "expires_at",
                           "revoked", "user_sub", "grant_id")


class TokenStore:
    def __init__(self, db: peewee.Database, purge_every: int = 1000, purge_batch: int = 500) -> None:
        self.db = db
        self.periodic = PeriodicPurge(purge_every, purge_batch)

    def issue(self, client_id: str, scope: str, lifetime: int, *, user_sub: str | None = None,
              grant_id: str | None = None) -> tuple[str, int]:
        """Create and store a new access token; returns (token, expires_in). A user's token names
        the user (`user_sub`) and the grant it came from (`grant_id`: the code and its refresh
        family), so that revoking the grant revokes it."""
        token = secrets.token_urlsafe(32)
        now = int(time.time())
        _INSERT.execute(token_hash=token_hash(token), client_id=client_id, scope=scope, issued_at=now,
                        expires_at=now + lifetime, revoked=False, user_sub=user_sub, grant_id=grant_id)
        if self.periodic.tick():
            self.periodic.run(lambda: self.purge_batch(now))
        return token, lifetime

    def purge_batch(self, now: int) -> int:
        """One bounded batch of each table that grows with every grant: access tokens, refresh
        tokens, authorization codes (kept a while past expiry to detect a late reuse) and browser
        sessions."""
        batch = self.periodic.batch
        return (self.purge(now, batch) + refresh.purge(self.db, now, batch)
                + purge_expired(self.db, AuthorizationCode, AuthorizationCode.expires_at,
                                now - codes.KEEP_AFTER_EXPIRY, batch)
                + purge_expired(self.db, UserSession, UserSession.expires_at, now, batch))

    @staticmethod
    def active(token: str) -> AccessToken | None:
        """The token's record if it is usable now: known, not revoked, not expired."""
        if not token or len(token) > 512:
            return None
        row = AccessToken.get_or_none(AccessToken.token_hash == token_hash(token))
        if row is None or row.revoked or row.expires_at <= int(time.time()):
            return None
        return row

    @staticmethod
    def revoke(token: str, client_id: str) -> bool:
        """RFC 7009 §2.1: only the client the token was issued to may revoke it."""
        if not token or len(token) > 512:
            return False
        return (AccessToken.update(revoked=True)
                .where((AccessToken.token_hash == token_hash(token)) & (AccessToken.client_id == client_id))
                .execute()) == 1

    def purge(self, now: int | None = None, limit: int = 500) -> int:
        return purge_expired(self.db, AccessToken, AccessToken.expires_at,
                             int(time.time()) if now is None else now, limit)

    def purge_all(self, now: int | None = None) -> int:
        return purge_all(self.db, AccessToken, AccessToken.expires_at, int(time.time()) if now is None else now)
