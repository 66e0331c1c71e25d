"""Access tokens: random opaque strings; only their SHA-256 is stored, so a leaked database
reveals no usable token."""

from __future__ import annotations

import secrets
import time

import peewee

from storage import codes, refresh
from storage.hashing import sha256_hex as token_hash
from storage.models import AccessToken, AuthorizationCode, RevokedJWT, UserSession
from storage.sql import Statement
from storage.purge import PeriodicPurge, purge_all, purge_expired


MAX_TOKEN = 8192  # a JWT access token with many resources and a long scope stays well below

_INSERT = Statement.insert(lambda: AccessToken, "token_hash", "client_id", "scope", "issued_at", "expires_at",
                           "revoked", "user_sub", "grant_id", "jkt", "audience", "x5t_s256")


class TokenStore:
    def __init__(self, db: peewee.Database, purge_every: int = 1000, purge_batch: int = 500) -> None:
        self.db = db
        self.periodic = PeriodicPurge(purge_every, purge_batch)

    def issue(self, client_id: str, scope: str, lifetime: int, *, user_sub: str | None = None,
              grant_id: str | None = None, jkt: str | None = None, x5t_s256: str | None = None,
              audience: tuple[str, ...] = (), token: str | None = None, now: int | None = None) -> tuple[str, int]:
        """Store a new access token (`token`, or a new random one); returns (token, expires_in).
        A user's token names the user (`user_sub`) and the grant it came from (`grant_id`: the
        code and its refresh family), so that revoking the grant revokes it; a DPoP-bound one
        the key's thumbprint (`jkt`), a certificate-bound one the certificate's (`x5t_s256`)."""
        token = token or secrets.token_urlsafe(32)
        now = int(time.time()) if now is None else now
        _INSERT.execute(token_hash=token_hash(token), client_id=client_id, scope=scope, issued_at=now,
                        expires_at=now + lifetime, revoked=False, user_sub=user_sub, grant_id=grant_id,
                        jkt=jkt, audience=" ".join(audience) or None, x5t_s256=x5t_s256)
        self.tick(now)
        return token, lifetime

    def tick(self, now: int) -> None:
        """Counts an issued token; every `purge_every`, one purge batch (also when none is stored)."""
        if self.periodic.tick():
            self.periodic.run(lambda: self.purge_batch(now))

    def purge_batch(self, now: int) -> int:
        """One bounded batch of each table that grows with every grant: access tokens, refresh
        tokens, authorization codes (kept a while past expiry to detect a late reuse) and browser
        sessions."""
        batch = self.periodic.batch
        return (self.purge(now, batch) + refresh.purge(self.db, now, batch)
                + purge_expired(self.db, AuthorizationCode, AuthorizationCode.expires_at,
                                now - codes.KEEP_AFTER_EXPIRY, batch)
                + purge_expired(self.db, UserSession, UserSession.expires_at, now, batch)
                + purge_expired(self.db, RevokedJWT, RevokedJWT.exp_time, now, batch))

    @staticmethod
    def find(token: str) -> AccessToken | None:
        """The token's record, whatever its state."""
        if not token or len(token) > MAX_TOKEN:
            return None
        return AccessToken.get_or_none(AccessToken.token_hash == token_hash(token))

    @staticmethod
    def usable(row: AccessToken | None) -> bool:
        return row is not None and not row.revoked and row.expires_at > int(time.time())

    @staticmethod
    def deny(jti: str, client_id: str, exp_time: int) -> None:
        """Revoke an access token that has no record (a JWT not persisted) until it expires."""
        try:
            RevokedJWT.create(jti=jti, client_id=client_id, exp_time=exp_time)
        except peewee.IntegrityError:
            pass  # revoked already

    @staticmethod
    def denied(jti: str) -> bool:
        return RevokedJWT.select().where(RevokedJWT.jti == jti).exists()

    @staticmethod
    def revoke(token: str, client_id: str) -> bool:
        """RFC 7009 §2.1: only the client the token was issued to may revoke it."""
        if not token or len(token) > MAX_TOKEN:
            return False
        return (AccessToken.update(revoked=True)
                .where((AccessToken.token_hash == token_hash(token)) & (AccessToken.client_id == client_id))
                .execute()) == 1

    def purge(self, now: int | None = None, limit: int = 500) -> int:
        return purge_expired(self.db, AccessToken, AccessToken.expires_at,
                             int(time.time()) if now is None else now, limit)

    def purge_all(self, now: int | None = None) -> int:
        return purge_all(self.db, AccessToken, AccessToken.expires_at, int(time.time()) if now is None else now)
