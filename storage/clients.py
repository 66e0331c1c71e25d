"""Registered clients: read on every request (so changes apply at once), written by the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import peewee

from storage.models import AccessToken, Client, RefreshToken
from storage.sql import Statement

AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post", "none")  # none: a public client (PKCE)


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
            "key_source": ("jwks" if self.jwks else "jwks_uri" if self.jwks_uri else "keystore")
            if self.auth_method == "private_key_jwt" else None,
        }


def hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random values generated here, so a fast hash is enough: there
    # is nothing to brute-force (unlike user passwords, which need a memory-hard KDF).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(client: RegisteredClient, secret: str) -> bool:
    if not client.secret_hash:
        return False
    return hmac.compare_digest(client.secret_hash, hash_secret(secret))


_COLUMNS = ("client_id", "client_name", "auth_method", "secret_hash", "grant_types", "scopes", "redirect_uris",
            "jwks", "jwks_uri", "signing_alg", "audience_policy", "token_reuse", "description", "first_party",
            "access_token_lifetime", "refresh_token_lifetime", "id_token_lifetime", "updated_at")
_SELECT_ONE = Statement(lambda: Client.select(*[getattr(Client, c) for c in _COLUMNS])
                        .where(Client.client_id == "?"))


def _from_row(row: tuple) -> RegisteredClient:
    """A row of _COLUMNS; lists are stored space-separated."""
    values = dict(zip(_COLUMNS, row))
    for key in ("grant_types", "scopes", "redirect_uris"):
        values[key] = tuple(values[key].split())
    values["first_party"] = bool(values["first_party"])
    return RegisteredClient(**values)


def get(client_id: str) -> RegisteredClient | None:
    """The client, read on every request so that changes apply at once."""
    row = _SELECT_ONE.execute(client_id).fetchone()
    # Client ids compare exactly, whatever a database's collation thinks of case or trailing spaces.
    if row is None or row[0] != client_id:
        return None
    return _from_row(row)


def all_clients() -> list[RegisteredClient]:
    query = Client.select(*[getattr(Client, c) for c in _COLUMNS]).order_by(Client.client_id)
    return [_from_row(row) for row in query.tuples()]


def create(client_id: str, auth_method: str, *, client_name: str = "", grant_types=(), scopes=(),
           redirect_uris=(), jwks: str | None = None, jwks_uri: str | None = None,
           signing_alg: str | None = None, audience_policy: str | None = None,
           token_reuse: str | None = None, description: str = "", first_party: bool = False,
           access_token_lifetime: int | None = None, refresh_token_lifetime: int | None = None,
           id_token_lifetime: int | None = None) -> tuple[RegisteredClient, str | None]:
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
                      id_token_lifetime=id_token_lifetime, created_at=now, updated_at=now)
    except peewee.IntegrityError:
        raise ValueError("a client with this client id already exists") from None
    return get(client_id), secret


def delete(client_id: str) -> bool:
    """Delete the client and revoke its tokens (they must not outlive it)."""
    deleted = Client.delete().where(Client.client_id == client_id).execute() == 1
    if deleted:
        AccessToken.update(revoked=True).where(AccessToken.client_id == client_id).execute()
        RefreshToken.update(state="revoked").where(RefreshToken.client_id == client_id).execute()
    return deleted
