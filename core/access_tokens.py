"""Access tokens in the two formats a client may get ([oauth.token] access_token_format, per
client access_token_format): opaque strings, stored hashed (storage.tokens), or JWTs (RFC 9068)
signed with the access token key (keystore.signing_keys). A JWT is recorded like an opaque token
unless [oauth.token] persist = false; then nothing is written when it is issued, and revoking it
puts its jti on a deny-list until it expires.

`active()` is the one answer to "may this token be used now?" for introspection, revocation and
the userinfo endpoint, whatever the format.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from keystore.jws import MalformedJWS, parse_compact_jws
from keystore.signing_keys import KeySet
from storage import clients, users
from storage.tokens import MAX_TOKEN, TokenStore

AT_JWT = "at+jwt"  # RFC 9068 §2.1; also application/at+jwt


@dataclass(frozen=True)
class ActiveToken:
    """What an active access token says, whatever its format."""

    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    user_sub: str | None = None
    jkt: str | None = None                 # RFC 9449 §6: bound to this DPoP key
    x5t_s256: str | None = None            # RFC 8705 §3: bound to this TLS client certificate
    audience: tuple[str, ...] = ()         # RFC 8707 resources
    format: str = "opaque"

    @property
    def token_type(self) -> str:
        """RFC 9449 §5, §6.2: how the token is presented and described. A certificate-bound token
        is still presented as a Bearer token (RFC 8705 §3): its proof is the TLS connection."""
        return "DPoP" if self.jkt else "Bearer"

    @property
    def cnf(self) -> dict[str, str]:
        """Its confirmation members (introspection's `cnf`)."""
        return confirmation(self.jkt, self.x5t_s256)


class AccessTokens:
    def __init__(self, settings, store: TokenStore, keys: Callable[[], KeySet]) -> None:
        self.issuer = settings.issuer
        self.default_format = settings.token["access_token_format"]
        self.persist = settings.token["persist"]
        self.store = store
        self.keys = keys

    def issue(self, *, client: clients.RegisteredClient, scope: str, lifetime: int, user_sub: str | None = None,
              grant_id: str | None = None, auth_time: int | None = None, jkt: str | None = None,
              x5t_s256: str | None = None, audience: tuple[str, ...] = ()) -> tuple[str, int]:
        """A new access token for `client`; returns (token, expires_in). Bound to a DPoP key
        (`jkt`), a TLS client certificate (`x5t_s256`), both or neither."""
        if (client.access_token_format or self.default_format) != "jwt":
            return self.store.issue(client.client_id, scope, lifetime, user_sub=user_sub, grant_id=grant_id,
                                    jkt=jkt, x5t_s256=x5t_s256, audience=audience)
        now = int(time.time())
        # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti; scope, auth_time and cnf when they
        # apply. §5: `aud` is never the client id, so that no access token passes for an ID token;
        # without a resource it is this server (its userinfo endpoint and introspection).
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "exp": now + lifetime,
            "aud": (audience[0] if len(audience) == 1 else list(audience)) if audience else self.issuer,
            "sub": user_sub or client.client_id,   # §2.2: the client's own token names the client
            "client_id": client.client_id,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        }
        if scope:
            claims["scope"] = scope
        if auth_time is not None:
            claims["auth_time"] = auth_time
        cnf = confirmation(jkt, x5t_s256)
        if cnf:
            claims["cnf"] = cnf
        token = self.keys().access_token.sign(claims, typ=AT_JWT)
        if self.persist:
            self.store.issue(client.client_id, scope, lifetime, user_sub=user_sub, grant_id=grant_id,
                             jkt=jkt, x5t_s256=x5t_s256, audience=audience, token=_record_key(token), now=now)
        else:
            self.store.tick(now)
        return token, lifetime

    def active(self, token: str) -> ActiveToken | None:
        """The token if it may be used now: known or validly signed by us, not expired, not revoked."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            return None
        if token.count(".") == 2:
            return self._active_jwt(token)
        if "." in token:  # never an opaque token; maybe a JWT's record key (header.payload)
            return None
        row = self.store.find(token)
        if not self.store.usable(row):
            return None
        return ActiveToken(client_id=row.client_id, scope=row.scope, issued_at=row.issued_at,
                           expires_at=row.expires_at, user_sub=row.user_sub, jkt=row.jkt,
                           x5t_s256=row.x5t_s256, audience=tuple((row.audience or "").split()))

    def _active_jwt(self, token: str) -> ActiveToken | None:
        claims = self.verify(token)
        if claims is None:
            return None
        row = self.store.find(_record_key(token))
        if row is not None:   # recorded (persist = true when it was issued): the record decides
            if not self.store.usable(row):
                return None
        elif not self._unrecorded_usable(claims):
            return None
        audience = claims["aud"]
        cnf = claims.get("cnf") if isinstance(claims.get("cnf"), dict) else {}
        return ActiveToken(client_id=claims["client_id"], scope=claims.get("scope", ""), issued_at=claims["iat"],
                           expires_at=claims["exp"],
                           user_sub=claims["sub"] if "auth_time" in claims else None,  # a user's token
                           jkt=cnf.get("jkt") if isinstance(cnf.get("jkt"), str) else None,
                           x5t_s256=cnf.get("x5t#S256") if isinstance(cnf.get("x5t#S256"), str) else None,
                           audience=tuple(audience) if isinstance(audience, list) else
                           (() if audience == self.issuer else (audience,)),
                           format="jwt")

    def _unrecorded_usable(self, claims: dict[str, Any]) -> bool:
        """A JWT issued with persist = false: not on the deny-list, its client the one it was
        issued to (not deleted, nor registered anew under its id since), its user still there."""
        if self.store.denied(claims["jti"]):
            return False
        client = clients.get(claims["client_id"])
        if client is None or claims["iat"] < client.created_at:
            return False
        return "auth_time" not in claims or users.get_by_sub(claims["sub"]) is not None

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a JWT access token this server signed and that has not expired, or None."""
        try:
            jws = parse_compact_jws(token, MAX_TOKEN)
        except MalformedJWS:
            return None
        header, claims = jws.header, jws.payload
        key = self.keys().published.get(header.get("kid"))  # type: ignore[arg-type]
        if (key is None or header.get("typ") != AT_JWT or header.get("alg") != key.alg
                or not key.verifier().verify(jws.signing_input, jws.signature)):
            return None
        if claims.get("iss") != self.issuer or not all(isinstance(claims.get(name), str)
                                                       for name in ("client_id", "sub", "jti")):
            return None
        if not all(type(claims.get(name)) is int for name in ("exp", "iat")) or claims["exp"] <= int(time.time()):
            return None
        return claims

    def revoke(self, token: str, client_id: str) -> bool:
        """RFC 7009 §2.1: only the client the token was issued to may revoke it."""
        if token.count(".") != 2:
            return "." not in token and self.store.revoke(token, client_id)
        claims = self.verify(token)
        if claims is None or claims["client_id"] != client_id:
            return False
        if not self.store.revoke(_record_key(token), client_id):
            self.store.deny(claims["jti"], client_id, claims["exp"])  # not recorded (persist = false)
        return True


def confirmation(jkt: str | None, x5t_s256: str | None) -> dict[str, str]:
    """The confirmation members (RFC 7800 §3.1) of a token's bindings: `jkt` (RFC 9449 §6.1) and
    `x5t#S256` (RFC 8705 §3.1), both when it is bound both ways (each must then be proven)."""
    cnf = {}
    if jkt:
        cnf["jkt"] = jkt
    if x5t_s256:
        cnf["x5t#S256"] = x5t_s256
    return cnf


def _record_key(jwt: str) -> str:
    """What a JWT access token is recorded under: its header and payload, not its signature, which
    is not unique (an ECDSA signature (r, s) verifies as (r, n - s) too)."""
    return jwt.rsplit(".", 1)[0]
