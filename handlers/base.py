"""The handler API: everything a handler author needs, in one module.

A handler is a class in a module under handlers/. It declares its stage, default order, WSO2
alias (if any) and typed properties; the loader (handlers.chain) builds it from an
[[event_listener]] entry or, for a built-in with no entry, from its defaults. Handlers receive
the request and the shared services explicitly and return or raise OAuthError: no Flask globals.
The built-in handlers import from here too, so each is an example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.profile import fapi2
from core.errors import (OAuthError, invalid_client, invalid_dpop_proof, invalid_grant, invalid_request,
                         invalid_scope, invalid_target, temporarily_unavailable, unauthorized_client,
                         unsupported_grant_type)
from core.request import (INTROSPECTION, PAR, REVOCATION, SCOPE_TOKEN, TOKEN, AuthAttempt, AuthenticatedClient, DPoPProof,
                          Grant, RefreshTokenGrant, TokenRequest, UserGrant)
from storage.clients import CLIENT_ID, RegisteredClient, valid_client_id

if TYPE_CHECKING:
    from core.services import Services

__all__ = [
    # the stages and their contract
    "STAGES", "Property", "PropertyError", "Handler", "ClientAuthenticator", "GrantHandler", "TokenIssuer", "Listener",
    "fapi2",
    # what flows through the chain
    "TokenRequest", "TOKEN", "INTROSPECTION", "REVOCATION", "PAR", "AuthAttempt", "AuthenticatedClient",
    "RegisteredClient", "Grant", "UserGrant", "RefreshTokenGrant", "CLIENT_ID", "SCOPE_TOKEN", "DPoPProof",
    # errors: raise them where a rule fails; the web layer renders them
    "OAuthError", "invalid_client", "invalid_dpop_proof", "invalid_grant", "invalid_request", "invalid_scope",
    "invalid_target", "temporarily_unavailable", "unauthorized_client", "unsupported_grant_type",
]

STAGES = ("client_authentication", "grant", "issuer", "listener")


@dataclass(frozen=True)
class Property:
    """A handler property: its type (bool, int, str, list, or a tuple of allowed values),
    its default, and one line of documentation."""

    kind: Any
    default: Any
    doc: str = ""
    choices: tuple[str, ...] | None = None   # for a list: the values each member may take
    minimum: int | None = None               # for an int: the smallest value that makes sense


class PropertyError(ValueError):
    """A handler refuses the value of one of its properties (raised from __init__): start-up
    stops with the message, naming that property's line in deployment.toml."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Handler:
    stage: ClassVar[str]
    default_order: ClassVar[int] = 100
    wso2_name: ClassVar[str | None] = None
    properties: ClassVar[dict[str, Property]] = {}

    def __init__(self, services: "Services", props: dict[str, Any]) -> None:
        self.services = services
        self.props = props
        self.order = self.default_order


class ClientAuthenticator(Handler):
    stage = "client_authentication"
    methods: ClassVar[tuple[str, ...]] = ()

    def can_handle(self, request: TokenRequest) -> bool:
        raise NotImplementedError

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Discovery metadata this authenticator contributes."""
        return {}

    def claim(self, attempt: AuthAttempt, client_id: Any, source: str = "client_id") -> str:
        """The client id the request claims (from `source`), recorded in the attempt once it is
        known to be usable as a key: anything else is refused before it reaches a query, the
        failure limiter or a log. Also tells the attempt whether it falls under an exhausted
        failure budget (`attempt.limited`): the credential is checked all the same and served
        if it verifies; only a failure becomes a 429 (handlers.chain)."""
        if not valid_client_id(client_id):
            raise invalid_client(f"The {source} must be 1 to 255 printable characters", reason=source)
        attempt.client_id = client_id
        attempt.limited = self.services.limiter.client_retry(attempt.remote_addr, client_id)
        return client_id


class GrantHandler(Handler):
    stage = "grant"
    grant_type: ClassVar[str]

    def handle(self, request: TokenRequest, client: AuthenticatedClient) -> Grant:
        """Check the grant and say what to issue: a Grant (the client's own token) or a UserGrant."""
        raise NotImplementedError

    def after_issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> None:
        """Runs once the issuer has stored the new tokens: the place for a check that must come
        last (a refresh token's rotation, a code's reuse), raising OAuthError to refuse."""


class TokenIssuer(Handler):
    stage = "issuer"

    def issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> dict[str, Any]:
        raise NotImplementedError


class Listener(Handler):
    """Observes events; an exception in a listener is logged and never changes the outcome."""

    stage = "listener"

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        raise NotImplementedError
