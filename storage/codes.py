"""Authorization codes (RFC 6749 §4.1.2): random, stored hashed, single use, bound to the request.

Redemption is one conditional UPDATE (`used` false → true), so of two concurrent redemptions on
any number of workers or nodes exactly one wins; the loser revokes what the winner was issued
(§4.1.2: "the authorization server SHOULD revoke … all tokens previously issued based on that
authorization code").
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import peewee

from storage.hashing import sha256_hex as code_hash
from storage.models import AccessToken, AuthorizationCode, RefreshToken
from storage.purge import purge_all


@dataclass(frozen=True)
class CodeGrant:
    """What a code was issued for."""

    grant_id: str
    client_id: str
    user_sub: str
    redirect_uri: str
    redirect_uri_sent: bool           # RFC 6749 §4.1.3: then the token request must repeat it
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: int
    dpop_jkt: str | None = None       # RFC 9449 §10: redeemable with a proof of this key only
    resources: tuple[str, ...] = ()   # RFC 8707 §2.1: the resources the authorization request named


class CodeError(Exception):
    """The code cannot be redeemed; `reason` is for the audit log ("unknown", "client", "expired",
    "reused")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue(*, client_id: str, user_sub: str, redirect_uri: str, scopes: tuple[str, ...], nonce: str | None,
          code_challenge: str | None, code_challenge_method: str | None, auth_time: int, lifetime: int,
          redirect_uri_sent: bool = True, dpop_jkt: str | None = None, resources: tuple[str, ...] = ()) -> str:
    """Store a new code and return it (256 random bits; only its SHA-256 is stored)."""
    code = secrets.token_urlsafe(32)
    now = int(time.time())
    AuthorizationCode.create(code_hash=code_hash(code), grant_id=secrets.token_hex(16), client_id=client_id,
                             user_sub=user_sub, redirect_uri=redirect_uri, redirect_uri_sent=redirect_uri_sent,
                             scope=" ".join(scopes), nonce=nonce,
                             code_challenge=code_challenge, code_challenge_method=code_challenge_method,
                             auth_time=auth_time, issued_at=now, expires_at=now + lifetime, used=False,
                             dpop_jkt=dpop_jkt, resources=" ".join(resources) or None)
    return code


def redeem(code: str, client_id: str) -> CodeGrant:
    """Mark the code used and return what it was issued for, to the authenticated client
    `client_id` only. A code already used raises CodeError("reused") after revoking every token
    issued from it; the caller checks the other bindings (redirect URI, PKCE) — a code that fails
    those checks is used up too, as a stolen code must not be retried.

    A code of another client raises CodeError("client") and revokes nothing: the client that
    presents it is not the one whose tokens are at stake (RFC 6749 §4.1.3), so it must not be able
    to end that client's grant. If the code is still unused it is used up, since it has leaked."""
    if not code or len(code) > 512:
        raise CodeError("unknown")
    hashed = code_hash(code)
    row = AuthorizationCode.get_or_none(AuthorizationCode.code_hash == hashed)
    if row is None:
        raise CodeError("unknown")
    unused = (AuthorizationCode.code_hash == hashed) & (AuthorizationCode.used == False)  # noqa: E712
    if row.client_id != client_id:
        AuthorizationCode.update(used=True).where(unused).execute()
        raise CodeError("client")
    won = AuthorizationCode.update(used=True).where(unused).execute() == 1
    if not won:
        # Flag first, then revoke: the winner checks the flag after storing its tokens
        # (was_reused), so whichever order the two requests run in, no token survives.
        AuthorizationCode.update(reused=True).where(AuthorizationCode.code_hash == hashed).execute()
        revoke_grant(row.grant_id)
        raise CodeError("reused")
    if row.expires_at <= int(time.time()):
        raise CodeError("expired")
    return CodeGrant(row.grant_id, row.client_id, row.user_sub, row.redirect_uri, bool(row.redirect_uri_sent),
                     tuple(row.scope.split()),
                     row.nonce, row.code_challenge, row.code_challenge_method, row.auth_time, row.expires_at,
                     row.dpop_jkt, tuple((row.resources or "").split()))


def was_reused(grant_id: str) -> bool:
    """Whether a second redemption of the code of this grant was attempted."""
    return AuthorizationCode.select().where((AuthorizationCode.grant_id == grant_id)
                                            & (AuthorizationCode.reused == True)).exists()  # noqa: E712


def revoke_grant(grant_id: str) -> None:
    """Revoke every access and refresh token issued from one code (its whole refresh family)."""
    AccessToken.update(revoked=True).where(AccessToken.grant_id == grant_id).execute()
    RefreshToken.update(state="revoked").where(RefreshToken.grant_id == grant_id).execute()


# Codes are kept a day past their expiry, so that a late second redemption still revokes tokens.
KEEP_AFTER_EXPIRY = 86400


def purge(db: peewee.Database, now: int | None = None) -> int:
    now = int(time.time()) if now is None else now
    return purge_all(db, AuthorizationCode, AuthorizationCode.expires_at, now - KEEP_AFTER_EXPIRY)
