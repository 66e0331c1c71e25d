"""Registered clients: read on every request (so changes apply at once), written by the CLI, the
console and the registration API; and the bearer tokens of that API (RFC 7591 §3, RFC 7592 §3)."""

from __future__ import annotations

import functools
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

import peewee

from storage.database import database_proxy
from storage.hashing import sha256_hex as hash_secret
from storage.models import (AccessToken, AuthFailure, AuthorizationCode, Client, Consent, InitialAccessToken,
                            RefreshToken, RegistrationAccessToken)
from storage.sql import Param, Statement

# none: a public client (PKCE); the tls_ ones: RFC 8705 §2 (mutual TLS)
AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post", "none", "tls_client_auth",
                "self_signed_tls_client_auth")


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    client_name: str
    auth_method: str
    secret_hash: str | None
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    jwks: str | None
    jwks_uri: str | None
    signing_alg: str | None
    audience_policy: str | None
    token_reuse: str | None
    description: str
    first_party: bool
    access_token_lifetime: int | None
    refresh_token_lifetime: int | None
    id_token_lifetime: int | None
    updated_at: int
    created_at: int = 0
    dpop_bound_access_tokens: bool = False
    require_dpop_nonce: bool = False
    access_token_format: str | None = None      # None: [oauth.token] access_token_format
    resources: tuple[str, ...] = ()              # RFC 8707: the resources it may ask tokens for
    require_pushed_authorization_requests: bool = False   # RFC 9126 §6
    tls_client_auth_subject_dn: str | None = None          # RFC 8705 §2.1.2 (tls_client_auth)
    tls_client_auth_san: str | None = None                 # "dns:…", "uri:…", "ip:…" or "email:…"
    tls_client_certificate_bound_access_tokens: bool = False  # RFC 8705 §3.4
    profile: str | None = None                   # "fapi2": held to FAPI 2.0 whatever the server's profile
    require_explicit_typ: bool | None = None     # None: the private_key_jwt handler's RequireExplicitTyp

    def public_view(self) -> dict:
        """What `clients show` prints: never the secret hash."""
        return {
            "client_id": self.client_id,
            "client_name": self.client_name,
            "token_endpoint_auth_method": self.auth_method,
            "grant_types": list(self.grant_types),
            "scope": " ".join(self.scopes),
            "redirect_uris": list(self.redirect_uris),
            "jwks": json.loads(self.jwks) if self.jwks else None,
            "jwks_uri": self.jwks_uri,
            "token_endpoint_auth_signing_alg": self.signing_alg,
            "audience_policy": self.audience_policy,
            "token_reuse": self.token_reuse,
            "description": self.description,
            "first_party": self.first_party,
            "access_token_lifetime": self.access_token_lifetime,
            "refresh_token_lifetime": self.refresh_token_lifetime,
            "id_token_lifetime": self.id_token_lifetime,
            "dpop_bound_access_tokens": self.dpop_bound_access_tokens,
            "require_dpop_nonce": self.require_dpop_nonce,
            "access_token_format": self.access_token_format,
            "resources": list(self.resources),
            "require_pushed_authorization_requests": self.require_pushed_authorization_requests,
            "tls_client_auth_subject_dn": self.tls_client_auth_subject_dn,
            "tls_client_auth_san": self.tls_client_auth_san,
            "tls_client_certificate_bound_access_tokens": self.tls_client_certificate_bound_access_tokens,
            "profile": self.profile,
            "require_explicit_typ": self.require_explicit_typ,
            "key_source": ("jwks" if self.jwks else "jwks_uri" if self.jwks_uri else "keystore")
            if self.auth_method in ("private_key_jwt", "self_signed_tls_client_auth") else None,
        }


def secret_matches(client: RegisteredClient, secret: str) -> bool:
    if not client.secret_hash:
        return False
    return hmac.compare_digest(client.secret_hash, hash_secret(secret))


