"""The refresh token grant (RFC 6749 §6) with rotation and reuse detection (OAuth 2.0 Security BCP
§4.14.2).

`handle` only checks the presented token; it does not use it up. The token issuer stores the new
tokens first, and `after_issue` rotates the presented one last (storage.refresh.rotate, one
conditional UPDATE): the request that loses a race, or replays a rotated token, revokes the
family, and since the winner's new tokens already exist by then, they are revoked with it.
"""

from __future__ import annotations

from handlers.base import (AuthenticatedClient, Grant, GrantHandler, RefreshTokenGrant, TokenRequest, invalid_grant,
                           invalid_request, unauthorized_client)
from handlers.client_credentials import narrowed, narrowed_resources, requested_scopes, still_registered
from storage import refresh, users


class RefreshTokenGrantHandler(GrantHandler):
    grant_type = "refresh_token"
    default_order = 100
    wso2_name = "org.wso2.carbon.identity.oauth2.token.handlers.grant.RefreshGrantHandler"

    def handle(self, request: TokenRequest, client: AuthenticatedClient) -> RefreshTokenGrant:
        registered = client.client
        if self.grant_type not in registered.grant_types:
            raise unauthorized_client("The client is not registered for the refresh_token grant")
        token = request.form.get("refresh_token")
        if token is None:
            raise invalid_request("The refresh_token parameter is missing")
        requested = requested_scopes(request)

        found = refresh.find(token)
        # RFC 6749 §6: the token was issued to the authenticated client. Another client's token is
        # left alone: a client must not be able to revoke a family that is not its own.
        if found is None or found.client_id != registered.client_id:
            raise invalid_grant("The refresh token is invalid", reason="refresh_unknown")
        if found.state == refresh.ROTATED:
            # Security BCP §4.14.2: a rotated token presented again means one of the two parties
            # holding it is an attacker; revoke everything issued from the grant.
            refresh.revoke_family(found.grant_id)
            raise invalid_grant("The refresh token has already been used", reason="refresh_reused")
        if found.state != refresh.ACTIVE:
            raise invalid_grant("The refresh token has been revoked", reason="refresh_revoked")
        if not found.active():
            raise invalid_grant("The refresh token has expired", reason="refresh_expired")
        if found.jkt is not None and (request.dpop is None or request.dpop.jkt != found.jkt):
            # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
            raise invalid_grant("The refresh token is bound to another DPoP key", reason="dpop_jkt")
        resources = narrowed_resources(found.resources, request.resources, registered)

        # The refresh token keeps the grant's scope (less what the client is no longer registered for).
        granted = still_registered(found.scopes, registered)
        scopes = narrowed(granted, requested, "refresh token")
        if users.get_by_sub(found.user_sub) is None:
            raise invalid_grant("The user of the refresh token no longer exists", reason="refresh_user")
        return RefreshTokenGrant(scopes=scopes, user_sub=found.user_sub, grant_id=found.grant_id,
                                 auth_time=found.auth_time, refresh_scopes=granted, presented_hash=found.token_hash,
                                 resources=resources, grant_resources=found.resources)

    def after_issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> None:
        # After the new tokens exist: a concurrent use of the same refresh token that lost this
        # UPDATE revokes the family, these new tokens included (storage.refresh).
        assert isinstance(grant, RefreshTokenGrant)
        if not refresh.rotate(grant.presented_hash):
            refresh.revoke_family(grant.grant_id)
            raise invalid_grant("The refresh token has already been used", reason="refresh_reused")
