"""Issues opaque bearer access tokens (RFC 6749 §5.1); only their hash is stored."""

from __future__ import annotations

from handlers.base import TokenIssuer
from server.request import AuthenticatedClient, Grant, TokenRequest


class OpaqueTokenIssuer(TokenIssuer):
    default_order = 100

    def issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> dict:
        scope = " ".join(grant.scopes)
        token, expires_in = self.services.tokens.issue(client.client.client_id, scope,
                                                       self.services.settings.access_token_lifetime)
        response = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
        if scope:
            response["scope"] = scope
        return response