_COLUMNS = ("client_id", "client_name", "auth_method", "secret_hash", "grant_types", "scopes", "redirect_uris",
            "jwks", "jwks_uri", "signing_alg", "audience_policy", "token_reuse", "description", "first_party",
            "access_token_lifetime", "refresh_token_lifetime", "id_token_lifetime", "updated_at", "created_at",
            "dpop_bound_access_tokens", "require_dpop_nonce", "access_token_format", "resources",
            "require_pushed_authorization_requests", "tls_client_auth_subject_dn", "tls_client_auth_san",
            "tls_client_certificate_bound_access_tokens", "profile", "require_explicit_typ")
_SELECT_ONE = Statement(lambda: Client.select(*[getattr(Client, c) for c in _COLUMNS])
                        .where(Client.client_id == Param("client_id")))


def _from_row(row: tuple) -> RegisteredClient:
    """A row of _COLUMNS; lists are stored space-separated."""
    values = dict(zip(_COLUMNS, row))
    for key in ("grant_types", "scopes", "redirect_uris", "resources"):
        values[key] = tuple((values[key] or "").split())
    for key in ("first_party", "dpop_bound_access_tokens", "require_dpop_nonce", "require_pushed_authorization_requests",
                "tls_client_certificate_bound_access_tokens"):
        values[key] = bool(values[key])
    if values["require_explicit_typ"] is not None:   # MariaDB and SQLite answer 0 or 1
        values["require_explicit_typ"] = bool(values["require_explicit_typ"])
    values["description"] = values["description"] or ""
    return RegisteredClient(**values)


# A client id: 1 to 255 characters, none of them a control character (NUL above all: PostgreSQL
# refuses it). The one definition: the keystore alias, the sub of assertions, the key of the
# database, the failure budgets and the audit log all take what passes it, and nothing else.
MAX_CLIENT_ID = 255
CLIENT_ID = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_CLIENT_ID}}}")


def valid_client_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_ID.fullmatch(value) is not None


@functools.lru_cache(maxsize=1024)
def _client_of_row(row: tuple) -> RegisteredClient:
    # Keyed by the whole row: any change to the registration is a new row, hence a new object.
    return _from_row(row)


def get(client_id: str) -> RegisteredClient | None:
    """The client, read on every request so that changes apply at once."""
    if not valid_client_id(client_id):
        return None
    row = _SELECT_ONE.execute(client_id=client_id).fetchone()
    # Client ids compare exactly, whatever a database's collation thinks of case or trailing spaces.
    if row is None or row[0] != client_id:
        return None
    return _client_of_row(tuple(row))


def all_clients() -> list[RegisteredClient]:
    query = Client.select(*[getattr(Client, c) for c in _COLUMNS]).order_by(Client.client_id)
    return [_from_row(row) for row in query.tuples()]


def create(client_id: str, auth_method: str, *, client_name: str = "", grant_types=(), scopes=(),
           redirect_uris=(), jwks: str | None = None, jwks_uri: str | None = None,
           signing_alg: str | None = None, audience_policy: str | None = None,
           token_reuse: str | None = None, description: str = "", first_party: bool = False,
           access_token_lifetime: int | None = None, refresh_token_lifetime: int | None = None,
           id_token_lifetime: int | None = None, dpop_bound_access_tokens: bool = False,
           require_dpop_nonce: bool = False, access_token_format: str | None = None,
           resources=(), require_pushed_authorization_requests: bool = False,
           tls_client_auth_subject_dn: str | None = None, tls_client_auth_san: str | None = None,
           tls_client_certificate_bound_access_tokens: bool = False,
           profile: str | None = None,
           require_explicit_typ: bool | None = None) -> tuple[RegisteredClient, str | None]:
    """Insert a client; returns it and, for secret methods, the secret (shown once)."""
    # Ids differing only in case would share a certificate in a JKS keystore (aliases are
    # lower-cased there) and confuse operators everywhere else: refuse them.
    if client_id.isascii() and Client.select().where(peewee.fn.LOWER(Client.client_id) == client_id.lower()).exists():
        raise ValueError("a client with this client id (ignoring case) already exists")
    secret = secrets.token_urlsafe(32) if auth_method.startswith("client_secret") else None
    now = int(time.time())
    try:
        Client.create(client_id=client_id, client_name=client_name, auth_method=auth_method,
                      secret_hash=hash_secret(secret) if secret else None,
                      grant_types=" ".join(grant_types), scopes=" ".join(scopes),
                      redirect_uris=" ".join(redirect_uris), jwks=jwks, jwks_uri=jwks_uri,
                      signing_alg=signing_alg, audience_policy=audience_policy,
                      token_reuse=token_reuse, description=description, first_party=first_party,
                      access_token_lifetime=access_token_lifetime, refresh_token_lifetime=refresh_token_lifetime,
                      id_token_lifetime=id_token_lifetime, dpop_bound_access_tokens=dpop_bound_access_tokens,
                      require_dpop_nonce=require_dpop_nonce, access_token_format=access_token_format,
                      resources=" ".join(resources or ()),
                      require_pushed_authorization_requests=require_pushed_authorization_requests,
                      tls_client_auth_subject_dn=tls_client_auth_subject_dn, tls_client_auth_san=tls_client_auth_san,
                      tls_client_certificate_bound_access_tokens=tls_client_certificate_bound_access_tokens,
                      profile=profile, require_explicit_typ=require_explicit_typ, created_at=now, updated_at=now)
    except peewee.IntegrityError:
        raise ValueError("a client with this client id already exists") from None
    return get(client_id), secret


