"""The token request as handlers see it, and what a grant handler hands the token issuer: immutable
values, built once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from keystore.dpop import Proof as DPoPProof
from core.errors import invalid_target
from storage.clients import RegisteredClient

# The endpoints that run the client authentication chain (TokenRequest.endpoint).
TOKEN, INTROSPECTION, REVOCATION, PAR = "token", "introspection", "revocation", "par"

# RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
SCOPE = re.compile(rf"{SCOPE_TOKEN.pattern}(?: {SCOPE_TOKEN.pattern})*")


# RFC 8707 §2: an absolute URI (RFC 3986 §4.3) without a fragment; printable ASCII, no spaces.
_RESOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x22\x24-\x7e]+")
MAX_RESOURCES = 20
MAX_RESOURCES_LENGTH = 4096


def check_resources(resources: tuple[str, ...]) -> None:
    """The form of `resource` parameters; which ones a client may ask for is its registration's."""
    if len(resources) > MAX_RESOURCES:
        raise invalid_target(f"At most {MAX_RESOURCES} resource parameters are accepted")
    if sum(len(resource) for resource in resources) > MAX_RESOURCES_LENGTH:  # a JWT's aud must stay small
        raise invalid_target(f"The resource parameters may have at most {MAX_RESOURCES_LENGTH} characters together")
    for resource in resources:
        if len(resource) > 2048 or not _RESOURCE.fullmatch(resource):
            raise invalid_target("A resource must be an absolute URI without a fragment")


@dataclass(frozen=True, kw_only=True)
class TokenRequest:
    form: Mapping[str, str]          # strictly parsed body (server.forms), one value per name
    headers: Mapping[str, str]       # lower-case header names
    endpoint: str                    # TOKEN, INTROSPECTION or REVOCATION
    endpoint_url: str                # the URL that received the request (scheme://host/path)
    request_id: str
    remote_addr: str = ""
    resources: tuple[str, ...] = ()  # RFC 8707 §2: the `resource` parameters, which may repeat
    dpop: DPoPProof | None = None    # RFC 9449: the verified proof, set by the chain (handlers.chain)
    # RFC 8705: the client's TLS certificate (DER), from the server's own TLS socket or a trusted
    # proxy's Client-Cert header (server.current.client_certificate); None without one.
    client_certificate: bytes | None = None

    @staticmethod
    def build(form: dict[str, str], headers: dict[str, str], endpoint: str, endpoint_url: str,
              request_id: str, remote_addr: str = "", resources: tuple[str, ...] = (),
              client_certificate: bytes | None = None) -> "TokenRequest":
        return TokenRequest(form=MappingProxyType(dict(form)), headers=MappingProxyType(dict(headers)),
                            endpoint=endpoint, endpoint_url=endpoint_url, request_id=request_id,
                            remote_addr=remote_addr, resources=tuple(dict.fromkeys(resources)),
                            client_certificate=client_certificate)

    def credential_kinds(self) -> set[str]:
        """Which client authentication methods the request carries, whatever handlers are enabled."""
        kinds = set()
        if "authorization" in self.headers:
            kinds.add("authorization_header")
        if "client_secret" in self.form:
            kinds.add("client_secret")
        if "client_assertion" in self.form or "client_assertion_type" in self.form:
            kinds.add("client_assertion")
        return kinds


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
    # What an accepted client assertion looked like, for the migration report (handlers/client_activity):
    # {"aud": "issuer" | "token_endpoint" | "alias" | "array" | "other", "typ": header typ or None,
    #  "alg": ..., "lifetime": seconds from iat (or now) to exp}.
    assertion: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuthenticatedClient:
    client: RegisteredClient
    method: str


@dataclass(frozen=True, kw_only=True)
class Grant:
    """What a grant handler hands the token issuer: the scope of the access token. A Grant
    itself is the client's own (client_credentials): no user, no refresh token, no ID token."""

    scopes: tuple[str, ...]
    resources: tuple[str, ...] = ()  # RFC 8707: the access token's audience (none: the client id)


@dataclass(frozen=True, kw_only=True)
class UserGrant(Grant):
    """A grant a user gave the client (authorization code, refresh token): every token issued
    from it shares `grant_id`, so a reused code or refresh token can revoke them all."""

    user_sub: str
    grant_id: str
    auth_time: int
    refresh_scopes: tuple[str, ...]  # what a refresh token carries: the whole grant, however narrowed
    nonce: str | None = None         # OpenID Connect Core §3.1.3.6: into the ID token of a code grant
    grant_resources: tuple[str, ...] = ()  # what a refresh token may address: the whole grant's resources


@dataclass(frozen=True, kw_only=True)
class RefreshTokenGrant(UserGrant):
    """A user's grant continued with a refresh token, which is rotated once the new tokens exist."""

    presented_hash: str              # the refresh token that was presented (its stored hash)
