"""The token request as handlers see it: immutable, built once from the HTTP request."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from storage.clients import RegisteredClient


@dataclass(frozen=True)
class TokenRequest:
    form: Mapping[str, str]          # strictly parsed body (server.forms), one value per name
    headers: Mapping[str, str]       # lower-case header names
    endpoint_url: str                # the URL that received the request (scheme://host/path)
    request_id: str
    remote_addr: str = ""

    @staticmethod
    def build(form: dict[str, str], headers: dict[str, str], endpoint_url: str, request_id: str,
              remote_addr: str = "") -> "TokenRequest":
        return TokenRequest(MappingProxyType(dict(form)), MappingProxyType(dict(headers)),
                            endpoint_url, request_id, remote_addr)


@dataclass
class AuthAttempt:
    """What an authenticator learned, for the one audit line written per attempt (never the assertion)."""

    method: str = ""
    client_id: str | None = None
    client_known: bool = False       # set once client_id was found registered: only then is a failure recorded
    alg: str | None = None
    kid: str | None = None
    remote_addr: str = ""            # the source address failures are counted against
    # Seconds until a failure budget this attempt falls under frees a slot (source address,
    # client id and address, client id), or None. While set, a failure is answered 429 and
    # not recorded; a credential that verifies is served all the same.
    limited: int | None = None


@dataclass(frozen=True)
class AuthenticatedClient:
    client: RegisteredClient
    method: str


@dataclass(frozen=True)
class Grant:
    """The outcome of a grant handler: what the issuer should put in the token."""

    scopes: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)