def update(client_id: str, auth_method: str, *, client_name: str = "", grant_types=(), scopes=(),
           redirect_uris=(), jwks: str | None = None, jwks_uri: str | None = None,
           signing_alg: str | None = None, audience_policy: str | None = None,
           token_reuse: str | None = None, description: str = "", first_party: bool = False,
           access_token_lifetime: int | None = None, refresh_token_lifetime: int | None = None,
           id_token_lifetime: int | None = None, dpop_bound_access_tokens: bool = False,
           require_dpop_nonce: bool = False, access_token_format: str | None = None,
           resources=(), require_pushed_authorization_requests: bool = False,
           tls_client_auth_subject_dn: str | None = None, tls_client_auth_san: str | None = None,
           tls_client_certificate_bound_access_tokens: bool = False,
           profile: str | None = None,
           require_explicit_typ: bool | None = None) -> tuple[RegisteredClient, str | None] | None:
    """Replace a client's registration (RFC 7592 §2.2); None when there is no such client.
    Returns the client and, when it moves to a secret method from another, its new secret
    (shown once); a client that keeps a secret method keeps its secret."""
    with Client._meta.database.atomic():
        current = get(client_id)
        if current is None:
            return None
        secret = None
        secret_hash = None
        if auth_method.startswith("client_secret"):
            secret_hash = current.secret_hash if current.auth_method.startswith("client_secret") else None
            if secret_hash is None:
                secret = secrets.token_urlsafe(32)
                secret_hash = hash_secret(secret)
        Client.update(client_name=client_name, auth_method=auth_method, secret_hash=secret_hash,
                      grant_types=" ".join(grant_types), scopes=" ".join(scopes),
                      redirect_uris=" ".join(redirect_uris), jwks=jwks, jwks_uri=jwks_uri,
                      signing_alg=signing_alg, audience_policy=audience_policy, token_reuse=token_reuse,
                      description=description, first_party=first_party,
                      access_token_lifetime=access_token_lifetime, refresh_token_lifetime=refresh_token_lifetime,
                      id_token_lifetime=id_token_lifetime, dpop_bound_access_tokens=dpop_bound_access_tokens,
                      require_dpop_nonce=require_dpop_nonce, access_token_format=access_token_format,
                      resources=" ".join(resources or ()),
                      require_pushed_authorization_requests=require_pushed_authorization_requests,
                      tls_client_auth_subject_dn=tls_client_auth_subject_dn, tls_client_auth_san=tls_client_auth_san,
                      tls_client_certificate_bound_access_tokens=tls_client_certificate_bound_access_tokens,
                      profile=profile, require_explicit_typ=require_explicit_typ, updated_at=int(time.time())
                      ).where(Client.client_id == client_id).execute()
    return get(client_id), secret


def regenerate_secret(client_id: str) -> str | None:
    """A new secret for a client_secret_* client (the old one stops working at once); None when
    there is no such client. ValueError for a client of another method."""
    client = get(client_id)
    if client is None:
        return None
    if not client.auth_method.startswith("client_secret"):
        raise ValueError("the client does not authenticate with a client secret")
    secret = secrets.token_urlsafe(32)
    Client.update(secret_hash=hash_secret(secret), updated_at=int(time.time())).where(
        Client.client_id == client_id).execute()
    return secret


