"""The client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from handlers.base import (SCOPE_TOKEN, AuthenticatedClient, Grant, GrantHandler, RegisteredClient, TokenRequest,
                           invalid_request, invalid_scope, invalid_target, unauthorized_client)


def requested_scopes(request: TokenRequest) -> tuple[str, ...] | None:
    """The scope parameter as a tuple of distinct tokens, or None when absent."""
    raw = request.form.get("scope")
    if raw is None:
        return None
    tokens = raw.split(" ")
    if not all(SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise invalid_request("The scope parameter is malformed")
    return tuple(dict.fromkeys(tokens))


def still_registered(granted: tuple[str, ...], client: RegisteredClient) -> tuple[str, ...]:
    """The scope of a user's grant that the client is still registered for: when an administrator
    narrows a client's scopes, its earlier grants narrow with them (RFC 6749 §3.3: the server
    may issue less than was asked). When nothing is left, the grant gives no token."""
    scopes = tuple(s for s in granted if s in client.scopes)
    if granted and not scopes:
        raise invalid_scope("The client is no longer registered for any scope of this grant")
    return scopes


def narrowed(granted: tuple[str, ...], requested: tuple[str, ...] | None, what: str) -> tuple[str, ...]:
    """The scope of a token from a user's grant: the grant's, or a narrower one the request asks
    for (RFC 6749 §6; WSO2 clients send scope=openid on the code request), never a wider one."""
    if requested is None:
        return granted
    if any(s not in granted for s in requested):
        raise invalid_scope(f"The requested scope exceeds the scope granted by the {what}")
    return requested


def narrowed_resources(granted: tuple[str, ...], requested: tuple[str, ...],
                       client: RegisteredClient) -> tuple[str, ...]:
    """RFC 8707 §2.2: a token from a user's grant addresses the resources the authorization
    request named (less those the client is no longer registered for), or some of them; a grant
    that named none leaves the choice to the token request (within the client's registration,
    handlers.chain)."""
    if not granted:
        return requested
    granted = tuple(resource for resource in granted if resource in client.resources)
    if not granted:
        raise invalid_target("The client is no longer registered for any resource of this grant")
    if any(resource not in granted for resource in requested):
        raise invalid_target("A requested resource was not part of the grant")
    return requested or granted


class ClientCredentialsGrantHandler(GrantHandler):
    grant_type = "client_credentials"
    default_order = 100
    wso2_name = "org.wso2.carbon.identity.oauth2.token.handlers.grant.ClientCredentialsGrantHandler"

    def handle(self, request: TokenRequest, client: AuthenticatedClient) -> Grant:
        registered = client.client
        if self.grant_type not in registered.grant_types:
            raise unauthorized_client("The client is not registered for the client_credentials grant")
        scopes = requested_scopes(request)
        if scopes is None:
            # RFC 6749 §3.3: no scope requested → the client's registered scopes.
            return Grant(scopes=registered.scopes, resources=request.resources)
        if any(s not in registered.scopes for s in scopes):
            raise invalid_scope("A requested scope is not allowed for this client")
        return Grant(scopes=scopes, resources=request.resources)