def delete(client_id: str) -> bool:
    """Delete the client with everything bound to it: its tokens are revoked, and its codes,
    users' consents, registration token and recorded failures go, so that a client registered
    later under the same id inherits nothing (no consent skipped, no code redeemable)."""
    with database_proxy.atomic():
        deleted = Client.delete().where(Client.client_id == client_id).execute() == 1
        RegistrationAccessToken.delete().where(RegistrationAccessToken.client_id == client_id).execute()
        if deleted:
            AccessToken.update(revoked=True).where(AccessToken.client_id == client_id).execute()
            RefreshToken.update(state="revoked").where(RefreshToken.client_id == client_id).execute()
            for model in (AuthorizationCode, Consent, AuthFailure):
                model.delete().where(model.client_id == client_id).execute()
    return deleted


# --- the registration API's bearer tokens ------------------------------------------------------

def issue_registration_token(client_id: str) -> str:
    """A new registration access token for the client (RFC 7592 §3); any earlier one stops working."""
    token = secrets.token_urlsafe(32)
    with RegistrationAccessToken._meta.database.atomic():
        RegistrationAccessToken.delete().where(RegistrationAccessToken.client_id == client_id).execute()
        RegistrationAccessToken.create(token_hash=hash_secret(token), client_id=client_id, issued_at=int(time.time()))
    return token


def registration_token_client(token: str) -> str | None:
    """The client id a registration access token is bound to, or None."""
    row = RegistrationAccessToken.get_or_none(RegistrationAccessToken.token_hash == hash_secret(token))
    return row.client_id if row is not None else None


def create_initial_token(lifetime: int, uses: int = 1) -> tuple[str, int]:
    """An initial access token (RFC 7591 §3) valid for `lifetime` seconds and `uses` registrations;
    returns it (shown once) and its expiry. Spent and expired ones are deleted on the way."""
    if lifetime < 1 or uses < 1:
        raise ValueError("the lifetime and the number of uses must be positive")
    now = int(time.time())
    InitialAccessToken.delete().where((InitialAccessToken.expires_at <= now)
                                      | (InitialAccessToken.remaining_uses <= 0)).execute()
    token = secrets.token_urlsafe(32)
    InitialAccessToken.create(token_hash=hash_secret(token), created_at=now, expires_at=now + lifetime,
                              remaining_uses=uses)
    return token, now + lifetime


def initial_token_valid(token: str) -> bool:
    row = InitialAccessToken.get_or_none(InitialAccessToken.token_hash == hash_secret(token))
    return row is not None and row.remaining_uses > 0 and row.expires_at > int(time.time())


def use_initial_token(token: str) -> bool:
    """Spend one use of an initial access token; False when it is unknown, expired or spent.
    One statement, so concurrent registrations cannot spend one use twice."""
    return InitialAccessToken.update(remaining_uses=InitialAccessToken.remaining_uses - 1).where(
        (InitialAccessToken.token_hash == hash_secret(token)) & (InitialAccessToken.remaining_uses > 0)
        & (InitialAccessToken.expires_at > int(time.time()))).execute() == 1


def initial_tokens() -> list[dict]:
    """The live initial access tokens, each named by the start of its hash (the token is not kept)."""
    now = int(time.time())
    query = InitialAccessToken.select().where((InitialAccessToken.expires_at > now)
                                              & (InitialAccessToken.remaining_uses > 0))
    return [{"id": row.token_hash[:16], "created_at": row.created_at, "expires_at": row.expires_at,
             "remaining_uses": row.remaining_uses} for row in query.order_by(InitialAccessToken.created_at)]


def revoke_initial_token(token_id: str) -> bool:
    """Revoke the initial access token whose hash starts with `token_id` (16 hex digits, as listed)."""
    if len(token_id) != 16 or any(c not in "0123456789abcdef" for c in token_id):
        return False
    return InitialAccessToken.delete().where(InitialAccessToken.token_hash.startswith(token_id)).execute() >= 1
